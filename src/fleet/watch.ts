/**
 * Edge- plus level-triggered reaction to one fleet channel, the same pattern
 * as the store's watchAndResync, run by the same loop (src/redis/resync.ts).
 */
import type { Logger } from "../logging.ts";
import { type ResyncReason, startResyncLoop } from "../redis/resync.ts";
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

/** Subscribes, then resyncs once; resolves when that first resync has run. */
export function watchFleet(options: WatchFleetOptions): Promise<FleetWatch> {
  const { fleet, filter } = options;
  return startResyncLoop<string>({
    subscribe: (handler) =>
      fleet.subscribe(options.channel, (message) => {
        if (!filter || filter(message)) handler(message);
      }),
    onResubscribe: (listener) => fleet.onResubscribe(listener),
    onMessage: options.onMessage,
    resync: options.resync,
    ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
    ...(options.jitter !== undefined ? { jitter: options.jitter } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    name: "WatchFleet",
  });
}
