/**
 * Route reconciliation, the way Knative's route controller does it, and the
 * routing tables the gateways read.
 *
 * For one Route:
 * 1. Its status (and its Configuration's and Service's) is recomputed from
 *    the stored objects with the same pure functions the deploy API and the
 *    revision-status controller use (src/control/refresh.ts), so @latest follows
 *    latestReadyRevisionName: a revision that never became ready takes no
 *    traffic.
 * 2. If every target of the resolved traffic names a revision that is Ready
 *    (it passed readiness once; it stays Ready at zero instances), the
 *    Route's tables are published (`publishRouting`: one atomic script, only
 *    changed hosts are announced).
 * 3. Otherwise the tables already published stay as they are, as Knative
 *    keeps the programmed ingress while a target is not ready: traffic moves
 *    only once the new target can serve. The Route's Ready condition says
 *    what it waits for.
 *
 * A deleted Route's hosts are removed (`removeRouting`), also on resync for
 * Routes whose delete event was missed: the published tables are read back
 * from Redis, so nothing depends on memory that a restart loses.
 *
 * Publishing is not fenced by the leader lease (the writer lives in
 * src/control/routing.ts): tables are a pure function of stored objects, so a
 * deposed leader's last in-flight write says the same as the new leader's,
 * or is corrected by the new leader's next reconcile of that Route.
 */
import type { Redis } from "ioredis";
import { controllerOf, isRevisionReady } from "../src/control/objects.ts";
import { refreshRouteStatus, refreshStatusesFor } from "../src/control/refresh.ts";
import {
  parseRoutingEntry,
  publishRouting,
  type RouteRouting,
  removeRouting,
  routingKeys,
  routingTables,
} from "../src/control/routing.ts";
import { trafficFingerprint } from "../src/control/status.ts";
import type { Logger } from "../src/logging.ts";
import type { Revision, Route } from "../src/model/types.ts";
import type { Store } from "../src/store/store.ts";

export type RouteOutcome =
  | { outcome: "published"; hosts: string[]; changed: string[] }
  | { outcome: "held"; reason: string }
  | { outcome: "removed"; hosts: string[] }
  | { outcome: "absent" };

export interface RouteReconcilerOptions {
  store: Pick<Store, "get" | "list" | "transact">;
  redis: Redis;
  prefix: string;
  domain: string;
  scheme: string;
  logger: Logger;
  /** Checked right before every write: false once this scaler is not the leader. */
  canWrite(): boolean;
}

/** "{ns}/{route}" */
const routeKey = (namespace: string, name: string) => `${namespace}/${name}`;

/** Why a Route's traffic cannot be published yet, or undefined when it can. */
export function holdReason(route: Route, revision: (name: string) => Revision | undefined) {
  const traffic = route.status.traffic;
  if (!traffic || traffic.length === 0) return "its traffic is not resolved yet";
  for (const t of traffic) {
    if (t.revisionName === undefined) {
      return `a latest-revision target${t.tag === undefined ? "" : ` (tag ${t.tag})`} has no ready revision yet`;
    }
    const rev = revision(t.revisionName);
    if (!rev) return `revision "${t.revisionName}" does not exist`;
    if (!isRevisionReady(rev)) return `revision "${t.revisionName}" is not ready`;
  }
  return undefined;
}

export class RouteReconciler {
  readonly #o: RouteReconcilerOptions;
  /** What Redis holds per Route (read back at each resync, updated on each publish). */
  readonly #published = new Map<string, RouteRouting>();

  constructor(options: RouteReconcilerOptions) {
    this.#o = options;
  }

  /** Read every published host back from Redis. */
  async loadPublished(): Promise<void> {
    const all = await this.#o.redis.hgetall(routingKeys(this.#o.prefix).hosts);
    this.#published.clear();
    for (const [host, json] of Object.entries(all)) {
      const entry = parseRoutingEntry(json);
      if (!entry) continue;
      const key = routeKey(entry.namespace, entry.service);
      let r = this.#published.get(key);
      if (!r) {
        r = { namespace: entry.namespace, route: entry.service, hosts: {} };
        this.#published.set(key, r);
      }
      r.hosts[host] = entry;
    }
  }

