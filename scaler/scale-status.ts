/**
 * What the scaler says on a Revision: desiredReplicas / actualReplicas, the
 * `Active` condition (Knative's PodAutoscaler state: True while serving,
 * False/NoTraffic at zero, Unknown while instances are on their way), Ready
 * for a revision that starts at zero (initial-scale 0), why
 * instances could not be placed (ResourcesAvailable False), whether its
 * autoscaling annotations still parse, and its routing state (label
 * `serving.knative.dev/routingState` + annotation
 * `serving.knative.dev/routingStateModified`, which revision GC reads).
 *
 * `scaledRevision` is pure and returns undefined when nothing would change,
 * so a steady fleet writes nothing. The scale controller only retracts
 * failure reasons it wrote itself; the others are the revision-status
 * controller's (controllers/revision-status.ts, from the agents' reports).
 */
import { timestamp } from "../src/control/objects.ts";
import { type RefreshContext, refreshStatusesFor } from "../src/control/refresh.ts";
import { canonicalJson, getCondition, setCondition } from "../src/model/index.ts";
import type { Revision } from "../src/model/types.ts";
import { Annotations, Labels } from "../src/model/types.ts";
import type { Store } from "../src/store/store.ts";
import type { ActiveState } from "./kpa.ts";
import type { PlacementProblem } from "./placement.ts";

/** Knative's routing-state label on revisions. */
export const ROUTING_STATE_LABEL = "serving.knative.dev/routingState";
export type RoutingState = "active" | "pending" | "reserve";

/** Condition reporting autoscaling annotations that no longer parse (Warning: Ready is unaffected). */
export const SCALING_CONDITION = "ScalingConfigured";

/** Reasons only the scaler writes, so only the scaler clears them. */
const PLACEMENT_REASONS: ReadonlySet<string> = new Set<PlacementProblem>([
  "NoAgents",
  "RuntimeUnavailable",
  "InsufficientCapacity",
]);

export interface ScaleReport {
  desired: number;
  /** Ready instances. */
  actual: number;
  state: ActiveState;
  /**
   * The autoscaler's scale target is initialized (Knative's
   * ScaleTargetInitialized): its first instances were ready, or it needed
   * none (initial-scale 0 with min-scale 0).
   */
  initialized?: boolean;
  /** Set while some wanted instances could not be placed. */
  placement?: { reason: PlacementProblem; message: string };
  /** Set while the autoscaling annotations do not parse (the defaults are used). */
  scalingProblem?: string;
  routingState: RoutingState;
}

export const NO_TRAFFIC_MESSAGE = "The target is not receiving traffic.";

function activeCondition(state: ActiveState) {
  switch (state) {
    case "Active":
      return { type: "Active", status: "True" as const };
    case "Inactive":
      return {
        type: "Active",
        status: "False" as const,
        reason: "NoTraffic",
        message: NO_TRAFFIC_MESSAGE,
      };
    case "Activating":
      return {
        type: "Active",
        status: "Unknown" as const,
        reason: "Activating",
        message: "Instances are starting; requests wait until one is ready.",
      };
  }
}

