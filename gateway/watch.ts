/**
 * Edge- plus level-triggered refresh over plain Redis channels, the pattern of
 * src/redis/resync.ts: subscribe first, then resync at start, every
 * `intervalMs` (jittered), and whenever the subscriber came back after a loss
 * (messages published meanwhile were missed). Pub/sub makes reactions fast;
 * resync makes a lost message harmless.
 *
 * Messages are handled at once (handlers only start Redis reads whose replies
 * arrive in order on one connection); resyncs never overlap, and requests that
 * pile up while one waits join it.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../src/logging.ts";
import { RedisSubscriber } from "../src/redis/subscriber.ts";

export type RefreshReason = "start" | "interval" | "resubscribe" | "manual";

export interface ChannelWatchOptions {
  /** A connection to duplicate for the subscriber. */
  redis: Redis;
  channels: string[];
  onMessage(channel: string, message: string): void;
  resync(reason: RefreshReason): Promise<void>;
  intervalMs: number;
  /** Each period is intervalMs * (1 ± jitter). Default 0.2. */
  jitter?: number;
  logger: Logger;
}

export interface ChannelWatch {
  resyncNow(): Promise<void>;
  stop(): Promise<void>;
}

export async function watchChannels(options: ChannelWatchOptions): Promise<ChannelWatch> {
  const { channels, onMessage, resync, intervalMs, logger } = options;
  const jitter = options.jitter ?? 0.2;
  const sub = new RedisSubscriber({ redis: options.redis, name: "gateway", logger });

  let stopped = false;
  let running: Promise<void> | undefined;
  let waiting: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const run = async (reason: RefreshReason) => {
    try {
      await resync(reason);
    } catch (err) {
      logger.warn({ err, reason }, "gateway resync failed; the next one retries");
    }
  };
  const requestResync = (reason: RefreshReason): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (waiting) return waiting;
    const after = running ?? Promise.resolve();
    const next: Promise<void> = after.then(async () => {
      // From here on a new request must run again: this one may read too early.
      waiting = undefined;
      running = next;
      if (!stopped) await run(reason);
      if (running === next) running = undefined;
    });
    waiting = next;
    return next;
  };

  const schedule = () => {
    if (stopped) return;
    const delay = intervalMs * (1 - jitter + 2 * jitter * Math.random());
    timer = setTimeout(() => void requestResync("interval").then(schedule), delay);
    timer.unref();
  };

  sub.onResubscribe(() => void requestResync("resubscribe"));
  try {
    const handler = (message: string, channel: string) => onMessage(channel, message);
    await Promise.all(channels.map((channel) => sub.subscribe(channel, handler)));
  } catch (err) {
    await sub.close();
    throw err;
  }
  await requestResync("start");
  schedule();

  return {
    resyncNow: () => requestResync("manual"),
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      await (waiting ?? running);
      await sub.close();
    },
  };
}
