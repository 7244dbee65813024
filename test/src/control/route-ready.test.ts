/** A Route is Ready only once the gateways serve its resolved traffic (Knative's IngressReady). */
import { describe, expect, it } from "vitest";
import { routeStatus, trafficFingerprint } from "../../../src/control/status.ts";
import type { Revision, Route } from "../../../src/model/types.ts";

const readyRevision = {
  metadata: { name: "hello-00001" },
  status: {
    conditions: [{ type: "Ready", status: "True", lastTransitionTime: "2026-01-01T00:00:00Z" }],
  },
} as unknown as Revision;

function route(publishedTraffic?: string): Route {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Route",
    metadata: { name: "hello", namespace: "default", generation: 1 } as Route["metadata"],
    spec: { traffic: [{ revisionName: "hello-00001", latestRevision: false, percent: 100 }] },
    status: publishedTraffic ? { publishedTraffic } : {},
  };
}

const ctx = { domain: "localhost", scheme: "http", revision: () => readyRevision };
const ready = (r: Route["status"]) => r.conditions?.find((c) => c.type === "Ready");

describe("route readiness", () => {
  it("is Unknown (IngressNotConfigured) while its traffic has not been published", () => {
    const status = routeStatus(route(), () => undefined, ctx);
    expect(ready(status)).toMatchObject({ status: "Unknown", reason: "IngressNotConfigured" });
  });

  it("is True once the published fingerprint matches the resolved traffic", () => {
    const first = routeStatus(route(), () => undefined, ctx);
    const status = routeStatus(route(trafficFingerprint(first.traffic!)), () => undefined, ctx);
    expect(ready(status)?.status).toBe("True");
  });

  it("goes back to Unknown when the traffic changes until it is published again", () => {
    const published = routeStatus(route(), () => undefined, ctx);
    const moved = route(trafficFingerprint(published.traffic!));
    moved.spec.traffic = [
      { revisionName: "hello-00001", latestRevision: false, percent: 100, tag: "x" },
    ];
    expect(ready(routeStatus(moved, () => undefined, ctx))?.reason).toBe("IngressNotConfigured");
  });
});
