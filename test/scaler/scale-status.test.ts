/**
 * What the scaler writes on a Revision (scaledRevision, pure): replica
 * counts, the Active condition, placement problems it raises and later
 * retracts (never the agent's), annotation problems, routing state.
 */
import { describe, expect, it } from "vitest";
import {
  NO_TRAFFIC_MESSAGE,
  ROUTING_STATE_LABEL,
  SCALING_CONDITION,
  type ScaleReport,
  scaledRevision,
} from "../../scaler/scale-status.ts";
import { getCondition } from "../../src/model/index.ts";
import type { Condition, Revision } from "../../src/model/types.ts";
import { Annotations } from "../../src/model/types.ts";

const T0 = new Date("2026-05-01T10:00:00Z");
const T1 = new Date("2026-05-01T10:05:00Z");

function revision(conditions: Omit<Condition, "lastTransitionTime">[] = []): Revision {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Revision",
    metadata: {
      name: "hello-00001",
      namespace: "default",
      uid: "u1",
      generation: 1,
      resourceVersion: "7",
      creationTimestamp: "2026-05-01T09:00:00Z",
      labels: { "serving.knative.dev/configuration": "hello" },
    },
    spec: { containerConcurrency: 0, timeoutSeconds: 300, containers: [{ image: "x" }] },
    status: {
      conditions: conditions.map((c) => ({ ...c, lastTransitionTime: T0.toISOString() })),
    },
  };
}

const report = (over: Partial<ScaleReport> = {}): ScaleReport => ({
  desired: 1,
  actual: 1,
  state: "Active",
  routingState: "active",
  ...over,
});

const READY = [
  { type: "Ready", status: "True" as const },
  { type: "ResourcesAvailable", status: "True" as const },
  { type: "ContainerHealthy", status: "True" as const },
];