/** The revision with the report applied, or undefined when it already says all that. */
export function scaledRevision(
  existing: Revision,
  report: ScaleReport,
  now: Date = new Date(),
): Revision | undefined {
  const rev: Revision = structuredClone(existing);
  const status = rev.status;
  let conditions = setCondition(status.conditions, activeCondition(report.state), now);
  const wasReady = getCondition(conditions, "Ready")?.status === "True";

  const resources = getCondition(conditions, "ResourcesAvailable");
  if (report.placement) {
    const { reason, message } = report.placement;
    conditions = setCondition(
      conditions,
      { type: "ResourcesAvailable", status: "False", reason, message },
      now,
    );
    if (!wasReady) {
      conditions = setCondition(
        conditions,
        { type: "Ready", status: "False", reason, message },
        now,
      );
    }
  } else if (resources?.status === "False" && PLACEMENT_REASONS.has(resources.reason ?? "")) {
    // Our own complaint no longer holds: back to what the agent will confirm.
    conditions = wasReady
      ? setCondition(conditions, { type: "ResourcesAvailable", status: "True" }, now)
      : setCondition(
          conditions,
          {
            type: "ResourcesAvailable",
            status: "Unknown",
            reason: "Deploying",
            message: "Instances are being placed.",
          },
          now,
        );
    const ready = getCondition(conditions, "Ready");
    if (ready?.status === "False" && PLACEMENT_REASONS.has(ready.reason ?? "")) {
      conditions = setCondition(
        conditions,
        {
          type: "Ready",
          status: "Unknown",
          reason: "Deploying",
          message: "Waiting for the first instance to pass readiness.",
        },
        now,
      );
    }
  }

  // Initialized without an instance (initial-scale 0): Ready at once, as in
  // Knative, where the first request starts it. A failure reported by the
  // agent or by placement is never overruled.
  if (report.initialized && report.actual === 0 && !report.placement && !wasReady) {
    const failed = ["ResourcesAvailable", "ContainerHealthy", "Ready"].some(
      (type) => getCondition(conditions, type)?.status === "False",
    );
    if (!failed) {
      for (const type of ["ResourcesAvailable", "ContainerHealthy", "Ready"]) {
        conditions = setCondition(conditions, { type, status: "True" }, now);
      }
    }
  }

  if (report.scalingProblem) {
    conditions = setCondition(
      conditions,
      {
        type: SCALING_CONDITION,
        status: "False",
        reason: "InvalidAutoscalingAnnotations",
        message: `${report.scalingProblem}; scaling with the cluster defaults until the annotations are fixed`,
        severity: "Warning",
      },
      now,
    );
  } else if (getCondition(conditions, SCALING_CONDITION)) {
    conditions = conditions.filter((c) => c.type !== SCALING_CONDITION);
  }

  status.conditions = conditions;
  status.desiredReplicas = report.desired;
  status.actualReplicas = report.actual;

  const labels = rev.metadata.labels ?? {};
  if (labels[ROUTING_STATE_LABEL] !== report.routingState) {
    rev.metadata.labels = { ...labels, [ROUTING_STATE_LABEL]: report.routingState };
    rev.metadata.annotations = {
      ...rev.metadata.annotations,
      [Annotations.routingStateModified]: timestamp(now),
    };
  }

  if (
    canonicalJson(rev.status) === canonicalJson(existing.status) &&
    canonicalJson(rev.metadata) === canonicalJson(existing.metadata)
  ) {
    return undefined;
  }
  return rev;
}

/** True when the Ready condition differs (owners' status must follow). */
function readyChanged(a: Revision, b: Revision): boolean {
  const x = getCondition(a.status.conditions, "Ready");
  const y = getCondition(b.status.conditions, "Ready");
  return x?.status !== y?.status || x?.reason !== y?.reason || x?.message !== y?.message;
}

/**
 * Write the report in one transaction (re-read, so a concurrent agent write
 * is never lost); when Ready changed, the Configuration, Route and Service
 * follow in the same commit. Returns whether anything was written.
 */
export async function writeScaleReport(
  store: Pick<Store, "transact">,
  namespace: string,
  name: string,
  report: ScaleReport,
  ctx: RefreshContext,
): Promise<boolean> {
  const { value } = await store.transact(async (tx) => {
    const existing = await tx.get("revisions", namespace, name);
    if (!existing) return false;
    const next = scaledRevision(existing, report);
    if (!next) return false;
    tx.put(next);
    const config = next.metadata.labels?.[Labels.configuration];
    if (config && readyChanged(existing, next)) {
      await refreshStatusesFor(tx, namespace, config, ctx);
    }
    return true;
  });
  return value;
}
