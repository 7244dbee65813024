/**
 * Recompute the readiness-dependent status of a Configuration and of the
 * Service and Route that own/route it, after a Revision's conditions changed
 * (the scaler derived it from the agents' instance reports, or placed, scaled
 * or routed it). Uses the same pure functions as apply.ts, so both always
 * agree. Writes only what changed, so re-deriving the same thing commits
 * nothing.
 */
import { canonicalJson } from "../model/index.ts";
import type { Configuration, Revision, Route } from "../model/types.ts";
import { Labels } from "../model/types.ts";
import type { Tx } from "../store/store.ts";
import { controllerOf, isRevisionReady } from "./objects.ts";
import { configurationStatus, routeStatus, type StatusContext, serviceStatus } from "./status.ts";

export interface RefreshContext {
  domain: string;
  scheme: string;
}

export interface RefreshResult {
  /** Kinds whose status was staged for writing. */
  changed: ("configurations" | "routes" | "services")[];
}

/** The Configuration's generation a revision was minted at (its label), or -1. */
function generationOf(rev: Revision): number {
  const n = Number(rev.metadata.labels?.[Labels.configurationGeneration]);
  return Number.isInteger(n) ? n : -1;
}

/**
 * The newest revision of the configuration that is ready. It only moves
 * forward: an older ready revision never replaces a newer one that is (still)
 * recorded, unless that one was deleted.
 */
export function latestReadyRevision(
  config: Configuration,
  revisions: readonly Revision[],
): string | undefined {
  const mine = revisions.filter((r) => {
    const owner = controllerOf(r);
    return owner
      ? owner.kind === "Configuration" && owner.uid === config.metadata.uid
      : r.metadata.labels?.[Labels.configuration] === config.metadata.name;
  });
  const byName = new Map(mine.map((r) => [r.metadata.name, r]));
  let best: Revision | undefined;
  for (const r of mine) {
    if (isRevisionReady(r) && (!best || generationOf(r) > generationOf(best))) best = r;
  }
  const current = config.status.latestReadyRevisionName;
  const recorded = current ? byName.get(current) : undefined;
  if (recorded && (!best || generationOf(recorded) >= generationOf(best))) return current;
  return best?.metadata.name;
}

/**
 * Recompute and stage the status of the Configuration `configurationName`
 * and, when a Service owns it, of that Service and its Route. Reads through
 * `tx` (so revisions staged earlier in the same transaction count).
 */
export async function refreshStatusesFor(
  tx: Tx,
  namespace: string,
  configurationName: string,
  ctx: RefreshContext,
): Promise<RefreshResult> {
  const changed: RefreshResult["changed"] = [];
  const existing = await tx.get("configurations", namespace, configurationName);
  if (!existing) return { changed };
  const owner = controllerOf(existing);
  const owned = owner?.kind === "Service";
  const service = owned ? await tx.get("services", namespace, owner.name) : undefined;
  const route = owned ? await tx.get("routes", namespace, owner.name) : undefined;

  // Only the revisions the statuses read: the configuration's own (their names
  // carry its name as a prefix) and those its Route pins. The decision rests
  // on each of them, so each is a dependency; the rest of the namespace is
  // not read at all, and its revisions changing never conflict with this.
  const wanted = new Set(
    (await tx.names("revisions", namespace)).filter((n) => n.startsWith(`${configurationName}-`)),
  );
  for (const t of route?.spec.traffic ?? []) if (t.revisionName) wanted.add(t.revisionName);
  const byName = new Map<string, Revision>();
  for (const name of wanted) {
    const rev = await tx.get("revisions", namespace, name);
    if (rev) byName.set(name, rev);
  }
  const sctx: StatusContext = { ...ctx, revision: (n) => byName.get(n) };

  const config = structuredClone(existing);
  const latestReady = latestReadyRevision(config, [...byName.values()]);
  if (latestReady) config.status.latestReadyRevisionName = latestReady;
  else delete config.status.latestReadyRevisionName;
  config.status = configurationStatus(config, sctx);
  if (canonicalJson(config.status) !== canonicalJson(existing.status)) {
    tx.put(config);
    changed.push("configurations");
  }

  if (!owned || !service || service.metadata.uid !== owner.uid || !route) return { changed };

  const nextRoute = structuredClone(route);
  nextRoute.status = routeStatus(
    nextRoute,
    (n) => (n === config.metadata.name ? config : undefined),
    sctx,
  );
  if (canonicalJson(nextRoute.status) !== canonicalJson(route.status)) {
    tx.put(nextRoute);
    changed.push("routes");
  }
  const nextService = structuredClone(service);
  nextService.status = serviceStatus(nextService, config, nextRoute);
  if (canonicalJson(nextService.status) !== canonicalJson(service.status)) {
    tx.put(nextService);
    changed.push("services");
  }
  return { changed };
}

/**
 * The status of a stand-alone Route (Knative's RouteCreation: one no Service
 * owns), from the Configurations and Revisions its traffic names. `depend`
 * "none" reads snapshots (a user's write never conflicts on them; the
 * scaler recomputes from the write's own event).
 */
export async function standaloneRouteStatus(
  tx: Tx,
  route: Route,
  ctx: RefreshContext,
  depend: "object" | "none" = "object",
): Promise<Route["status"]> {
  const { namespace } = route.metadata;
  const configs = new Map<string, Configuration>();
  const revisions = new Map<string, Revision>();
  const readRevision = async (name: string | undefined) => {
    if (name === undefined || revisions.has(name)) return;
    const rev = await tx.get("revisions", namespace, name, { depend });
    if (rev) revisions.set(name, rev);
  };
  for (const t of route.spec.traffic) {
    if (t.configurationName !== undefined && !configs.has(t.configurationName)) {
      const config = await tx.get("configurations", namespace, t.configurationName, { depend });
      if (config) configs.set(t.configurationName, config);
      await readRevision(config?.status.latestReadyRevisionName);
    }
    await readRevision(t.revisionName);
  }
  return routeStatus(route, (n) => configs.get(n), { ...ctx, revision: (n) => revisions.get(n) });
}

/** Recompute and stage a stand-alone Route's status; true when it changed. */
export async function refreshRouteStatus(
  tx: Tx,
  namespace: string,
  name: string,
  ctx: RefreshContext,
): Promise<boolean> {
  const existing = await tx.get("routes", namespace, name);
  if (!existing || controllerOf(existing)) return false;
  const next = structuredClone(existing);
  next.status = await standaloneRouteStatus(tx, next, ctx);
  if (canonicalJson(next.status) === canonicalJson(existing.status)) return false;
  tx.put(next);
  return true;
}
