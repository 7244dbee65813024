/**
 * Which revisions routes reference (Knative's routingState): "active" when
 * published or resolved in a Route's status, "pending" when a Route's
 * configuration target is about to resolve to it; any other is "reserve".
 */
import { revisionRef } from "../../src/fleet/keys.ts";
import type { ObjectCache } from "../cache.ts";
import type { RoutingState } from "../scale-status.ts";

export function routingStates(
  published: ReadonlySet<string>,
  cache: Pick<ObjectCache, "routes" | "configurations">,
): Map<string, RoutingState> {
  const out = new Map<string, RoutingState>();
  for (const ref of published) out.set(ref, "active");
  for (const route of cache.routes.values()) {
    const ns = route.metadata.namespace;
    for (const t of route.status.traffic ?? []) {
      if (t.revisionName) out.set(revisionRef(ns, t.revisionName), "active");
    }
  }
  for (const route of cache.routes.values()) {
    const ns = route.metadata.namespace;
    for (const t of route.spec.traffic) {
      if (t.revisionName || !t.configurationName) continue;
      const latest = cache.configurations.get(revisionRef(ns, t.configurationName))?.status
        .latestCreatedRevisionName;
      if (!latest) continue;
      const ref = revisionRef(ns, latest);
      if (!out.has(ref)) out.set(ref, "pending");
    }
  }
  return out;
}
