/** kn-compatible flag semantics, pinned one by one (pure, no server). */
import { describe, expect, it } from "vitest";
import {
  applyServiceFlags,
  applyTraffic,
  newServiceManifest,
  parsePort,
  type ServiceManifest,
} from "../../../deploy/cli/service-flags.ts";
import { UsageError } from "../../../src/errors.ts";

function base(): ServiceManifest {
  return newServiceManifest("hello", "default", { image: "img:1", env: ["TARGET=World"] });
}

describe("service flags", () => {
  it("create needs --image or --source", () => {
    expect(() => newServiceManifest("x", "default", {})).toThrow(UsageError);
  });

  it("--env KEY- removes a variable and KEY=V replaces in place", () => {
    const m = applyServiceFlags(base(), { env: ["A=1", "TARGET=Knative", "A-"] });
    expect(m.spec.template.spec.containers![0]!.env).toEqual([
      { name: "TARGET", value: "Knative" },
    ]);
  });

  it("--scale-* flags become autoscaling annotations on the template", () => {
    const m = applyServiceFlags(base(), { scaleMin: "1", scaleMax: "5", scaleTarget: "10" });
    expect(m.spec.template.metadata.annotations).toEqual({
      "autoscaling.knative.dev/min-scale": "1",
      "autoscaling.knative.dev/max-scale": "5",
      "autoscaling.knative.dev/target": "10",
    });
  });

  it("--concurrency-limit sets containerConcurrency", () => {
    expect(
      applyServiceFlags(base(), { concurrencyLimit: "3" }).spec.template.spec.containerConcurrency,
    ).toBe(3);
  });

  it("a template change drops an old chosen revision name unless a new one is given", () => {
    const named = applyServiceFlags(base(), { revisionName: "hello-v1" });
    expect(named.spec.template.metadata.name).toBe("hello-v1");
    expect(applyServiceFlags(named, { env: ["X=1"] }).spec.template.metadata.name).toBeUndefined();
    expect(
      applyServiceFlags(named, { traffic: ["hello-v1=100"] }).spec.template.metadata.name,
    ).toBe("hello-v1");
  });

  it("--port accepts h2c:PORT", () => {
    expect(parsePort("h2c:9000")).toEqual({ name: "h2c", port: 9000 });
    expect(() => parsePort("99999")).toThrow(/1-65535/);
  });

  it("--image and --source exclude each other", () => {
    expect(() => applyServiceFlags(base(), { image: "a", source: "b.js" })).toThrow(/exclude/);
  });
});

describe("traffic flags", () => {
  it("--traffic REV=100 pins and drops the @latest target", () => {
    expect(applyTraffic([], { traffic: ["hello-00001=100"] })).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
  });

  it("--traffic with @latest keeps a latest target", () => {
    expect(
      applyTraffic([{ revisionName: "hello-00001", percent: 100 }], {
        traffic: ["hello-00001=50", "@latest=50"],
      }),
    ).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 50 },
      { latestRevision: true, percent: 50 },
    ]);
  });

  it("--traffic may name a tag", () => {
    const current = [
      { revisionName: "a", percent: 100 },
      { revisionName: "b", percent: 0, tag: "canary" },
    ];
    expect(applyTraffic(current, { traffic: ["canary=20", "a=80"] })).toEqual([
      { revisionName: "a", latestRevision: false, percent: 80 },
      { tag: "canary", revisionName: "b", latestRevision: false, percent: 20 },
    ]);
  });

  it("--tag adds a 0% target, --untag removes it again", () => {
    const tagged = applyTraffic([{ latestRevision: true, percent: 100 }], {
      tag: ["hello-00002=canary"],
    });
    expect(tagged).toEqual([
      { latestRevision: true, percent: 100 },
      { tag: "canary", revisionName: "hello-00002", latestRevision: false, percent: 0 },
    ]);
    expect(applyTraffic(tagged, { untag: ["canary"] })).toEqual([
      { latestRevision: true, percent: 100 },
    ]);
  });

  it("--tag @latest=current tags the latest target", () => {
    expect(applyTraffic([], { tag: ["@latest=current"] })).toEqual([
      { tag: "current", latestRevision: true, percent: 100 },
    ]);
  });

  it("percents that do not sum to 100 are refused", () => {
    expect(() => applyTraffic([], { traffic: ["a=50", "b=40"] })).toThrow(/add up to 90/);
  });

  it("a tag in use is refused", () => {
    expect(() =>
      applyTraffic([{ revisionName: "a", percent: 100, tag: "x" }], { tag: ["b=x"] }),
    ).toThrow(/already used/);
  });

  it("--untag of an unknown tag is refused", () => {
    expect(() => applyTraffic([], { untag: ["nope"] })).toThrow(/no traffic target/);
  });
});
