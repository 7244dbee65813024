/**
 * Warm-up of worker revisions created at zero (initial-scale 0). Building an
 * isolate is most of a worker's cold start (a fresh isolate, its module
 * fetched and evaluated); a standby (an isolate kept loaded but unrouted)
 * is woken in a few milliseconds by the agent holding it. A revision scaled
 * down to zero leaves one behind; a revision never started has none, so its
 * first request, or a burst of many such revisions at once, waits for the
 * builds. The warm-up gives it one: one instance at creation, stopped as soon
 * as it is ready, whose isolate its agent keeps as it keeps any scaled-down
 * instance's. A module that fails to load shows on the revision at deploy,
 * not at its first request.
 *
 * Pure: the scaling pass supplies what it observed. Only worker revisions
 * (a container warm-up would be a whole container start), only while the
 * autoscaler wants none, and only within `windowMs` of creation: a new
 * leader, which does not know which revisions it warmed before, does not
 * warm every idle revision of the cluster.
 */
import type { RuntimeKind } from "../src/fleet/types.ts";
import type { Revision } from "../src/model/types.ts";

export interface WarmupInput {
  runtime: RuntimeKind;
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
  /** 0: warm-ups off. */
  windowMs: number;
}

/** True when the revision should run one instance now for its warm-up. */
export function wantsWarmup(input: WarmupInput): boolean {
  if (input.runtime !== "isolate" || input.windowMs <= 0) return false;
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
