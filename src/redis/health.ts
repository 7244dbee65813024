/**
 * Whether a component (API, gateway, scaler, agent) can reach Redis right
 * now, and the logging that goes with it. Each logs one line when Redis is
 * lost (`redis: "lost"`, warn) and one when it is back (`redis: "back"`,
 * `downMs`); meanwhile the failures of the periodic Redis work (resync,
 * heartbeats, passes, counters, leases) are the expected consequence and go
 * to `quietLogger` (fatal only until Redis is back: their errors, with
 * stacks, are all "Redis is unreachable" in another form) or to debug
 * (`failureLevel`), instead of a stack trace per attempt.
 *
 * Open the watched connection without `logger` (src/redis/connect.ts), or every
 * reconnect attempt is logged as well.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../logging.ts";

export interface RedisHealthMessages {
  /** What the component does meanwhile, appended to "redis connection lost; ". */
  whileLost?: string;
  /** What it does now, appended to "redis connection back; ". */
  onBack?: string;
}

export class RedisHealth {
  readonly #log: Logger;
  /** For the Redis-dependent background work: fatal only while Redis is away. */
  readonly quietLogger: Logger;
  readonly #level: string;
  readonly #listeners = new Set<(up: boolean) => void>();
  #up: boolean;
  #lostAt = 0;
  #lastError: string | undefined;
  #closed = false;
  readonly #messages: RedisHealthMessages;

  constructor(redis: Redis, logger: Logger, messages: RedisHealthMessages = {}) {
    this.#log = logger;
    this.#messages = messages;
    this.quietLogger = logger.child({});
    this.#level = logger.level;
    this.#up = redis.status === "ready";
    redis.on("error", (err: Error & { code?: string }) => {
      // Each reconnect attempt fails with one of these: remembered, not logged.
      this.#lastError = err.code ?? err.message;
    });
    redis.on("close", () => this.#set(false));
    redis.on("ready", () => this.#set(true));
  }

  /** Redis answered last time we looked (the connection is established). */
  get up(): boolean {
    return this.#up;
  }

  /** Called with the new state on every change. */
  onChange(listener: (up: boolean) => void): void {
    this.#listeners.add(listener);
  }

  /**
   * The level for a failure of Redis-dependent work: debug while Redis is
   * away (the "lost" line said why), `level` otherwise.
   */
  failureLevel(level: "warn" | "error" = "warn"): "debug" | "warn" | "error" {
    return this.#up ? level : "debug";
  }

  /** The component is closing its connection: that is not an outage. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
  }

  #set(up: boolean): void {
    if (this.#closed || up === this.#up) return;
    this.#up = up;
    if (up) {
      this.#lastError = undefined;
      this.quietLogger.level = this.#level;
      this.#log.info(
        { redis: "back", downMs: Math.round(performance.now() - this.#lostAt) },
        `redis connection back${this.#messages.onBack ? `; ${this.#messages.onBack}` : ""}`,
      );
    } else {
      this.#lostAt = performance.now();
      const levels = this.#log.levels.values;
      if ((levels[this.#level] ?? 0) < (levels.fatal ?? 60)) this.quietLogger.level = "fatal";
      this.#log.warn(
        { redis: "lost", reason: this.#lastError ?? "connection closed" },
        `redis connection lost; ${this.#messages.whileLost ?? "retrying"}`,
      );
    }
    for (const listener of this.#listeners) listener(up);
  }
}
