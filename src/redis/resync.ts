/**
 * Edge- plus level-triggered reaction to store changes, in one place: events
 * from the store's pub/sub drive quick reactions, and a full resync runs at
 * start, every `intervalMs` (jittered) and whenever the subscription was lost
 * and came back. Pub/sub is at-most-once, so resync is what makes a missed
 * event harmless.
 *
 * Handlers never run concurrently: events and resyncs go through one queue, in
 * order, and resync requests that pile up while one is waiting collapse into it
 * (Coalescer, the same "one at a time, requests meanwhile collapse into one"
 * loop the scaler's controllers run their passes with).
 */
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { type Logger, silentLogger } from "../logging.ts";
import type { Store, StoreEvent } from "../store/store.ts";

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

export interface CoalescerOptions<A> {
  /** What a request that joins a waiting run makes of its argument (default: keeps the first). */
  merge?(waiting: A, next: A): A;
  /** Where a run starts (default: at once, or right after the run in progress). */
  schedule?(start: () => Promise<void>): Promise<void>;
}

/**
 * Run an async pass at most once at a time; requests that arrive while one is
 * waiting to start join it, so a burst becomes one more pass. Every request
 * resolves once a pass that started after it has finished, so "request and
 * wait" always sees fresh work done. The pass should not throw (catch and log
 * inside); if it does, the requests that joined it reject.
 */
export class Coalescer<A = void> {
  readonly #fn: (arg: A) => Promise<void>;
  readonly #merge: (waiting: A, next: A) => A;
  readonly #schedule: (start: () => Promise<void>) => Promise<void>;
  /** Requested, not started yet. */
  #waiting: { arg: A; done: Promise<void> } | undefined;
  /** Started, not finished. */
  #running: Promise<void> | undefined;

  constructor(fn: (arg: A) => Promise<void>, options: CoalescerOptions<A> = {}) {
    this.#fn = fn;
    this.#merge = options.merge ?? ((waiting) => waiting);
    this.#schedule = options.schedule ?? ((start) => start());
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  trigger(...args: A extends void ? [arg?: A] : [arg: A]): Promise<void> {
    const arg = args[0] as A;
    const waiting = this.#waiting;
    if (waiting) {
      waiting.arg = this.#merge(waiting.arg, arg);
      return waiting.done;
    }
    const entry: { arg: A; done: Promise<void> } = { arg, done: Promise.resolve() };
    const start = (): Promise<void> => {
      // From here on a new request must run again: this pass may read too early for it.
      if (this.#waiting === entry) this.#waiting = undefined;
      const running: Promise<void> = this.#fn(entry.arg).finally(() => {
        if (this.#running === running) this.#running = undefined;
      });
      this.#running = running;
      return running;
    };
    this.#waiting = entry;
    const before = this.#running;
    entry.done = this.#schedule(before ? () => before.then(start, start) : start);
    return entry.done;
  }

  /** Wait for whatever runs or waits now. */
  async idle(): Promise<void> {
    while (this.#running || this.#waiting) {
      await (this.#waiting?.done ?? this.#running)?.catch(() => {});
    }
  }
}

/** Any source of change notices: the store's events, a fleet channel, ... */
export interface ResyncLoopOptions<M> {
  /** Start delivering notices to `handler`; resolves once live, with an unsubscribe. */
  subscribe(handler: (message: M) => void): Promise<() => void | Promise<void>>;
  /** Called back when the subscription was lost and is live again (notices were missed). */
  onResubscribe?(listener: () => void): () => void;
  onMessage(message: M): void | Promise<void>;
  resync(reason: ResyncReason): void | Promise<void>;
  intervalMs?: number;
  jitter?: number;
  logger?: Logger;
  /** Names the loop in option errors and logs. */
  name: string;
}

/**
 * The one edge + level loop: subscribes, then resyncs once; resolves when that
 * first resync has run. Notices and resyncs share one queue, so handlers never
 * overlap, and resync requests that pile up while one waits collapse into it.
 */
export async function startResyncLoop<M>(options: ResyncLoopOptions<M>): Promise<WatchAndResync> {
  const parsed = optionsSchema.safeParse({
    intervalMs: options.intervalMs,
    jitter: options.jitter,
  });
  if (!parsed.success) {
    throw ValidationError.of(
      parsed.error.issues.map((i) => ({ field: i.path.join("."), message: i.message })),
      { kind: options.name, name: "options" },
    );
  }
  const { intervalMs, jitter } = parsed.data;
  const { onMessage, resync } = options;
  const log = options.logger ?? silentLogger;

  let stopped = false;
  let tail: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const enqueue = (task: () => void | Promise<void>, what: string): Promise<void> => {
    tail = tail.then(async () => {
      if (stopped) return;
      try {
        await task();
      } catch (err) {
        log.error({ err }, `${options.name}: ${what} failed`);
      }
    });
    return tail;
  };

  // A resync that has not started yet will read everything anyway: requests join it.
  const resyncs = new Coalescer<ResyncReason>(async (reason) => resync(reason), {
    merge: (waiting, next) => (next !== "interval" ? next : waiting),
    schedule: (start) => enqueue(start, "resync"),
  });
  const requestResync = (reason: ResyncReason): Promise<void> => resyncs.trigger(reason);

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
  const unsubscribe = await options.subscribe((message) => {
    void enqueue(() => onMessage(message), "message handler");
  });
  const offResubscribe = options.onResubscribe?.(() => {
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
      await unsubscribe();
      await tail;
    },
  };
}

/** Subscribes to the store's events, then resyncs once; resolves when that first resync has run. */
export function watchAndResync(options: WatchAndResyncOptions): Promise<WatchAndResync> {
  const { store } = options;
  return startResyncLoop<StoreEvent>({
    subscribe: (handler) => store.watch(handler),
    ...(store.onResubscribe ? { onResubscribe: (l) => store.onResubscribe!(l) } : {}),
    onMessage: options.onEvent,
    resync: options.resync,
    ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
    ...(options.jitter !== undefined ? { jitter: options.jitter } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    name: "WatchAndResync",
  });
}
