import { describe, expect, it } from "vitest";
import {
  defaultScalingDefaults,
  parseGoDuration,
  parseScaling,
  resolveScaling,
  scalingDefaultsSchema,
} from "../../../src/model/index.ts";
import { causesOf, expectCause } from "./support.ts";

const P = "autoscaling.knative.dev/";
const at = (key: string) => `spec.template.metadata.annotations[${P}${key}]`;
const parse = (anns: Record<string, string>, cc = 0) =>
  parseScaling(anns, { containerConcurrency: cc }, defaultScalingDefaults);
const fail = (anns: Record<string, string>, cc = 0) => causesOf(() => parse(anns, cc));

describe("defaults (Knative's config-autoscaler)", () => {
  it("no annotations give Knative's KPA defaults", () => {
    const s = parse({});
    expect(s).toMatchObject({
      class: "kpa.autoscaling.knative.dev",
      metric: "concurrency",
      target: 100,
      targetUtilizationPercentage: 70,
      effectiveTarget: 70,
      minScale: 0,
      maxScale: 0,
      initialScale: 1,
      activationScale: 1,
      stableWindowMs: 60_000,
      panicWindowPercentage: 10,
      panicWindowMs: 6_000,
      panicThresholdPercentage: 200,
      scaleDownDelayMs: 0,
      targetBurstCapacity: 211,
      scaleToZeroGracePeriodMs: 30_000,
      maxScaleUpRate: 1000,
      maxScaleDownRate: 2,
      enableScaleToZero: true,
      tickIntervalMs: 2_000,
    });
  });
  it("containerConcurrency > 0 becomes the target when no target annotation is set", () => {
    const s = parse({}, 10);
    expect(s.target).toBe(10);
    expect(s.effectiveTarget).toBe(7);
    expect(s.containerConcurrency).toBe(10);
  });
  it("a concurrency target above containerConcurrency is capped at it (as Knative does)", () => {
    expect(parse({ [`${P}target`]: "50" }, 10).target).toBe(10);
  });
  it("metric rps defaults the target to 200, effective 140", () => {
    const s = parse({ [`${P}metric`]: "rps" });
    expect(s.metric).toBe("rps");
    expect(s.target).toBe(200);
    expect(s.effectiveTarget).toBe(140);
  });
  it("target-utilization-percentage scales the effective target", () => {
    expect(
      parse({ [`${P}target`]: "10", [`${P}target-utilization-percentage`]: "50" }).effectiveTarget,
    ).toBe(5);
  });
  it("the effective target never drops below 0.01", () => {
    expect(
      parse({ [`${P}target`]: "0.01", [`${P}target-utilization-percentage`]: "1" }).effectiveTarget,
    ).toBe(0.01);
  });
  it("the panic window follows the stable window and percentage", () => {
    const s = parse({ [`${P}window`]: "2m", [`${P}panic-window-percentage`]: "5" });
    expect(s.stableWindowMs).toBe(120_000);
    expect(s.panicWindowMs).toBe(6_000);
  });
  it("the panic window is never shorter than the 1 s metric bucket", () => {
    expect(
      parse({ [`${P}window`]: "6s", [`${P}panic-window-percentage`]: "1" }).panicWindowMs,
    ).toBe(1_000);
  });
  it("global defaults can be overridden through the schema, durations as Go strings", () => {
    const d = scalingDefaultsSchema.parse({
      stableWindow: "2m",
      targetConcurrency: 50,
      scaleToZeroGracePeriod: "1m",
    });
    const s = parseScaling({}, { containerConcurrency: 0 }, d);
    expect(s.stableWindowMs).toBe(120_000);
    expect(s.target).toBe(50);
    expect(s.scaleToZeroGracePeriodMs).toBe(60_000);
  });
  it("with scale-to-zero disabled cluster-wide, min-scale is at least 1", () => {
    const d = scalingDefaultsSchema.parse({ enableScaleToZero: false });
    expect(parseScaling({}, {}, d).minScale).toBe(1);
    expect(parseScaling({ [`${P}min-scale`]: "3" }, {}, d).minScale).toBe(3);
  });
  it("the defaults schema rejects a bad duration with a message naming the format", () => {
    const r = scalingDefaultsSchema.safeParse({ stableWindow: "soon" });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toContain('Go duration such as "60s"');
  });
  it("the defaults schema rejects initialScale 0 unless allowZeroInitialScale", () => {
    expect(scalingDefaultsSchema.safeParse({ initialScale: 0 }).success).toBe(false);
    expect(
      scalingDefaultsSchema.safeParse({ initialScale: 0, allowZeroInitialScale: true }).success,
    ).toBe(true);
  });
});

