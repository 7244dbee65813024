/**
 * The gateway's channels (routing, fleet, slots) under the one edge + level
 * loop, src/redis/resync.ts's startResyncLoop: subscribe first, then resync at
 * start, every `intervalMs` (jittered), and whenever the subscriber came back
 * after a loss (messages published meanwhile were missed).
 *
 * Messages skip the loop's queue and are handled at once: the handlers only
 * start Redis reads whose replies arrive in order on one connection, and
 * queueing them behind a resync of every revision would only delay reactions.
 * Resyncs go through the loop, so they never overlap and requests that pile
 * up while one waits join it.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../src/logging.ts";
import { type ResyncReason, startResyncLoop } from "../src/redis/resync.ts";
import { RedisSubscriber } from "../src/redis/subscriber.ts";

export interface ChannelWatchOptions {
  /** A connection to duplicate for the subscriber. */
  redis: Redis;
  channels: string[];
  onMessage(channel: string, message: string): void;
  resync(reason: ResyncReason): Promise<void>;
  intervalMs: number;
  /** Each period is intervalMs * (1 ± jitter). Default 0.2. */
  jitter?: number;
  logger: Logger;
}

export interface ChannelWatch {
  resyncNow(): Promise<void>;
  stop(): Promise<void>;
}

export function watchChannels(options: ChannelWatchOptions): Promise<ChannelWatch> {
  const { channels, onMessage, resync, logger } = options;
  const sub = new RedisSubscriber({ redis: options.redis, name: "gateway", logger });
  return startResyncLoop<never>({
    async subscribe() {
      try {
        const handler = (message: string, channel: string) => onMessage(channel, message);
        await Promise.all(channels.map((channel) => sub.subscribe(channel, handler)));
      } catch (err) {
        await sub.close();
        throw err;
      }
      return () => sub.close();
    },
    onResubscribe: (listener) => sub.onResubscribe(listener),
    onMessage() {},
    async resync(reason) {
      try {
        await resync(reason);
      } catch (err) {
        // The next resync retries: a warning (quiet while Redis is away), not an error.
        logger.warn({ err, reason }, "gateway resync failed; the next one retries");
      }
    },
    intervalMs: options.intervalMs,
    jitter: options.jitter ?? 0.2,
    logger,
    name: "gateway watch",
  });
}
