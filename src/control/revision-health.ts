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
 * Idempotent: reporting what the revision already says writes nothing, so
 * agents may report freely; the store retries conflicting writers.
 */
import { canonicalJson, getCondition, setCondition } from "../model/index.ts";
import type { Revision } from "../model/types.ts";
import { Labels } from "../model/types.ts";
import type { Store, Tx } from "../store/store.ts";
import { type RefreshContext, refreshStatusesFor } from "./refresh.ts";

export type RevisionHealth =
  | { ready: true /** The image digest that ran (containers). */; imageDigest?: string }
  | {
      ready: false;
      condition: "ContainerHealthy" | "ResourcesAvailable";
      reason: string;
      message: string;
    };

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
  const now = ctx.now ?? new Date();
  const rev: Revision = structuredClone(existing);
  let conditions = rev.status.conditions;
  const wasReady = getCondition(conditions, "Ready")?.status === "True";

  if (health.ready) {
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
  tx.put(rev);
  const config = rev.metadata.labels?.[Labels.configuration];
  if (config) await refreshStatusesFor(tx, namespace, config, ctx);
  return { outcome: "changed" };
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