describe("annotation values", () => {
  it("all documented annotations are read", () => {
    const s = parse({
      [`${P}class`]: "kpa.autoscaling.knative.dev",
      [`${P}min-scale`]: "2",
      [`${P}max-scale`]: "20",
      [`${P}initial-scale`]: "3",
      [`${P}activation-scale`]: "2",
      [`${P}target`]: "25",
      [`${P}target-utilization-percentage`]: "80",
      [`${P}window`]: "90s",
      [`${P}panic-window-percentage`]: "20",
      [`${P}panic-threshold-percentage`]: "300",
      [`${P}scale-down-delay`]: "1m30s",
      [`${P}target-burst-capacity`]: "-1",
      [`${P}scale-to-zero-pod-retention-period`]: "1m",
    });
    expect(s).toMatchObject({
      minScale: 2,
      maxScale: 20,
      initialScale: 3,
      activationScale: 2,
      target: 25,
      effectiveTarget: 20,
      stableWindowMs: 90_000,
      panicWindowMs: 18_000,
      panicThresholdPercentage: 300,
      scaleDownDelayMs: 90_000,
      targetBurstCapacity: -1,
      scaleToZeroPodRetentionMs: 60_000,
    });
  });
  it("legacy camelCase spellings are accepted", () => {
    const s = parse({
      [`${P}minScale`]: "1",
      [`${P}maxScale`]: "5",
      [`${P}initialScale`]: "2",
      [`${P}targetUtilizationPercentage`]: "50",
      [`${P}panicWindowPercentage`]: "50",
      [`${P}panicThresholdPercentage`]: "150",
      [`${P}targetBurstCapacity`]: "0",
      [`${P}scaleDownDelay`]: "10s",
    });
    expect(s).toMatchObject({
      minScale: 1,
      maxScale: 5,
      initialScale: 2,
      targetUtilizationPercentage: 50,
      panicWindowPercentage: 50,
      panicThresholdPercentage: 150,
      targetBurstCapacity: 0,
      scaleDownDelayMs: 10_000,
    });
  });
  it("both spellings with the same value are fine", () => {
    expect(parse({ [`${P}min-scale`]: "1", [`${P}minScale`]: "1" }).minScale).toBe(1);
  });
  it("both spellings with different values are an error on the legacy key", () => {
    expectCause(
      fail({ [`${P}min-scale`]: "1", [`${P}minScale`]: "2" }),
      at("minScale"),
      "conflicts with",
    );
  });
});

