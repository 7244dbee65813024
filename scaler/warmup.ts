/**
 * Warm-up of revisions created at zero (initial-scale 0). A revision scaled
 * down to zero leaves a standby behind on its agent: a worker's isolate kept
 * loaded but unrouted (woken in a few milliseconds), a container paused
 * (`docker pause`: no CPU, memory kept; resumed in tens of milliseconds
 * where `docker run` takes a second or more). A revision never started has
 * none, so its first request, or a burst of many such revisions at once,
 * waits for whole builds or container starts. The warm-up gives it one: one
 * instance at creation, stopped as soon as it is ready, which its agent keeps
 * as it keeps any scaled-down instance (within the agent's standby limits:
 * retention, count, free memory). A module that fails to load or an image
 * that does not start shows on the revision at deploy, not at its first
 * request.
 *
 * Pure: the scaling pass supplies what it observed, and the window of the
 * revision's runtime (`scaler.isolateWarmupMs`, `scaler.containerWarmupMs`).
 * Only while the autoscaler wants none, and only within `windowMs` of
 * creation: a new leader, which does not know which revisions it warmed
 * before, does not warm every idle revision of the cluster.
 */
import type { RuntimeKind } from "../src/fleet/types.ts";
import type { Revision } from "../src/model/types.ts";

export interface WarmupInput {
  /** What the autoscaler wants now. */
  desired: number;
  /** Ready instances now. */
  ready: number;
  /** Some agent reports a standby of the revision. */
  standby: boolean;
  /** The revision was warmed (or served) already, as far as this scaler saw. */
  warmed: boolean;
  /** Creation time of the revision, ms since epoch (undefined: unknown, no warm-up). */
  createdMs: number | undefined;
  nowMs: number;
  /** How long after creation a revision is warmed (its runtime's); 0: warm-ups off. */
  windowMs: number;
}

/** The warm-up window of a runtime's revisions. */
export function warmupWindowMs(
  runtime: RuntimeKind,
  o: { isolateWarmupMs: number; containerWarmupMs: number },
): number {
  return runtime === "isolate" ? o.isolateWarmupMs : o.containerWarmupMs;
}

/** True when the revision should run one instance now for its warm-up. */
export function wantsWarmup(input: WarmupInput): boolean {
  if (input.windowMs <= 0) return false;
  if (input.warmed || input.standby || input.ready > 0 || input.desired > 0) return false;
  if (input.createdMs === undefined) return false;
  const age = input.nowMs - input.createdMs;
  return age >= 0 && age < input.windowMs;
}

/** A revision's creation time (ms since epoch), undefined when it has none that parses. */
export function createdMs(rev: Revision): number | undefined {
  const t = Date.parse(rev.metadata.creationTimestamp ?? "");
  return Number.isFinite(t) ? t : undefined;
}
