import { describe, expect, it } from "vitest";
import {
  aggregateReady,
  allTrafficAssigned,
  ConditionSets,
  getCondition,
  initializeConditions,
  markFalse,
  markTrue,
  parseService,
  resolveTraffic,
  revisionNameForTemplate,
  serviceUrl,
  setCondition,
  templatesEqual,
  withAggregateReady,
} from "../../../src/model/index.ts";

const t0 = new Date("2025-01-01T00:00:00Z");
const t1 = new Date("2025-01-01T00:01:00Z");

describe("conditions", () => {
  it("setCondition keeps lastTransitionTime when the status is unchanged", () => {
    let c = setCondition([], { type: "Ready", status: "Unknown", reason: "Deploying" }, t0);
    c = setCondition(
      c,
      { type: "Ready", status: "Unknown", reason: "StillDeploying", message: "m" },
      t1,
    );
    expect(getCondition(c, "Ready")).toEqual({
      type: "Ready",
      status: "Unknown",
      reason: "StillDeploying",
      message: "m",
      lastTransitionTime: t0.toISOString(),
    });
  });
  it("setCondition moves lastTransitionTime when the status changes", () => {
    const c = markTrue(setCondition([], { type: "Ready", status: "Unknown" }, t0), "Ready", t1);
    expect(getCondition(c, "Ready")?.lastTransitionTime).toBe(t1.toISOString());
  });
  it("conditions are kept sorted by type, one per type", () => {
    let c = markTrue([], "RoutesReady", t0);
    c = markTrue(c, "ConfigurationsReady", t0);
    c = markTrue(c, "RoutesReady", t0);
    expect(c.map((x) => x.type)).toEqual(["ConfigurationsReady", "RoutesReady"]);
  });
  it("aggregateReady is False with the first failing dependent's reason and message", () => {
    let c = markTrue([], "RoutesReady", t0);
    c = markFalse(c, "ConfigurationsReady", "RevisionFailed", "image not found", t0);
    expect(aggregateReady(c, ConditionSets.service.dependents)).toEqual({
      status: "False",
      reason: "RevisionFailed",
      message: "image not found",
    });
  });
  it("aggregateReady is Unknown while a dependent is missing", () => {
    expect(
      aggregateReady(markTrue([], "ConfigurationsReady", t0), ConditionSets.service.dependents)
        .status,
    ).toBe("Unknown");
  });
  it("aggregateReady is True when all dependents are True", () => {
    const c = markTrue(markTrue([], "ConfigurationsReady", t0), "RoutesReady", t0);
    expect(aggregateReady(c, ConditionSets.service.dependents)).toEqual({ status: "True" });
  });
  it("withAggregateReady writes Ready from the dependents", () => {
    const c = withAggregateReady(
      markFalse([], "ContainerHealthy", "ExitCode1", "crashed", t0),
      ConditionSets.revision,
      t0,
    );
    expect(getCondition(c, "Ready")).toMatchObject({
      status: "False",
      reason: "ExitCode1",
      message: "crashed",
    });
  });
  it("initializeConditions sets every missing condition of the set to Unknown", () => {
    const c = initializeConditions(ConditionSets.service, [], t0);
    expect(c.map((x) => [x.type, x.status])).toEqual([
      ["ConfigurationsReady", "Unknown"],
      ["Ready", "Unknown"],
      ["RoutesReady", "Unknown"],
    ]);
  });
});

describe("route status", () => {
  const opts = { name: "hello", namespace: "default", domain: "localhost" };
  it("serviceUrl is http://{name}.{ns}.{domain}", () => {
    expect(serviceUrl("hello", "default", "localhost")).toBe("http://hello.default.localhost");
  });
  it("latestRevision targets resolve to the latest ready revision; tags get URLs", () => {
    const resolved = resolveTraffic(
      [
        { revisionName: "hello-00001", latestRevision: false, percent: 50 },
        { latestRevision: true, percent: 50 },
        { tag: "canary", revisionName: "hello-00002", latestRevision: false },
      ],
      { ...opts, latestReadyRevisionName: "hello-00002" },
    );
    expect(resolved).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 50 },
      { revisionName: "hello-00002", latestRevision: true, percent: 50 },
      {
        tag: "canary",
        revisionName: "hello-00002",
        latestRevision: false,
        percent: 0,
        url: "http://canary-hello.default.localhost",
      },
    ]);
    expect(allTrafficAssigned(resolved)).toBe(true);
  });
  it("without a ready revision latestRevision targets stay unassigned", () => {
    const resolved = resolveTraffic([{ latestRevision: true, percent: 100 }], opts);
    expect(resolved).toEqual([{ latestRevision: true, percent: 100 }]);
    expect(allTrafficAssigned(resolved)).toBe(false);
  });
  it("Route targets naming a configuration resolve through latestReadyFor", () => {
    const resolved = resolveTraffic(
      [{ configurationName: "other", latestRevision: true, percent: 100 }],
      {
        ...opts,
        latestReadyFor: (c) => (c === "other" ? "other-00003" : undefined),
      },
    );
    expect(resolved[0]?.revisionName).toBe("other-00003");
  });
});

describe("templatesEqual", () => {
  const parse = (body: unknown) => parseService(body, { namespace: "default" }).spec.template;
  const base = {
    metadata: { name: "hello" },
    spec: {
      template: { spec: { containers: [{ image: "a", env: [{ name: "X", value: "1" }] }] } },
    },
  };
  it("the same manifest parsed twice gives equal templates, regardless of key order", () => {
    const reordered = {
      spec: {
        template: { spec: { containers: [{ env: [{ value: "1", name: "X" }], image: "a" }] } },
      },
      metadata: { name: "hello" },
    };
    expect(templatesEqual(parse(base), parse(reordered))).toBe(true);
  });
  it("explicit defaults equal omitted ones (containerConcurrency 0, timeoutSeconds 300)", () => {
    const explicit = {
      ...base,
      spec: {
        template: {
          spec: { ...base.spec.template.spec, containerConcurrency: 0, timeoutSeconds: 300 },
        },
      },
    };
    expect(templatesEqual(parse(base), parse(explicit))).toBe(true);
  });
  it("an env change is a change", () => {
    const changed = {
      ...base,
      spec: {
        template: { spec: { containers: [{ image: "a", env: [{ name: "X", value: "2" }] }] } },
      },
    };
    expect(templatesEqual(parse(base), parse(changed))).toBe(false);
  });
  it("a template name change is a change", () => {
    const named = {
      ...base,
      spec: { template: { ...base.spec.template, metadata: { name: "hello-v2" } } },
    };
    expect(templatesEqual(parse(base), parse(named))).toBe(false);
  });
  it("an annotation change is a change", () => {
    const annotated = {
      ...base,
      spec: {
        template: {
          ...base.spec.template,
          metadata: { annotations: { "autoscaling.knative.dev/min-scale": "1" } },
        },
      },
    };
    expect(templatesEqual(parse(base), parse(annotated))).toBe(false);
  });
  it("revisionNameForTemplate prefers the user's name, else <config>-<generation>", () => {
    expect(revisionNameForTemplate("hello", { metadata: { name: "hello-v2" } }, 3)).toBe(
      "hello-v2",
    );
    expect(revisionNameForTemplate("hello", { metadata: {} }, 3)).toBe("hello-00003");
  });
});
