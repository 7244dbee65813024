/**
 * Namespace quotas of the deploy API's writes: the limits, and the checks a
 * write runs inside its transaction (against bounded counts, so that a
 * write elsewhere in the namespace invalidates it only when the quota is
 * really reached).
 */
import { ForbiddenError } from "../errors.ts";
import type { Tx } from "../store/store.ts";

/**
 * Limits of one namespace. Checked inside the write's transaction against
 * collections it reads (so the commit fails and re-runs if another write
 * changed them meanwhile): two concurrent creates cannot both take the last
 * slot.
 */
export interface NamespaceQuota {
  /** Services in the namespace. */
  services: number;
  /** Revisions kept in the namespace (old ones go with revision GC or `skiff revision delete`). */
  revisions: number;
  /** Bytes of worker artifacts (compiled bundles) kept in the namespace. */
  artifactBytes: number;
}

/** The 403 of a quota: which, its limit, the use, and how to raise it. */
function quotaExceeded(
  namespace: string,
  quota: keyof NamespaceQuota,
  limit: number,
  used: number,
  requested: number,
  advice: string,
): ForbiddenError {
  return new ForbiddenError(
    `exceeded quota ${quota} in namespace "${namespace}": requested ${requested}, used ${used}, limited to ${limit}; ${advice}, or raise quotas.${quota} (or quotas.namespaces.${namespace}.${quota}) in the cluster config`,
    { kind: quota === "services" ? "services" : "revisions" },
  );
}

/**
 * One more of `counted` (Services, or Routes: each stand-alone Route counts
 * as a service) must fit the namespace's services quota. A bound, not a
 * snapshot: others created meanwhile do not invalidate this write unless the
 * quota is really reached.
 */
export async function checkServicesQuota(
  tx: Tx,
  counted: "services" | "routes",
  namespace: string,
  quota: NamespaceQuota,
  advice: string,
): Promise<void> {
  const used = await tx.count(counted, namespace, { atMost: quota.services - 1 });
  if (used + 1 > quota.services) {
    throw quotaExceeded(namespace, "services", quota.services, used, 1, advice);
  }
}

/** One more revision (with `bytes` of artifact) must fit the namespace's quota. */
export async function checkRevisionQuota(
  tx: Tx,
  namespace: string,
  quota: NamespaceQuota,
  bytes: number,
): Promise<void> {
  // Bounds, not snapshots: revisions created (or changing status) elsewhere in
  // the namespace do not invalidate this write unless a quota is really reached.
  const count = await tx.count("revisions", namespace, { atMost: quota.revisions - 1 });
  if (count + 1 > quota.revisions) {
    throw quotaExceeded(
      namespace,
      "revisions",
      quota.revisions,
      count,
      1,
      "delete old revisions (skiff revision delete NAME) or lower the revision GC's retention",
    );
  }
  if (bytes === 0) return;
  const used = await tx.artifactBytes(namespace, { atMost: quota.artifactBytes - bytes });
  if (used + bytes > quota.artifactBytes) {
    throw quotaExceeded(
      namespace,
      "artifactBytes",
      quota.artifactBytes,
      used,
      bytes,
      "delete old worker revisions (skiff revision delete NAME) or make the bundle smaller",
    );
  }
}