describe("scaledRevision", () => {
  it("at zero says NoTraffic on Active, with desired and actual replicas 0; Ready stays True", () => {
    const next = scaledRevision(
      revision(READY),
      report({ desired: 0, actual: 0, state: "Inactive" }),
      T1,
    )!;
    expect(getCondition(next.status.conditions, "Active")).toMatchObject({
      status: "False",
      reason: "NoTraffic",
      message: NO_TRAFFIC_MESSAGE,
    });
    expect(next.status.desiredReplicas).toBe(0);
    expect(next.status.actualReplicas).toBe(0);
    expect(getCondition(next.status.conditions, "Ready")?.status).toBe("True");
  });

  it("a revision initialized at zero (initial-scale 0) becomes Ready without an instance, as in Knative", () => {
    const deploying = [
      { type: "Ready", status: "Unknown" as const, reason: "Deploying" },
      { type: "ResourcesAvailable", status: "Unknown" as const, reason: "Deploying" },
      { type: "ContainerHealthy", status: "Unknown" as const, reason: "Deploying" },
    ];
    const atZero = report({ desired: 0, actual: 0, state: "Inactive", initialized: true });
    const next = scaledRevision(revision(deploying), atZero, T1)!;
    for (const type of ["Ready", "ResourcesAvailable", "ContainerHealthy"]) {
      expect(getCondition(next.status.conditions, type)?.status).toBe("True");
    }
    expect(getCondition(next.status.conditions, "Active")?.reason).toBe("NoTraffic");
    // Not before the autoscaler says so (initial-scale 1 waits for its instance).
    const waiting = scaledRevision(revision(deploying), { ...atZero, initialized: false }, T1)!;
    expect(getCondition(waiting.status.conditions, "Ready")?.status).toBe("Unknown");
  });

  it("initialized at zero never overrules a failure", () => {
    const failed = [
      { type: "Ready", status: "False" as const, reason: "ImagePullBackOff" },
      { type: "ContainerHealthy", status: "False" as const, reason: "ImagePullBackOff" },
    ];
    const atZero = report({ desired: 0, actual: 0, state: "Inactive", initialized: true });
    const next = scaledRevision(revision(failed), atZero, T1)!;
    expect(getCondition(next.status.conditions, "Ready")?.status).toBe("False");
    const unplaced = scaledRevision(
      revision([{ type: "Ready", status: "Unknown" as const, reason: "Deploying" }]),
      { ...atZero, placement: { reason: "NoAgents", message: "no agents" } },
      T1,
    )!;
    expect(getCondition(unplaced.status.conditions, "Ready")?.status).toBe("False");
  });

  it("returns undefined when the revision already says all of it", () => {
    const once = scaledRevision(revision(READY), report(), T1)!;
    expect(scaledRevision(once, report(), new Date("2026-05-01T11:00:00Z"))).toBeUndefined();
  });

  it("a placement problem on a never-ready revision fails Ready too, and is retracted once placed", () => {
    const problem = { reason: "InsufficientCapacity" as const, message: "no agent has room" };
    const failed = scaledRevision(
      revision([{ type: "Ready", status: "Unknown", reason: "Deploying" }]),
      report({ actual: 0, state: "Activating", placement: problem }),
      T1,
    )!;
    expect(getCondition(failed.status.conditions, "ResourcesAvailable")).toMatchObject({
      status: "False",
      ...problem,
    });
    expect(getCondition(failed.status.conditions, "Ready")).toMatchObject({
      status: "False",
      ...problem,
    });

    const placed = scaledRevision(failed, report({ actual: 0, state: "Activating" }), T1)!;
    expect(getCondition(placed.status.conditions, "ResourcesAvailable")?.status).toBe("Unknown");
    expect(getCondition(placed.status.conditions, "Ready")).toMatchObject({
      status: "Unknown",
      reason: "Deploying",
    });
  });

  it("a placement problem on a serving revision leaves Ready True, and clears back to True", () => {
    const problem = { reason: "NoAgents" as const, message: "no live agent" };
    const failed = scaledRevision(revision(READY), report({ desired: 3, placement: problem }), T1)!;
    expect(getCondition(failed.status.conditions, "Ready")?.status).toBe("True");
    expect(getCondition(failed.status.conditions, "ResourcesAvailable")?.status).toBe("False");
    const ok = scaledRevision(failed, report({ desired: 3 }), T1)!;
    expect(getCondition(ok.status.conditions, "ResourcesAvailable")?.status).toBe("True");
  });

  it("never retracts a failure the agent reported", () => {
    const rev = revision([
      { type: "Ready", status: "False", reason: "ImageNotFound", message: "no such image" },
      {
        type: "ResourcesAvailable",
        status: "False",
        reason: "ImageNotFound",
        message: "no such image",
      },
    ]);
    const next = scaledRevision(rev, report({ actual: 0, state: "Activating" }), T1)!;
    expect(getCondition(next.status.conditions, "Ready")?.reason).toBe("ImageNotFound");
    expect(getCondition(next.status.conditions, "ResourcesAvailable")?.reason).toBe(
      "ImageNotFound",
    );
  });

  it("shows annotations that no longer parse as a warning condition, removed once fixed", () => {
    const warned = scaledRevision(
      revision(READY),
      report({ scalingProblem: "max-scale too high" }),
      T1,
    )!;
    expect(getCondition(warned.status.conditions, SCALING_CONDITION)).toMatchObject({
      status: "False",
      severity: "Warning",
      reason: "InvalidAutoscalingAnnotations",
    });
    expect(getCondition(warned.status.conditions, "Ready")?.status).toBe("True");
    const fixed = scaledRevision(warned, report(), T1)!;
    expect(getCondition(fixed.status.conditions, SCALING_CONDITION)).toBeUndefined();
  });

  it("records the routing state and when it last changed (what revision GC reads)", () => {
    const routed = scaledRevision(revision(READY), report(), T0)!;
    expect(routed.metadata.labels?.[ROUTING_STATE_LABEL]).toBe("active");
    expect(routed.metadata.annotations?.[Annotations.routingStateModified]).toBe(
      "2026-05-01T10:00:00Z",
    );
    const same = scaledRevision(routed, report({ desired: 2 }), T1)!;
    expect(same.metadata.annotations?.[Annotations.routingStateModified]).toBe(
      "2026-05-01T10:00:00Z",
    );
    const reserve = scaledRevision(same, report({ desired: 2, routingState: "reserve" }), T1)!;
    expect(reserve.metadata.labels?.[ROUTING_STATE_LABEL]).toBe("reserve");
    expect(reserve.metadata.annotations?.[Annotations.routingStateModified]).toBe(
      "2026-05-01T10:05:00Z",
    );
  });
});
