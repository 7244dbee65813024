/**
 * Whether the gateway can reach Redis right now, and the logging that goes
 * with it. Redis is not on the request path (routes and endpoints are served
 * from memory), so an outage only means: nothing new is learnt, hard-limit
 * slots are counted locally, and a revision with no instance known cannot be
 * activated. The gateway logs one line when Redis is lost and one when it is
 * back; meanwhile the failures of the periodic Redis work (resync, agent
 * checks, counters, leases) are the expected consequence and go to a logger
 * that is quiet (errors only) until Redis is back, instead of a stack trace
 * per attempt.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../src/logging.ts";

export class RedisHealth {
  readonly #log: Logger;
  /** For the Redis-dependent background work: errors only while Redis is away. */
  readonly quietLogger: Logger;
  readonly #level: string;
  readonly #listeners = new Set<(up: boolean) => void>();
  #up: boolean;
  #lostAt = 0;
  #lastError: string | undefined;
  #closed = false;

  constructor(redis: Redis, logger: Logger) {
    this.#log = logger;
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

  /** The gateway is closing its connection: that is not an outage. */
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
        "redis connection back; resyncing routes and endpoints",
      );
    } else {
      this.#lostAt = performance.now();
      const levels = this.#log.levels.values;
      if ((levels[this.#level] ?? 0) < (levels.error ?? 50)) this.quietLogger.level = "error";
      this.#log.warn(
        { redis: "lost", reason: this.#lastError ?? "connection closed" },
        "redis connection lost; serving from the routes and endpoints in memory until it is back",
      );
    }
    for (const listener of this.#listeners) listener(up);
  }
}
