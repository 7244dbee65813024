/**
 * The reconcile loop's two small pieces: a runner that serializes passes and
 * coalesces triggers (a burst of desired-set messages costs one pass, never
 * two at once), and the pure diff of desired against actual.
 */
import type { DesiredInstance } from "../src/fleet/types.ts";

export type ReconcileReason = "start" | "message" | "interval" | "resubscribe" | "manual" | "event";

interface Batch {
  reasons: Set<ReconcileReason>;
  promise: Promise<void>;
  resolve: () => void;
}

/**
 * Runs `pass` one at a time. A trigger while a pass runs schedules exactly
 * one more pass after it (however many triggers arrive); the promise a
 * trigger returns settles when a pass that started after it has finished.
 */
export class SerialRunner {
  readonly #pass: (reasons: ReconcileReason[]) => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #running: Promise<void> | undefined;
  #pending: Batch | undefined;
  #stopped = false;

  constructor(
    pass: (reasons: ReconcileReason[]) => Promise<void>,
    onError: (err: unknown) => void,
  ) {
    this.#pass = pass;
    this.#onError = onError;
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  trigger(reason: ReconcileReason): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (!this.#pending) {
      let resolve: () => void = () => {};
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#pending = { reasons: new Set(), promise, resolve };
    }
    this.#pending.reasons.add(reason);
    const { promise } = this.#pending;
    if (!this.#running) this.#running = this.#drain();
    return promise;
  }

  async #drain(): Promise<void> {
    while (this.#pending && !this.#stopped) {
      const batch = this.#pending;
      this.#pending = undefined;
      try {
        await this.#pass([...batch.reasons]);
      } catch (err) {
        this.#onError(err);
      }
      batch.resolve();
    }
    this.#running = undefined;
  }

  /** No further passes; waits for the one running, if any. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pending?.resolve();
    this.#pending = undefined;
    await this.#running;
  }
}

export interface ActualInstance {
  id: string;
  /** Being stopped already (its stop finishes on its own). */
  stopping: boolean;
  /** Woken ahead of the scaler and within its hold: not stopped for being undesired. */
  held?: boolean;
}

export interface ReconcilePlan {
  start: DesiredInstance[];
  stop: string[];
  /** Desired again while still stopping: started by a later pass, once stopped. */
  waiting: string[];
}

/** What to start and stop so that actual becomes desired. */
export function planReconcile(
  desired: readonly DesiredInstance[],
  actual: readonly ActualInstance[],
): ReconcilePlan {
  const want = new Map(desired.map((d) => [d.id, d]));
  const have = new Map(actual.map((a) => [a.id, a]));
  const plan: ReconcilePlan = { start: [], stop: [], waiting: [] };
  for (const a of actual) if (!want.has(a.id) && !a.stopping && !a.held) plan.stop.push(a.id);
  for (const d of want.values()) {
    const a = have.get(d.id);
    if (!a) plan.start.push(d);
    else if (a.stopping) plan.waiting.push(d.id);
  }
  return plan;
}
