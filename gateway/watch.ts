/**
 * Edge- plus level-triggered refresh over plain Redis channels, the pattern of
 * src/store/resync.ts: subscribe first, then resync at start, every
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
  const sub = options.redis.duplicate({
    connectionName: "skiff-gateway:sub",
    // A subscriber waits for the server as long as it takes; resync covers the gap.
    maxRetriesPerRequest: null,
  });
  sub.on("error", (err: Error) => logger.warn({ err }, "gateway subscriber connection error"));
  sub.on("message", (channel: string, message: string) => {
    try {
      onMessage(channel, message);
    } catch (err) {
      logger.error({ err, channel }, "gateway message handler threw");
    }
  });

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

  let live = false;
  // ioredis re-sends SUBSCRIBE right after "ready" on a reconnect; subscribing
  // again and awaiting it tells us when the subscription is live.
  sub.on("ready", () => {
    if (!live || stopped) return;
    sub.subscribe(...channels).then(
      () => {
        logger.info("gateway subscriber reconnected; resyncing");
        void requestResync("resubscribe");
      },
      (err: unknown) => logger.warn({ err }, "gateway resubscribe failed"),
    );
  });
  try {
    await sub.subscribe(...channels);
  } catch (err) {
    sub.disconnect();
    throw err;
  }
  live = true;
  await requestResync("start");
  schedule();

  return {
    resyncNow: () => requestResync("manual"),
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      await (waiting ?? running);
      sub.disconnect();
    },
  };
}
