/**
 * Status of Services, Configurations and Routes, computed from what is stored.
 * Pure: the deploy API calls it on every write, and the scaler calls it again
 * whenever a revision's readiness changes, so both always agree.
 */
import { createHash } from "node:crypto";
import { setCondition } from "../model/conditions.ts";
import { canonicalJson } from "../model/equal.ts";
import { resolveTraffic } from "../model/status.ts";
import type {
  Condition,
  Configuration,
  Revision,
  Route,
  Service,
  TrafficTarget,
} from "../model/types.ts";

export interface StatusContext {
  domain: string;
  scheme: string;
  /** Look up a revision already read in the current transaction. */
  revision(name: string): Revision | undefined;
}

function conditionOf(obj: { status: { conditions?: Condition[] } }, type: string) {
  return obj.status.conditions?.find((c) => c.type === type);
}

function aggregate(
  parts: (Condition | undefined)[],
): Omit<Condition, "lastTransitionTime" | "type"> {
  const failed = parts.find((c) => c?.status === "False");
  if (failed) return { status: "False", reason: failed.reason, message: failed.message };
  const pending = parts.find((c) => !c || c.status === "Unknown");
  if (pending) return { status: "Unknown", reason: pending?.reason, message: pending?.message };
  return { status: "True" };
}

/** Configuration status: latest created/ready and whether the latest created is healthy. */
export function configurationStatus(
  config: Configuration,
  ctx: StatusContext,
): Configuration["status"] {
  const status: Configuration["status"] = {
    ...config.status,
    observedGeneration: config.metadata.generation,
  };
  const latest = status.latestCreatedRevisionName
    ? ctx.revision(status.latestCreatedRevisionName)
    : undefined;
  const ready = latest && conditionOf(latest, "Ready");
  let readyCondition: Omit<Condition, "lastTransitionTime">;
  if (latest && ready?.status === "True") {
    readyCondition = { type: "Ready", status: "True" };
  } else if (ready?.status === "False") {
    readyCondition = {
      type: "Ready",
      status: "False",
      reason: "RevisionFailed",
      message: `Revision "${latest?.metadata.name}" failed with message: ${ready.message ?? ready.reason ?? "unknown"}.`,
    };
  } else {
    readyCondition = {
      type: "Ready",
      status: "Unknown",
      reason: "RevisionDeploying",
      message: `Revision "${status.latestCreatedRevisionName ?? "?"}" is not ready yet.`,
    };
  }
  status.conditions = setCondition(status.conditions, readyCondition);
  return status;
}

/** A short, order-sensitive digest of a resolved traffic list. */
export function trafficFingerprint(traffic: readonly TrafficTarget[]): string {
  return createHash("sha256").update(canonicalJson(traffic)).digest("hex").slice(0, 16);
}

/** Route status: traffic resolved to concrete revisions, tag URLs, RoutesReady. */
export function routeStatus(
  route: Route,
  configs: (name: string) => Configuration | undefined,
  ctx: StatusContext,
): Route["status"] {
  const name = route.metadata.name;
  const namespace = route.metadata.namespace;
  const problems: { reason: string; message: string; status: "False" | "Unknown" }[] = [];
  const resolved: TrafficTarget[] = [];
  for (const target of route.spec.traffic) {
    let revisionName = target.revisionName;
    if (!revisionName && target.configurationName) {
      const config = configs(target.configurationName);
      revisionName = config?.status.latestReadyRevisionName;
      if (!config) {
        problems.push({
          status: "False",
          reason: "ConfigurationMissing",
          message: `Configuration "${target.configurationName}" referenced in traffic not found.`,
        });
      } else if (!revisionName) {
        // Knative's errUnreadyConfiguration: a failed latest revision fails the Route.
        problems.push(
          conditionOf(config, "Ready")?.status === "False"
            ? {
                status: "False",
                reason: "RevisionMissing",
                message: `Configuration "${target.configurationName}" does not have any ready Revision.`,
              }
            : {
                status: "Unknown",
                reason: "RevisionMissing",
                message: `Configuration "${target.configurationName}" is waiting for a Revision to become ready.`,
              },
        );
      }
    } else if (revisionName) {
      const rev = ctx.revision(revisionName);
      if (!rev) {
        problems.push({
          status: "False",
          reason: "RevisionMissing",
          message: `Revision "${revisionName}" referenced in traffic not found.`,
        });
      } else if (conditionOf(rev, "Ready")?.status !== "True" && !everReady(rev)) {
        problems.push(
          conditionOf(rev, "Ready")?.status === "False"
            ? {
                status: "False",
                reason: "RevisionMissing",
                message: `Revision "${revisionName}" failed to become ready.`,
              }
            : {
                status: "Unknown",
                reason: "RevisionMissing",
                message: `Revision "${revisionName}" is not yet ready.`,
              },
        );
      }
    }
    resolved.push({ ...target, ...(revisionName ? { revisionName } : {}) });
  }
  const traffic = resolveTraffic(resolved, {
    name,
    namespace,
    domain: ctx.domain,
    scheme: ctx.scheme,
  });
  const url = `${ctx.scheme}://${name}.${namespace}.${ctx.domain}`;
  // Resolved is not yet routable: gateways serve what the scaler published.
  if (!problems.length && route.status.publishedTraffic !== trafficFingerprint(traffic)) {
    problems.push({
      status: "Unknown",
      reason: "IngressNotConfigured",
      message: "Waiting for the scaler to publish this traffic to the gateways.",
    });
  }
  const first = problems.find((p) => p.status === "False") ?? problems[0];
  const status: Route["status"] = {
    ...route.status,
    observedGeneration: route.metadata.generation,
    url,
    address: { url },
    traffic,
  };
  status.conditions = setCondition(
    status.conditions,
    first
      ? { type: "Ready", status: first.status, reason: first.reason, message: first.message }
      : { type: "Ready", status: "True" },
  );
  return status;
}

/** A revision that once became ready keeps serving from zero (Knative's "Active" is separate). */
function everReady(rev: Revision): boolean {
  return rev.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/** Service status mirrors its Configuration and Route, with the three conditions. */
export function serviceStatus(
  service: Service,
  config: Configuration,
  route: Route,
): Service["status"] {
  const configReady = conditionOf(config, "Ready");
  const routeReady = conditionOf(route, "Ready");
  let conditions = setCondition(service.status.conditions, {
    type: "ConfigurationsReady",
    status: configReady?.status ?? "Unknown",
    reason: configReady?.reason,
    message: configReady?.message,
  });
  conditions = setCondition(conditions, {
    type: "RoutesReady",
    status: routeReady?.status ?? "Unknown",
    reason: routeReady?.reason,
    message: routeReady?.message,
  });
  conditions = setCondition(conditions, { type: "Ready", ...aggregate([configReady, routeReady]) });
  const status: Service["status"] = {
    observedGeneration: service.metadata.generation,
    conditions,
    latestCreatedRevisionName: config.status.latestCreatedRevisionName,
    latestReadyRevisionName: config.status.latestReadyRevisionName,
    url: route.status.url,
    address: route.status.address,
    traffic: route.status.traffic,
  };
  for (const key of Object.keys(status) as (keyof typeof status)[]) {
    if (status[key] === undefined) delete status[key];
  }
  return status;
}