  /** Every revision some published host sends traffic to, as "{ns}/{rev}". */
  publishedRevisions(): Set<string> {
    const out = new Set<string>();
    for (const r of this.#published.values()) {
      for (const entry of Object.values(r.hosts)) {
        for (const t of entry.targets) out.add(`${entry.namespace}/${t.revision}`);
      }
    }
    return out;
  }

  /** Routes ("{ns}/{route}") that have published hosts. */
  publishedRoutes(): string[] {
    return [...this.#published.keys()];
  }

  async reconcile(namespace: string, name: string): Promise<RouteOutcome> {
    const o = this.#o;
    let route = await o.store.get("routes", namespace, name);
    if (!route) return this.remove(namespace, name);

    const owner = controllerOf(route);
    const ctx = { domain: o.domain, scheme: o.scheme };
    if (o.canWrite()) {
      // A Service's Route with its Service; a stand-alone one (RouteCreation) on its own.
      const { value } = await o.store.transact(async (tx) =>
        owner?.kind === "Service"
          ? (await refreshStatusesFor(tx, namespace, owner.name, ctx)).changed.includes("routes")
          : refreshRouteStatus(tx, namespace, name, ctx),
      );
      if (value) {
        route = await o.store.get("routes", namespace, name);
        if (!route) return this.remove(namespace, name);
      }
    }

    // Only the revisions the Route's traffic names (not the whole namespace's).
    const byName = new Map<string, Revision>();
    for (const t of route.status.traffic ?? []) {
      if (t.revisionName === undefined || byName.has(t.revisionName)) continue;
      const rev = await o.store.get("revisions", namespace, t.revisionName);
      if (rev) byName.set(t.revisionName, rev);
    }
    const reason = holdReason(route, (n) => byName.get(n));
    if (reason !== undefined) return { outcome: "held", reason };

    const tables = routingTables(route, byName, o.domain);
    if (!o.canWrite()) return { outcome: "held", reason: "not the leader" };
    const changed = await publishRouting(o.redis, o.prefix, tables);
    this.#published.set(routeKey(namespace, name), tables);
    await this.#markPublished(route);
    if (changed.length > 0) {
      o.logger.info({ route: routeKey(namespace, name), changed }, "routing tables published");
    }
    return { outcome: "published", hosts: Object.keys(tables.hosts), changed };
  }

  /**
   * Record on the Route that its resolved traffic is what gateways now serve,
   * so its (and its Service's) Ready turns True only from here on. Skipped when
   * the traffic changed meanwhile: the next reconcile publishes and marks that.
   */
  async #markPublished(published: Route): Promise<void> {
    const o = this.#o;
    const fingerprint = trafficFingerprint(published.status.traffic ?? []);
    if (published.status.publishedTraffic === fingerprint || !o.canWrite()) return;
    const { namespace, name } = published.metadata;
    await o.store.transact(async (tx) => {
      const route = await tx.get("routes", namespace, name);
      if (!route || trafficFingerprint(route.status.traffic ?? []) !== fingerprint) return;
      if (route.status.publishedTraffic === fingerprint) return;
      const next = structuredClone(route);
      next.status.publishedTraffic = fingerprint;
      tx.put(next);
      const owner = controllerOf(route);
      const ctx = { domain: o.domain, scheme: o.scheme };
      if (owner?.kind === "Service") await refreshStatusesFor(tx, namespace, owner.name, ctx);
      else await refreshRouteStatus(tx, namespace, name, ctx);
    });
  }

  /** Remove a Route's hosts (it was deleted). */
  async remove(namespace: string, name: string): Promise<RouteOutcome> {
    const key = routeKey(namespace, name);
    if (!this.#published.has(key)) return { outcome: "absent" };
    if (!this.#o.canWrite()) return { outcome: "held", reason: "not the leader" };
    const hosts = await removeRouting(this.#o.redis, this.#o.prefix, namespace, name);
    this.#published.delete(key);
    this.#o.logger.info({ route: key, hosts }, "routing tables removed");
    return { outcome: "removed", hosts };
  }
}
