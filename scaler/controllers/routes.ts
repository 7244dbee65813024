/**
 * The route controller: which Routes to reconcile (routes.ts does one) when
 * the cache changes. A Route or Configuration change reconciles that Route
 * (a Service's Route has its Configuration's name) and every stand-alone
 * Route whose traffic names the Configuration; a Revision created, deleted or
 * changing readiness reconciles its Configuration's Route and every Route
 * whose traffic (spec or status) names it. A resync reads the published tables
 * back from Redis and reconciles every Route, and every published Route
 * whose object is gone (its delete event was missed).
 *
 * Reconciles run off the cache's event queue, Knative-workqueue style: a
 * Route marked dirty again while it waits is reconciled once, one Route is
 * never reconciled twice at once, and up to ROUTE_RECONCILES_IN_FLIGHT
 * different Routes go at once. Awaiting each reconcile in the cache's queue
 * held every other event behind it (a 1000-service deploy waited tens of
 * seconds for its routes and, behind them, for its placements).
 */
import { isRevisionReady } from "../../src/control/objects.ts";
import { parseRevisionRef, revisionRef } from "../../src/fleet/keys.ts";
import type { Logger } from "../../src/logging.ts";
import { Labels, type Revision } from "../../src/model/types.ts";
import type { CacheChange, ObjectCache } from "../cache.ts";
import type { ScalerMetrics } from "../metrics.ts";
import type { RouteReconciler } from "../routes.ts";

export interface RoutesControllerDeps {
  cache: ObjectCache;
  reconciler: RouteReconciler;
  metrics: Pick<ScalerMetrics, "routePublishes" | "errors">;
  logger: Logger;
  /** False once the scaler stopped: nothing more starts. */
  active(): boolean;
}

/** Different Routes reconciled at once. */
const ROUTE_RECONCILES_IN_FLIGHT = 8;

export class RoutesController {
  readonly #d: RoutesControllerDeps;
  /** Route keys ("{ns}/{name}") waiting, in the order they became dirty. */
  readonly #queued = new Set<string>();
  readonly #inFlight = new Set<string>();
  #idleWaiters: (() => void)[] = [];

  constructor(deps: RoutesControllerDeps) {
    this.#d = deps;
    deps.cache.listen({
      onChange: (c) => this.#onChange(c),
      onResync: () => this.#resync(),
    });
  }

  /** Read what is published (call before the cache starts). */
  loadPublished(): Promise<void> {
    return this.#d.reconciler.loadPublished();
  }

  #onChange(c: CacheChange): void {
    const dirty = new Set<string>();
    if (c.kind === "routes") dirty.add(c.ref);
    else if (c.kind === "configurations") {
      dirty.add(c.ref);
      for (const [key, route] of this.#d.cache.routes) {
        if (route.metadata.namespace !== c.namespace) continue;
        if (route.spec.traffic.some((t) => t.configurationName === c.name)) dirty.add(key);
      }
    } else {
      const before = c.before as Revision | undefined;
      const after = c.after as Revision | undefined;
      const rev = after ?? before;
      const readiness = isRevisionReady(before) !== isRevisionReady(after);
      if (rev && (readiness || !after || !before)) {
        const config = rev.metadata.labels?.[Labels.configuration];
        if (config) dirty.add(revisionRef(c.namespace, config));
        for (const [key, route] of this.#d.cache.routes) {
          if (route.metadata.namespace !== c.namespace) continue;
          const names = (t: { revisionName?: string }) => t.revisionName === c.name;
          if (route.status.traffic?.some(names) || route.spec.traffic.some(names)) dirty.add(key);
        }
      }
    }
    for (const key of dirty) this.#enqueue(key);
  }

  async #resync(): Promise<void> {
    if (!this.#d.active()) return;
    const reconciler = this.#d.reconciler;
    await reconciler.loadPublished();
    for (const key of this.#d.cache.routes.keys()) this.#enqueue(key);
    for (const key of reconciler.publishedRoutes()) this.#enqueue(key);
    await this.idle();
  }

  /** Resolves when no reconcile is queued or running. */
  idle(): Promise<void> {
    if (this.#queued.size === 0 && this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #enqueue(key: string): void {
    this.#queued.add(key);
    this.#pump();
  }

  #pump(): void {
    for (const key of this.#queued) {
      if (this.#inFlight.size >= ROUTE_RECONCILES_IN_FLIGHT) break;
      // Dirty again while it runs: it goes once the running one is done.
      if (this.#inFlight.has(key)) continue;
      this.#queued.delete(key);
      this.#inFlight.add(key);
      const r = parseRevisionRef(key);
      const done = r ? this.reconcile(r.namespace, r.revision) : Promise.resolve();
      void done.finally(() => {
        this.#inFlight.delete(key);
        this.#pump();
        if (this.#queued.size === 0 && this.#inFlight.size === 0) {
          const waiters = this.#idleWaiters;
          this.#idleWaiters = [];
          for (const w of waiters) w();
        }
      });
    }
  }

  /** Reconcile one Route; a failure is counted and logged, never thrown. */
  async reconcile(namespace: string, name: string): Promise<void> {
    const d = this.#d;
    if (!d.active()) return;
    try {
      const out = await d.reconciler.reconcile(namespace, name);
      if (out.outcome !== "absent") d.metrics.routePublishes.inc({ outcome: out.outcome });
      if (out.outcome === "held") {
        d.logger.debug({ route: `${namespace}/${name}`, reason: out.reason }, "route held");
      }
    } catch (err) {
      if (!d.active()) return;
      d.metrics.errors.inc({ stage: "route" });
      d.logger.error({ err, route: `${namespace}/${name}` }, "route reconcile failed");
    }
  }
}
