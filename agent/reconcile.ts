/**
 * The reconcile pass's pure part: the diff of desired against actual. The
 * passes themselves run one at a time through a Coalescer (src/redis/resync.ts)
 * that merges the reasons of the triggers a pass collapses.
 */
import type { DesiredInstance } from "../src/fleet/types.ts";

export type ReconcileReason = "start" | "message" | "interval" | "resubscribe" | "manual" | "event";

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
