/**
 * One Redis subscriber connection with per-channel handlers, shared by the
 * store, the fleet and the gateway's watch.
 *
 * After a lost connection ioredis re-sends SUBSCRIBE right after "ready", but
 * messages published meanwhile are gone. Subscribing again and awaiting it
 * tells us when the subscriptions are live again; only then are the
 * `onResubscribe` listeners called, so that they resync without missing
 * anything (the level-triggered half of edge + level).
 */
import type { Redis } from "ioredis";
import type { Logger } from "../logging.ts";
import { quitRedis } from "./connect.ts";

export type MessageHandler = (message: string, channel: string) => void;

export interface RedisSubscriberOptions {
  /** A connection to duplicate (same server, options and key prefix). */
  redis: Redis;
  /** Names the log lines ("{name} subscriber ...") and, without a connectionName on `redis`, the connection ("skiff-{name}:sub"). */
  name: string;
  logger: Logger;
}

export class RedisSubscriber {
  readonly #o: RedisSubscriberOptions;
  readonly #handlers = new Map<string, Set<MessageHandler>>();
  readonly #resubscribeListeners = new Set<() => void>();
  #conn: Redis | undefined;
  /** Set once a first SUBSCRIBE succeeded: a later "ready" is a reconnect. */
  #live = false;
  #closed = false;

  constructor(options: RedisSubscriberOptions) {
    this.#o = options;
  }

  /**
   * Call `handler` for each message on `channel`. Resolves once the channel is
   * subscribed; the returned function removes the handler (and unsubscribes
   * when it was the channel's last).
   */
  async subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>> {
    // Our bug, not a condition anyone can meet: components subscribe before they close.
    if (this.#closed) throw new Error(`${this.#o.name} subscriber is closed`);
    let set = this.#handlers.get(channel);
    const first = set === undefined;
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    set.add(handler);
    if (first) {
      try {
        await this.#connection().subscribe(channel);
        this.#live = true;
      } catch (err) {
        set.delete(handler);
        if (set.size === 0) this.#handlers.delete(channel);
        throw err;
      }
    }
    return async () => {
      const current = this.#handlers.get(channel);
      if (!current?.delete(handler) || current.size > 0) return;
      this.#handlers.delete(channel);
      if (this.#conn && !this.#closed) await this.#conn.unsubscribe(channel).catch(() => {});
    };
  }

  /** Called whenever the connection came back and its subscriptions are live again. */
  onResubscribe(listener: () => void): () => void {
    this.#resubscribeListeners.add(listener);
    return () => {
      this.#resubscribeListeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.clear();
    this.#resubscribeListeners.clear();
    if (this.#conn) await quitRedis(this.#conn);
  }

  #connection(): Redis {
    if (this.#conn) return this.#conn;
    const { redis, name, logger } = this.#o;
    const sub = redis.duplicate({
      connectionName: `${redis.options?.connectionName ?? `skiff-${name}`}:sub`,
      // A subscriber waits for the server as long as it takes; resync covers the gap.
      maxRetriesPerRequest: null,
    });
    this.#conn = sub;
    // Every failed reconnect attempt of an outage lands here: the component's
    // RedisHealth logs the outage once (src/redis/health.ts), so debug only.
    sub.on("error", (err: Error & { code?: string }) =>
      logger.debug({ err: err.code ?? err.message }, `${name} subscriber connection error`),
    );
    sub.on("message", (channel: string, message: string) => {
      for (const handler of this.#handlers.get(channel) ?? []) {
        try {
          handler(message, channel);
        } catch (err) {
          logger.error({ err, channel }, `${name} message handler threw`);
        }
      }
    });
    sub.on("ready", () => {
      if (!this.#live || this.#closed) return;
      const channels = [...this.#handlers.keys()];
      if (channels.length === 0) return;
      sub.subscribe(...channels).then(
        () => {
          logger.debug(`${name} subscriber reconnected; listeners resync`);
          for (const listener of this.#resubscribeListeners) {
            try {
              listener();
            } catch (err) {
              logger.error({ err }, `${name} resubscribe listener threw`);
            }
          }
        },
        (err: unknown) =>
          logger.warn({ err: (err as Error).message }, `${name} resubscribe failed`),
      );
    });
    return sub;
  }
}
