/**
 * RevisionAutoscalers: what each tick records for a revision, and so what its
 * KPA sees. Pure: time is an argument, loads are built in the test.
 */
import { describe, expect, it } from "vitest";
import { RevisionAutoscalers } from "../../../scaler/controllers/revision-autoscalers.ts";
import type { RevisionLoad } from "../../../scaler/metrics-source.ts";
import { parseScalerOptions } from "../../../scaler/options.ts";
import { silentLogger } from "../../../src/logging.ts";
import type { Revision } from "../../../src/model/types.ts";

const REF = "default/step-00001";

/** A worker revision with target 10 and a 6 s panic window (Knative's defaults: 60 s, 10%). */
function revision(annotations: Record<string, string> = {}): Revision {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Revision",
    metadata: {
      name: "step-00001",
      namespace: "default",
      annotations: { "autoscaling.knative.dev/target": "10", ...annotations },
    },
    spec: { containerConcurrency: 0, timeoutSeconds: 300, worker: { source: "" } },
    status: {},
  } as unknown as Revision;
}

const load = (concurrency: number): ReadonlyMap<string, RevisionLoad> =>
  new Map([[REF, { concurrency, rps: 0, inflight: concurrency, queued: 0 }]]);
const NO_LOAD: ReadonlyMap<string, RevisionLoad> = new Map();

function autoscalers() {
  return new RevisionAutoscalers(
    parseScalerOptions({ autoscaler: { allowZeroInitialScale: true } }),
    silentLogger,
  );
}

/** One scaler tick per second: record, then decide; the desired count of each. */
function tick(
  a: RevisionAutoscalers,
  rev: Revision,
  t: number,
  loads: ReadonlyMap<string, RevisionLoad>,
  ready = 0,
  activationRequested = loads.size > 0,
) {
  a.recordAll(loads, t);
  return a.decide(REF, rev, t, {
    ready,
    placed: ready,
    activationRequested,
    reachable: true,
  }).decision.desired;
}

describe("RevisionAutoscalers.recordAll", () => {
  it("a step from zero after an idle minute is seen at its full size at the first tick", () => {
    const a = autoscalers();
    const rev = revision({ "autoscaling.knative.dev/initial-scale": "0" });
    let t = 1_000_000;
    // At zero and idle for a minute (ticks go on: nothing runs to observe).
    for (let i = 0; i < 60; i++, t += 1_000) expect(tick(a, rev, t, NO_LOAD)).toBe(0);
    // 100 clients arrive: the panic window does not average them with the idle seconds.
    // ceil(100 / (10 * 0.7)) = 15; diluted over the 6 s window it would be ceil(16.7 / 7) = 3.
    expect(tick(a, rev, t, load(100))).toBe(15);
  });

  it("a revision with instances placed records its idle seconds as zero", () => {
    const a = autoscalers();
    const rev = revision();
    let t = 1_000_000;
    // One instance runs (initial scale 1) and is idle: zeros are real observations.
    for (let i = 0; i < 5; i++, t += 1_000) tick(a, rev, t, NO_LOAD, 1);
    // 30 clients for one second: averaged with the 5 idle seconds over the
    // panic window (6 s): 30 / 6 = 5, under the target, so no scale-up yet.
    expect(tick(a, rev, t, load(30), 1)).toBe(1);
  });

  it("the idle seconds at zero are not filled in with the load that ends them", () => {
    const a = autoscalers();
    const rev = revision();
    let t = 1_000_000;
    // One idle instance until the KPA scales it to zero (its zeros are recorded).
    let desired = 1;
    for (let i = 0; i < 300 && desired > 0; i++, t += 1_000) desired = tick(a, rev, t, NO_LOAD, 1);
    expect(desired).toBe(0);
    // 30 s at zero, then a load of 50.
    for (let i = 0; i < 30; i++, t += 1_000) tick(a, rev, t, NO_LOAD);
    tick(a, rev, t, load(50));
    const d = a.get(REF)?.decision;
    // The 30 s at zero count as zero in the stable window (a gap shorter than
    // the window, as Knative's buckets count it): about 50 / 60. Filled in with
    // the 50 that ended them, it would be about 26.
    expect(d?.stableAvg).toBeLessThan(2);
    // The panic window (6 s) restarts at the load.
    expect(d?.panicAvg).toBe(50);
  });
});

describe("RevisionAutoscalers.decide", () => {
  it("a revision at zero whose activation a standby answered before the pass is held Active through the stable window, not scaled back to zero", () => {
    const a = autoscalers();
    const rev = revision({ "autoscaling.knative.dev/initial-scale": "0" });
    let t = 1_000_000;
    // Created at zero, idle past every grace.
    for (let i = 0; i < 120; i++, t += 1_000) expect(tick(a, rev, t, NO_LOAD)).toBe(0);
    // The gateway's signal; the resumed instance is ready by the pass, and no
    // load has been reported yet.
    expect(tick(a, rev, t, NO_LOAD, 1, true)).toBe(1);
    // No further signal: held for the stable window (60 s), as after any activation.
    for (let i = 0; i < 50; i++) {
      t += 1_000;
      expect(tick(a, rev, t, NO_LOAD, 1)).toBe(1);
    }
    expect(a.get(REF)?.decision?.state).toBe("Active");
  });
});
