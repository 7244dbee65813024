/**
 * Edge- plus level-triggered reaction to one fleet channel, the same pattern
 * as the store's watchAndResync (src/store/resync.ts): subscribe first, then
 * resync at start, every `intervalMs` (jittered) and whenever the subscriber
 * came back after a loss. Messages make reactions fast, resyncs make a lost
 * message harmless. Handlers never run concurrently; resync requests that
 * pile up while one waits collapse into it.
 */
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { type Logger, silentLogger } from "../logging.ts";
import type { ResyncReason } from "../store/resync.ts";
import type { Fleet, FleetChannel } from "./fleet.ts";

export interface WatchFleetOptions {
  fleet: Pick<Fleet, "subscribe" | "onResubscribe">;
  channel: FleetChannel;
  /** Only messages this accepts reach onMessage (e.g. the agent's own id). */
  filter?: (message: string) => boolean;
  onMessage(message: string): void | Promise<void>;
  resync(reason: ResyncReason): void | Promise<void>;
  /** Default 30 000 ms. */
  intervalMs?: number;
  /** Each period is intervalMs * (1 ± jitter). Default 0.2. */
  jitter?: number;
  logger?: Logger;
}

export interface FleetWatch {
  /** Queue a resync now (joining one that is already waiting) and wait for it. */
  resyncNow(): Promise<void>;
  /** Unsubscribe, stop the timer, wait for queued work. */
  stop(): Promise<void>;
}

const optionsSchema = z.object({
  intervalMs: z.number().int().min(1).default(30_000),
  jitter: z.number().min(0).max(1).default(0.2),
});

/** Subscribes, then resyncs once; resolves when that first resync has run. */
export async function watchFleet(options: WatchFleetOptions): Promise<FleetWatch> {
  const parsed = optionsSchema.safeParse({
    intervalMs: options.intervalMs,
    jitter: options.jitter,
  });
  if (!parsed.success) {
    throw ValidationError.of(
      parsed.error.issues.map((i) => ({ field: i.path.join("."), message: i.message })),
      { kind: "WatchFleet", name: "options" },
    );
  }
  const { intervalMs, jitter } = parsed.data;
  const { fleet, onMessage, resync, filter } = options;
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
      if (reason !== "interval") waiting.reason = reason;
      return waiting.promise;
    }
    const entry = { promise: Promise.resolve(), reason };
    entry.promise = enqueue(() => {
      waiting = undefined;
      return resync(entry.reason);
    }, "fleet resync");
    waiting = entry;
    return entry.promise;
  };

  const schedule = () => {
    if (stopped) return;
    const delay = intervalMs * (1 - jitter + 2 * jitter * Math.random());
    timer = setTimeout(() => {
      void requestResync("interval").then(schedule);
    }, delay);
    timer.unref();
  };

  const unsubscribe = await fleet.subscribe(options.channel, (message) => {
    if (filter && !filter(message)) return;
    void enqueue(() => onMessage(message), "fleet message handler");
  });
  const offResubscribe = fleet.onResubscribe(() => {
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
      offResubscribe();
      await unsubscribe();
      await tail;
    },
  };
}
