/**
 * The route controller: which Routes to reconcile (routes.ts does one) when
 * the cache changes. A Route or Configuration change reconciles that Route
 * (a Service's Route has its Configuration's name); a Revision created,
 * deleted or changing readiness reconciles its Configuration's Route and
 * every Route whose traffic names it. A resync reads the published tables
 * back from Redis and reconciles every Route, and every published Route
 * whose object is gone (its delete event was missed).
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

export class RoutesController {
  readonly #d: RoutesControllerDeps;

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

  async #onChange(c: CacheChange): Promise<void> {
    const dirty = new Set<string>();
    if (c.kind === "routes" || c.kind === "configurations") dirty.add(c.ref);
    else {
      const before = c.before as Revision | undefined;
      const after = c.after as Revision | undefined;
      const rev = after ?? before;
      const readiness = isRevisionReady(before) !== isRevisionReady(after);
      if (rev && (readiness || !after || !before)) {
        const config = rev.metadata.labels?.[Labels.configuration];
        if (config) dirty.add(revisionRef(c.namespace, config));
        for (const [key, route] of this.#d.cache.routes) {
          if (route.metadata.namespace !== c.namespace) continue;
          if (route.status.traffic?.some((t) => t.revisionName === c.name)) dirty.add(key);
        }
      }
    }
    for (const key of dirty) {
      const r = parseRevisionRef(key);
      if (r) await this.reconcile(r.namespace, r.revision);
    }
  }

  async #resync(): Promise<void> {
    if (!this.#d.active()) return;
    const reconciler = this.#d.reconciler;
    await reconciler.loadPublished();
    for (const route of [...this.#d.cache.routes.values()]) {
      await this.reconcile(route.metadata.namespace, route.metadata.name);
    }
    for (const key of reconciler.publishedRoutes()) {
      if (this.#d.cache.routes.has(key)) continue;
      const r = parseRevisionRef(key);
      if (r) await this.reconcile(r.namespace, r.revision);
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
