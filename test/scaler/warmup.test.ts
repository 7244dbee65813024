/** wantsWarmup: which revisions created at zero run one instance for their standby. Pure. */
import { describe, expect, it } from "vitest";
import { createdMs, type WarmupInput, wantsWarmup, warmupWindowMs } from "../../scaler/warmup.ts";
import type { Revision } from "../../src/model/types.ts";

const NOW = Date.parse("2026-12-02T12:00:00Z");
const fresh: WarmupInput = {
  desired: 0,
  ready: 0,
  standby: false,
  warmed: false,
  createdMs: NOW - 2_000,
  nowMs: NOW,
  windowMs: 300_000,
};

describe("wantsWarmup", () => {
  it("warms a revision created at zero a moment ago", () => {
    expect(wantsWarmup(fresh)).toBe(true);
  });

  it("stops once it is ready, once an agent holds its standby, or once it was warmed", () => {
    expect(wantsWarmup({ ...fresh, ready: 1 })).toBe(false);
    expect(wantsWarmup({ ...fresh, standby: true })).toBe(false);
    expect(wantsWarmup({ ...fresh, warmed: true })).toBe(false);
  });

  it("leaves revisions the autoscaler wants instances for to the autoscaler", () => {
    expect(wantsWarmup({ ...fresh, desired: 2 })).toBe(false);
  });

  it("warms only within the window of creation, and not at all when it is 0", () => {
    expect(wantsWarmup({ ...fresh, createdMs: NOW - 300_000 })).toBe(false);
    expect(wantsWarmup({ ...fresh, createdMs: NOW + 5_000 })).toBe(false);
    expect(wantsWarmup({ ...fresh, createdMs: undefined })).toBe(false);
    expect(wantsWarmup({ ...fresh, windowMs: 0 })).toBe(false);
  });
});

describe("warmupWindowMs", () => {
  it("is the window of the revision's runtime, so containers can be left cold on their own", () => {
    const o = { isolateWarmupMs: 300_000, containerWarmupMs: 0 };
    expect(warmupWindowMs("isolate", o)).toBe(300_000);
    expect(warmupWindowMs("container", o)).toBe(0);
    expect(wantsWarmup({ ...fresh, windowMs: warmupWindowMs("container", o) })).toBe(false);
  });
});

describe("createdMs", () => {
  it("reads the creation timestamp, and nothing from one that does not parse", () => {
    const rev = (creationTimestamp: string) => ({ metadata: { creationTimestamp } }) as Revision;
    expect(createdMs(rev("2026-12-02T11:59:58Z"))).toBe(NOW - 2_000);
    expect(createdMs(rev("yesterday"))).toBeUndefined();
  });
});
