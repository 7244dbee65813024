/**
 * Edge- plus level-triggered reaction to store changes, in one place: events
 * from the store's pub/sub drive quick reactions, and a full resync runs at
 * start, every `intervalMs` (jittered) and whenever the subscription was lost
 * and came back. Pub/sub is at-most-once, so resync is what makes a missed
 * event harmless.
 *
 * Handlers never run concurrently: events and resyncs go through one queue, in
 * order, and resync requests that pile up while one is waiting collapse into it.
 */
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { type Logger, silentLogger } from "../logging.ts";
import type { Store, StoreEvent } from "./store.ts";

export type ResyncReason = "start" | "interval" | "resubscribe" | "manual";

/** What the helper needs from a store. RedisStore provides onResubscribe. */
export interface ResyncSource extends Pick<Store, "watch"> {
  onResubscribe?(listener: () => void): () => void;
}

export interface WatchAndResyncOptions {
  store: ResyncSource;
  /** Period of the level-triggered resync. Default 30 000 ms. */
  intervalMs?: number;
  /** Each period is intervalMs * (1 ± jitter), so a fleet does not resync in lockstep. Default 0.2. */
  jitter?: number;
  /** Called for each committed change. */
  onEvent(event: StoreEvent): void | Promise<void>;
  /** Read everything of interest and converge. */
  resync(reason: ResyncReason): void | Promise<void>;
  logger?: Logger;
}

export interface WatchAndResync {
  /** Queue a resync now (joining one that is already waiting) and wait for it. */
  resyncNow(): Promise<void>;
  /** Unsubscribe, stop the timer, and wait for queued work to finish. */
  stop(): Promise<void>;
}

const optionsSchema = z.object({
  intervalMs: z.number().int().min(1).default(30_000),
  jitter: z.number().min(0).max(1).default(0.2),
});

/** Subscribes, then resyncs once; resolves when that first resync has run. */
export async function watchAndResync(options: WatchAndResyncOptions): Promise<WatchAndResync> {
  const parsed = optionsSchema.safeParse({
    intervalMs: options.intervalMs,
    jitter: options.jitter,
  });
  if (!parsed.success) {
    throw ValidationError.of(
      parsed.error.issues.map((i) => ({ field: i.path.join("."), message: i.message })),
      { kind: "WatchAndResync", name: "options" },
    );
  }
  const { intervalMs, jitter } = parsed.data;
  const { store, onEvent, resync } = options;
  const log = options.logger ?? silentLogger;

  let stopped = false;
  let tail: Promise<void> = Promise.resolve();
  let waiting: { promise: Promise<void>; reason: ResyncReason } | undefined;
  let timer: NodeJS.Timeout | undefined;

  const enqueue = (task: () => void | Promise<void>, what: string): Promise<void> => {
    tail = tail.then(async () => {
      if (stopped) return;
      try {
        await task();
      } catch (err) {
        log.error({ err }, `${what} failed`);
      }
    });
    return tail;
  };

  const requestResync = (reason: ResyncReason): Promise<void> => {
    if (waiting) {
      // A resync that has not started yet will read everything anyway.
      if (reason !== "interval") waiting.reason = reason;
      return waiting.promise;
    }
    const entry: { promise: Promise<void>; reason: ResyncReason } = {
      promise: Promise.resolve(),
      reason,
    };
    entry.promise = enqueue(() => {
      // From here on, a new request must run again: this one may have read too early.
      waiting = undefined;
      return resync(entry.reason);
    }, "resync");
    waiting = entry;
    return entry.promise;
  };

  const schedule = () => {
    if (stopped) return;
    const delay = intervalMs * (1 - jitter + 2 * jitter * Math.random());
    timer = setTimeout(() => {
      void requestResync("interval").then(schedule);
    }, delay);
    // Never keep a process alive just to resync.
    timer.unref();
  };

  // Subscribe before the first resync, so nothing falls between the two.
  const unwatch = await store.watch((event) => {
    void enqueue(() => onEvent(event), "event handler");
  });
  const offResubscribe = store.onResubscribe?.(() => {
    void requestResync("resubscribe");
  });
  await requestResync("start");
  schedule();

  return {
    resyncNow: () => (stopped ? Promise.resolve() : requestResync("manual")),
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      offResubscribe?.();
      await unwatch();
      await tail;
    },
  };
}