describe("annotation errors", () => {
  it("an unknown key lists the known ones with a did-you-mean", () => {
    const c = fail({ [`${P}min-scal`]: "1" });
    expectCause(c, at("min-scal"), 'did you mean "autoscaling.knative.dev/min-scale"?');
    expectCause(c, at("min-scal"), "known: class, metric, target");
  });
  it("a global-only key says it is cluster-wide", () => {
    expectCause(fail({ [`${P}max-scale-up-rate`]: "10" }), at("max-scale-up-rate"), "cluster-wide");
  });
  it("other annotation domains are ignored", () => {
    expect(parse({ "example.com/anything": "x" }).minScale).toBe(0);
  });
  it("metric cpu says only the KPA class is supported", () => {
    expectCause(fail({ [`${P}metric`]: "cpu" }), at("metric"), "only the KPA class");
  });
  it("metric memory says only the KPA class is supported", () => {
    expectCause(fail({ [`${P}metric`]: "memory" }), at("metric"), "only the KPA class");
  });
  it("an unknown metric names the allowed ones", () => {
    expectCause(fail({ [`${P}metric`]: "latency" }), at("metric"), '"concurrency" or "rps"');
  });
  it("class hpa is rejected", () => {
    expectCause(
      fail({ [`${P}class`]: "hpa.autoscaling.knative.dev" }),
      at("class"),
      "only the KPA class",
    );
  });
  it("min-scale must be an integer", () => {
    expectCause(fail({ [`${P}min-scale`]: "1.5" }), at("min-scale"), "not an integer");
  });
  it("min-scale must not be negative", () => {
    expectCause(fail({ [`${P}min-scale`]: "-1" }), at("min-scale"), "between 0 and");
  });
  it("max-scale below min-scale is an error", () => {
    expectCause(
      fail({ [`${P}min-scale`]: "5", [`${P}max-scale`]: "2" }),
      at("max-scale"),
      "max-scale=2 is less than min-scale=5",
    );
  });
  it("max-scale 0 means unlimited, so any min-scale is fine", () => {
    expect(parse({ [`${P}min-scale`]: "5", [`${P}max-scale`]: "0" }).maxScale).toBe(0);
  });
  it("max-scale above the cluster limit is an error", () => {
    const d = scalingDefaultsSchema.parse({ maxScaleLimit: 10 });
    const c = causesOf(() => parseScaling({ [`${P}max-scale`]: "11" }, {}, d));
    expectCause(c, at("max-scale"), "between 1 and 10");
  });
  it("initial-scale 0 needs allowZeroInitialScale", () => {
    expectCause(fail({ [`${P}initial-scale`]: "0" }), at("initial-scale"), "allowZeroInitialScale");
    const d = scalingDefaultsSchema.parse({ allowZeroInitialScale: true });
    expect(parseScaling({ [`${P}initial-scale`]: "0" }, {}, d).initialScale).toBe(0);
  });
  it("activation-scale must be at least 1", () => {
    expectCause(fail({ [`${P}activation-scale`]: "0" }), at("activation-scale"), "between 1 and");
  });
  it("target must be at least 0.01", () => {
    expectCause(fail({ [`${P}target`]: "0.001" }), at("target"), "at least 0.01");
  });
  it("target must be a number", () => {
    expectCause(fail({ [`${P}target`]: "ten" }), at("target"), "not a number");
  });
  it("target-utilization-percentage must be 1..100", () => {
    expectCause(
      fail({ [`${P}target-utilization-percentage`]: "101" }),
      at("target-utilization-percentage"),
      "between 1 and 100",
    );
  });
  it("window below 6s is out of range", () => {
    expectCause(fail({ [`${P}window`]: "5s" }), at("window"), "between 6s and 1h");
  });
  it("window above 1h is out of range", () => {
    expectCause(fail({ [`${P}window`]: "61m" }), at("window"), "between 6s and 1h");
  });
  it("window needs whole seconds", () => {
    expectCause(fail({ [`${P}window`]: "6500ms" }), at("window"), "whole number of seconds");
  });
  it("a bare number as a duration says the format and suggests seconds", () => {
    const c = fail({ [`${P}window`]: "60" });
    expectCause(c, at("window"), 'Go duration such as "60s"');
    expectCause(c, at("window"), 'did you mean "60s"?');
  });
  it("panic-window-percentage must be 1..100", () => {
    expectCause(
      fail({ [`${P}panic-window-percentage`]: "0.5" }),
      at("panic-window-percentage"),
      "between 1 and 100",
    );
  });
  it("panic-threshold-percentage must be 110..1000", () => {
    expectCause(
      fail({ [`${P}panic-threshold-percentage`]: "100" }),
      at("panic-threshold-percentage"),
      "between 110 and 1000",
    );
  });
  it("scale-down-delay must be within 1h", () => {
    expectCause(
      fail({ [`${P}scale-down-delay`]: "2h" }),
      at("scale-down-delay"),
      "between 0s and 1h",
    );
  });
  it("target-burst-capacity below -1 is an error", () => {
    expectCause(
      fail({ [`${P}target-burst-capacity`]: "-2" }),
      at("target-burst-capacity"),
      "must be -1",
    );
  });
  it("all problems are reported together", () => {
    expect(
      fail({ [`${P}min-scale`]: "x", [`${P}window`]: "1s", [`${P}metric`]: "cpu" }),
    ).toHaveLength(3);
  });
  it("the field prefix is a parameter", () => {
    const r = resolveScaling(
      { [`${P}min-scale`]: "x" },
      {},
      defaultScalingDefaults,
      "metadata.annotations",
    );
    expect(r.settings).toBeUndefined();
    expect(r.causes[0]?.field).toBe(`metadata.annotations[${P}min-scale]`);
  });
});

describe("Go durations", () => {
  it("parses compound durations", () => {
    expect(parseGoDuration("1h2m3.5s")).toBe(3_723_500);
    expect(parseGoDuration("500ms")).toBe(500);
    expect(parseGoDuration("0")).toBe(0);
  });
  it("rejects bare numbers other than 0, and unknown units", () => {
    expect(parseGoDuration("60")).toBeUndefined();
    expect(parseGoDuration("1d")).toBeUndefined();
  });
});
