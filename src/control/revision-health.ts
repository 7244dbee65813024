/**
 * What running a revision showed, written onto the Revision's conditions the
 * way Knative's revision reconciler does, then propagated to its
 * Configuration, Route and Service (refresh.ts):
 *
 * - an instance became ready: ResourcesAvailable, ContainerHealthy and Ready
 *   True (reason-less);
 * - an instance could not get its resources (image not found, pull or create
 *   failed, worker bundle missing): ResourcesAvailable False;
 * - an instance crashed, exited, was OOM-killed, never passed readiness, or
 *   its worker stalled: ContainerHealthy False (ResourcesAvailable True: it ran).
 *
 * Ready turns False with the same reason and message only while the revision
 * has never been ready; once it served, a later failure shows on
 * ContainerHealthy alone (the revision may still serve from other instances).
 * A failure on a revision that is serving stays visible for `holdFailureMs`
 * before a ready report may clear it, so a crash followed by a fast restart
 * does not vanish unseen.
 *
 * Idempotent: reporting what the revision already says writes nothing. The
 * one writer is the scaler's revision-status controller
 * (scaler/controllers/revision-status.ts), which derives the health from the
 * agents' instance reports (deriveRevisionHealth).
 */
import type { InstanceStatus } from "../fleet/types.ts";
import { canonicalJson, getCondition, setCondition } from "../model/index.ts";
import type { Revision } from "../model/types.ts";
import { Labels } from "../model/types.ts";
import type { Store, Tx } from "../store/store.ts";
import { isRevisionReady } from "./objects.ts";
import { type RefreshContext, refreshStatusesFor } from "./refresh.ts";

/** Knative's reason when a revision's image cannot be fetched or resolved to a digest. */
export const CONTAINER_MISSING = "ContainerMissing";

/** The reason an agent reports while a start waits for its image to be pulled. */
export const PULLING_IMAGE = "PullingImage";

export type RevisionHealth =
  | { ready: true /** The image digest that ran (containers). */; imageDigest?: string }
  | {
      ready: false;
      condition: "ContainerHealthy" | "ResourcesAvailable";
      reason: string;
      message: string;
    }
  /** Nothing ready or failed yet, but under way (an image pull): shown while never ready. */
  | { ready: "pending"; reason: string; message: string };

export interface RevisionHealthContext extends RefreshContext {
  /** Keep a failure on a serving revision at least this long (default 0). */
  holdFailureMs?: number;
  now?: Date;
}

export type RevisionHealthOutcome =
  /** The revision's status (and its owners') was staged for writing. */
  | { outcome: "changed" }
  /** It already said so. */
  | { outcome: "unchanged" }
  /** A recent failure is held: report again after `retryInMs`. */
  | { outcome: "held"; retryInMs: number }
  | { outcome: "missing" };

/** Which condition a runtime failure reason belongs on. */
export function conditionForFailure(reason: string): "ContainerHealthy" | "ResourcesAvailable" {
  return /^(ImageNotFound|ImagePullFailed|StartFailed|ArtifactMissing|RuntimeUnavailable)$/.test(
    reason,
  )
    ? "ResourcesAvailable"
    : "ContainerHealthy";
}

/**
 * The revision with `health` applied (pure): "unchanged" when it already says
 * so, "held" while a failure on a serving revision is younger than the hold.
 */
export function withRevisionHealth(
  existing: Revision,
  health: RevisionHealth,
  ctx: { holdFailureMs?: number; now: Date },
):
  | { outcome: "changed"; revision: Revision }
  | Exclude<RevisionHealthOutcome, { outcome: "changed" }> {
  const { now } = ctx;
  const rev: Revision = structuredClone(existing);
  let conditions = rev.status.conditions;
  const wasReady = isRevisionReady(existing);

  if (health.ready === "pending") {
    if (wasReady) return { outcome: "unchanged" };
    const progress = { status: "Unknown" as const, reason: health.reason, message: health.message };
    conditions = setCondition(conditions, { type: "ResourcesAvailable", ...progress }, now);
    conditions = setCondition(conditions, { type: "Ready", ...progress }, now);
  } else if (health.ready) {
    const hold = ctx.holdFailureMs ?? 0;
    if (wasReady && hold > 0) {
      for (const type of ["ContainerHealthy", "ResourcesAvailable"]) {
        const c = getCondition(conditions, type);
        if (c?.status !== "False") continue;
        const age = now.getTime() - Date.parse(c.lastTransitionTime);
        if (age < hold) return { outcome: "held", retryInMs: hold - age };
      }
    }
    for (const type of ["ResourcesAvailable", "ContainerHealthy", "Ready"]) {
      conditions = setCondition(conditions, { type, status: "True" }, now);
    }
    if (health.imageDigest) rev.status.imageDigest = health.imageDigest;
  } else {
    const { condition, reason, message } = health;
    conditions = setCondition(
      conditions,
      { type: condition, status: "False", reason, message },
      now,
    );
    if (condition === "ContainerHealthy") {
      conditions = setCondition(conditions, { type: "ResourcesAvailable", status: "True" }, now);
    }
    if (!wasReady) {
      conditions = setCondition(
        conditions,
        { type: "Ready", status: "False", reason, message },
        now,
      );
    }
  }
  rev.status.conditions = conditions;
  if (canonicalJson(rev.status) === canonicalJson(existing.status)) return { outcome: "unchanged" };
  return { outcome: "changed", revision: rev };
}

/** Stage the change inside a transaction (and refresh the owners' status). */
export async function applyRevisionHealth(
  tx: Tx,
  namespace: string,
  name: string,
  health: RevisionHealth,
  ctx: RevisionHealthContext,
): Promise<RevisionHealthOutcome> {
  const existing = await tx.get("revisions", namespace, name);
  if (!existing) return { outcome: "missing" };
  const out = withRevisionHealth(existing, health, {
    now: ctx.now ?? new Date(),
    ...(ctx.holdFailureMs !== undefined ? { holdFailureMs: ctx.holdFailureMs } : {}),
  });
  if (out.outcome !== "changed") return out;
  tx.put(out.revision);
  const config = out.revision.metadata.labels?.[Labels.configuration];
  if (config) await refreshStatusesFor(tx, namespace, config, ctx);
  return { outcome: "changed" };
}

/** What the instances of one revision say about it, and when to look again. */
export interface DerivedHealth {
  /** Undefined: the reports say nothing (no instance ready, no failure): leave the status as it is. */
  health: RevisionHealth | undefined;
  /** A failure kept visible by the hold expires then: derive again. */
  recheckInMs?: number;
}

/**
 * Revision health from the reports of its instances on live agents (pure).
 *
 * A failure counts while its instance has not passed readiness since, and,
 * on a revision that is serving (Ready True), for `holdFailureMs` after it was
 * seen even if the instance is ready again (a crash then fast restart stays
 * visible). Status reflects the instances as a whole: a failure is left out
 * while an instance on another agent is ready (a restarted agent finding its
 * killed container must not mark a revision unhealthy that serves from
 * elsewhere). The newest failure that counts wins; otherwise a ready instance
 * makes the revision ready (with its image digest).
 */
export function deriveRevisionHealth(
  reports: readonly InstanceStatus[],
  ctx: { serving: boolean; nowMs: number; holdFailureMs: number },
): DerivedHealth {
  const ready = reports.filter((r) => r.phase === "ready");
  const readyAgents = new Set(ready.map((r) => r.agentId));
  let failure: InstanceStatus["lastFailure"];
  let recheckInMs: number | undefined;
  for (const r of reports) {
    const f = r.lastFailure;
    if (!f) continue;
    const recovered = r.readyAt !== undefined && r.readyAt >= f.at;
    const age = ctx.nowMs - f.at;
    const held = ctx.serving && age < ctx.holdFailureMs;
    if (recovered && !held) continue;
    if ([...readyAgents].some((a) => a !== r.agentId)) continue;
    if (recovered) {
      const left = ctx.holdFailureMs - age;
      recheckInMs = recheckInMs === undefined ? left : Math.min(recheckInMs, left);
    }
    if (!failure || f.at > failure.at) failure = f;
  }
  const out: DerivedHealth = { health: undefined };
  if (recheckInMs !== undefined) out.recheckInMs = recheckInMs;
  if (failure) {
    const { condition, reason, message } = failure;
    out.health = { ready: false, condition, reason, message };
  } else if (ready.length > 0) {
    const newest = ready.reduce((a, b) => ((b.readyAt ?? 0) > (a.readyAt ?? 0) ? b : a));
    out.health = newest.imageDigest
      ? { ready: true, imageDigest: newest.imageDigest }
      : { ready: true };
  } else {
    const pulling = reports.find((r) => r.phase === "starting" && r.reason === PULLING_IMAGE);
    if (pulling) {
      out.health = { ready: "pending", reason: PULLING_IMAGE, message: pulling.message ?? "" };
    }
  }
  return out;
}

/** One transaction: report a revision's health and propagate it. */
export async function reportRevisionHealth(
  store: Pick<Store, "transact">,
  namespace: string,
  name: string,
  health: RevisionHealth,
  ctx: Omit<RevisionHealthContext, "now">,
): Promise<RevisionHealthOutcome> {
  const { value } = await store.transact((tx) =>
    applyRevisionHealth(tx, namespace, name, health, { ...ctx, now: new Date() }),
  );
  return value;
}
