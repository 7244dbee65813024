/**
 * The KPA decision driven by synthetic metric series on a simulated clock:
 * one observation per second, one decision per tick (2 s), and ready
 * instances that follow the decision at once unless a test says otherwise.
 */
import { describe, expect, it } from "vitest";
import {
  type DecideInput,
  type Decision,
  KpaAutoscaler,
  type KpaOptions,
  type Observation,
} from "../../scaler/kpa.ts";
import {
  parseScaling,
  type ScalingDefaultsInput,
  type ScalingSettings,
  scalingDefaultsSchema,
} from "../../src/model/scaling.ts";

const T0 = 1_000_000_000;

function settingsFor(
  annotations: Record<string, string> = {},
  opts: { containerConcurrency?: number; defaults?: ScalingDefaultsInput } = {},
): ScalingSettings {
  const anns = Object.fromEntries(
    Object.entries(annotations).map(([k, v]) => [`autoscaling.knative.dev/${k}`, v]),
  );
  return parseScaling(
    anns,
    { containerConcurrency: opts.containerConcurrency ?? 0 },
    scalingDefaultsSchema.parse(opts.defaults ?? {}),
  );
}

interface Step extends Decision {
  t: number;
  ready: number;
}

type Load = number | Observation | ((t: number) => number | Observation);

/** A revision on a simulated clock. `t` is ms since T0. */
class Sim {
  t = 0;
  ready: number;
  readonly steps: Step[] = [];
  readonly a: KpaAutoscaler;
  follow = true;
  reachable = true;
  readonly settings: ScalingSettings;

  constructor(
    settings: ScalingSettings,
    opts: KpaOptions & { ready?: number } = { initialized: true, currentScale: 1 },
  ) {
    this.settings = settings;
    const { ready, ...kpa } = opts;
    this.ready = ready ?? kpa.currentScale ?? 0;
    this.a = new KpaAutoscaler(kpa);
  }

  /** Advance `seconds`, recording `load` each second and deciding each tick. */
  run(seconds: number, load: Load): Step[] {
    const out: Step[] = [];
    for (let i = 0; i < seconds; i++) {
      this.t += 1000;
      const l = typeof load === "function" ? load(this.t) : load;
      const obs = typeof l === "number" ? { concurrency: l, rps: l } : l;
      this.a.record(T0 + this.t, obs);
      if (this.t % this.settings.tickIntervalMs === 0) out.push(this.decide());
    }
    return out;
  }

  decide(extra: Partial<DecideInput> = {}): Step {
    const d = this.a.decide(T0 + this.t, {
      readyInstances: this.ready,
      settings: this.settings,
      reachable: this.reachable,
      ...extra,
    });
    const step = { ...d, t: this.t, ready: this.ready };
    this.steps.push(step);
    if (this.follow) this.ready = d.desired;
    return step;
  }

  get last(): Step {
    return this.steps.at(-1)!;
  }
}

const target10 = () => settingsFor({ target: "10" });

describe("KPA: scaling on load", () => {
  it("step up: 50 in flight with target 10 at 70% utilisation settles at ceil(50/7) = 8", () => {
    const sim = new Sim(target10());
    const first = sim.run(2, 50)[0]!;
    // The panic window sees the step at once: 8 right away.
    expect(first.desired).toBe(8);
    sim.run(120, 50);
    expect(sim.last).toMatchObject({ desired: 8, mode: "stable", reason: "Stable", stableAvg: 50 });
  });

  it("partial window at start: averages over the seconds that exist, not the whole window", () => {
    const sim = new Sim(target10());
    sim.run(4, 14);
    // 4 s of 14 in a 60 s window: the average is 14 (not 14 x 4 / 60), so 2 instances.
    expect(sim.last.stableAvg).toBe(14);
    expect(sim.last.desired).toBe(2);
  });

  it("samples within the same second are averaged, not summed", () => {
    const a = new KpaAutoscaler({ initialized: true, currentScale: 1 });
    a.record(T0 + 1000, { concurrency: 10, rps: 0 });
    a.record(T0 + 1500, { concurrency: 30, rps: 0 });
    const d = a.decide(T0 + 1900, { readyInstances: 1, settings: target10() });
    expect(d.stableAvg).toBe(20);
    expect(d.desired).toBe(3);
  });

  it("rps metric: scales on requests per second against the rps target (200 x 70%)", () => {
    const sim = new Sim(settingsFor({ metric: "rps" }));
    sim.run(120, { concurrency: 1, rps: 1000 });
    expect(sim.last.stableAvg).toBe(1000);
    expect(sim.last.desired).toBe(Math.ceil(1000 / 140));
  });

  it("max scale-up rate: one decision grows to at most ceil(rate x ready)", () => {
    const sim = new Sim(settingsFor({ target: "10" }, { defaults: { maxScaleUpRate: 2 } }));
    const grown = sim.run(8, 700).map((s) => s.desired);
    // ready 1 -> 2 -> 4 -> 8 -> 16, although 100 are needed.
    expect(grown).toEqual([2, 4, 8, 16]);
    const free = new Sim(target10(), { initialized: true, currentScale: 1 });
    expect(free.run(2, 700)[0]!.desired).toBe(100);
  });

  it("max scale-down rate: one decision halves at most (floor(ready / 2))", () => {
    const sim = new Sim(target10(), { initialized: true, currentScale: 1 });
    sim.decide(); // first decision with 1 ready: no restart panic
    sim.ready = 10;
    sim.run(4, 0);
    expect(sim.steps.slice(1).map((s) => [s.ready, s.desired])).toEqual([
      [10, 5],
      [5, 2],
    ]);
    expect(sim.steps[1]!.reason).toBe("MaxScaleDownRate");
  });
});

describe("KPA: panic mode", () => {
  it("a sudden x3 burst panics and scales up from the panic window", () => {
    const sim = new Sim(target10());
    sim.run(120, 21);
    expect(sim.last).toMatchObject({ desired: 3, mode: "stable" });
    const burst = sim.run(10, 63);
    const panicked = burst.find((s) => s.mode === "panic");
    expect(panicked).toBeDefined();
    expect(panicked!.desired).toBeGreaterThanOrEqual(9);
    // The stable window alone would still ask for about 3-4.
    expect(Math.ceil(panicked!.stableAvg / 7)).toBeLessThan(panicked!.desired);
  });

  it("never scales down while panicking, and leaves after a whole stable window below the threshold", () => {
    const sim = new Sim(target10());
    sim.run(120, 21);
    const burst = sim.run(10, 63);
    const peak = Math.max(...burst.map((s) => s.desired));
    const after = sim.run(120, 21);
    const panicking = after.filter((s) => s.mode === "panic");
    expect(panicking.length).toBeGreaterThan(0);
    for (const s of panicking) expect(s.desired).toBe(peak);
    // The last decision over the threshold: ceil(panicAvg / 7) / ready >= 2.
    const all = [...burst, ...after];
    const lastOver = all
      .filter((s) => Math.ceil(s.panicAvg / 7) / Math.max(1, s.ready) >= 2)
      .at(-1)!;
    const firstStable = after.find((s) => s.mode === "stable")!;
    expect(firstStable.t).toBeGreaterThan(lastOver.t + 60_000);
    const before = all.filter((s) => s.t <= lastOver.t + 60_000).at(-1)!;
    expect(before.mode).toBe("panic");
    expect(firstStable.desired).toBeLessThan(peak);
  });

  it("a fresh autoscaler with several ready instances starts in panic, so a restart does not scale down", () => {
    const a = new KpaAutoscaler({ initialized: true, currentScale: 5 });
    const d = a.decide(T0, { readyInstances: 5, settings: target10() });
    expect(d).toMatchObject({ desired: 5, mode: "panic" });
    const cold = new KpaAutoscaler({ initialized: true, currentScale: 1 });
    cold.decide(T0, { readyInstances: 1, settings: target10() });
    expect(cold.decide(T0 + 2000, { readyInstances: 5, settings: target10() }).desired).toBe(2);
  });
});

describe("KPA: why it panics", () => {
  it("a fresh autoscaler with zero load starts in panic for a stable window, says it is starting (not load), and then leaves", () => {
    const sim = new Sim(target10(), { initialized: true, currentScale: 4, ready: 4 });
    sim.follow = false;
    const first = sim.decide();
    expect(first).toMatchObject({ desired: 4, mode: "panic", panicCause: "starting" });
    expect(first.message).toMatch(/^panic \(starting\)/);
    expect(first.message).not.toMatch(/load over/);
    const idle = sim.run(70, 0);
    const panicking = idle.filter((s) => s.mode === "panic");
    expect(panicking.length).toBeGreaterThan(0);
    for (const s of panicking) expect(s.panicCause).toBe("starting");
    expect(sim.last.mode).toBe("stable");
    expect(sim.last.panicCause).toBeUndefined();
  });

  it("a real surge while starting turns the cause into load", () => {
    const sim = new Sim(target10(), { initialized: true, currentScale: 2, ready: 2 });
    sim.follow = false;
    expect(sim.decide().panicCause).toBe("starting");
    const surge = sim.run(4, 100).at(-1)!;
    expect(surge).toMatchObject({ mode: "panic", panicCause: "load" });
    expect(surge.message).toMatch(/^panic: load over 200%/);
  });
});

describe("KPA: scale-down delay and bounds", () => {
  const short = (extra: Record<string, string> = {}) =>
    settingsFor({ target: "10", window: "6s", ...extra });

  it("scale-down delay holds the maximum desired over the trailing delay window", () => {
    const delayed = new Sim(short({ "scale-down-delay": "20s" }));
    const plain = new Sim(short());
    for (const sim of [delayed, plain]) sim.run(30, 21);
    expect(delayed.last.desired).toBe(3);
    const dropPlain = plain.run(30, 7);
    const dropDelayed = delayed.run(30, 7);
    // Without delay the count follows the 6 s window down to 1.
    expect(dropPlain.find((s) => s.desired === 1)!.t - 30_000).toBeLessThanOrEqual(8_000);
    // With it, the last decision that wanted 3 on its own is held for the 20 s delay
    // (in 2 s tick buckets), then the lower values follow.
    const lastOwn3 = dropDelayed
      .filter((s) => s.desired === 3 && s.reason !== "ScaleDownDelay")
      .at(-1)!;
    const held = dropDelayed.filter((s) => s.t > lastOwn3.t && s.desired === 3);
    for (const s of held) expect(s.reason).toBe("ScaleDownDelay");
    expect(held.at(-1)!.t - lastOwn3.t).toBe(18_000);
    expect(dropDelayed.find((s) => s.t === lastOwn3.t + 20_000)!.desired).toBeLessThan(3);
    expect(delayed.last.desired).toBe(1);
  });

  it("min-scale clamps the count up", () => {
    const sim = new Sim(settingsFor({ "min-scale": "2" }));
    sim.run(200, 0);
    expect(sim.last).toMatchObject({ desired: 2, reason: "Min" });
  });

  it("max-scale caps the count", () => {
    const sim = new Sim(settingsFor({ "max-scale": "3", target: "10" }));
    sim.run(20, 700);
    expect(sim.last).toMatchObject({ desired: 3, reason: "Max" });
  });

  it("min-scale no longer applies when no route references the revision", () => {
    const sim = new Sim(settingsFor({ "min-scale": "2" }), { initialized: true, currentScale: 2 });
    sim.reachable = false;
    sim.run(200, 0);
    expect(sim.last).toMatchObject({ desired: 0, reason: "NoTraffic" });
  });

  it("activation-scale raises any non-zero count, but zero stays zero", () => {
    const sim = new Sim(settingsFor({ "activation-scale": "3" }));
    sim.run(20, 1);
    expect(sim.last).toMatchObject({ desired: 3, reason: "ActivationScale" });
    sim.run(200, 0);
    expect(sim.last.desired).toBe(0);
  });
});

describe("KPA: scale to zero", () => {
  it("decay to zero: stays up through the stable window plus the grace period, then 0", () => {
    const sim = new Sim(target10());
    sim.run(120, 5);
    const stop = sim.t;
    const idle = sim.run(120, 0);
    const firstZero = idle.find((s) => s.desired === 0)!;
    // Last non-zero sample at stop; the stable window (60 s) empties, then 30 s grace.
    expect(firstZero.t - stop).toBeGreaterThanOrEqual(60_000 + 30_000 - 1000);
    expect(firstZero.t - stop).toBeLessThanOrEqual(60_000 + 30_000 + 2000);
    const before = idle.filter((s) => s.t < firstZero.t);
    for (const s of before) expect(s.desired).toBe(1);
    expect(before.filter((s) => s.reason === "ScaleToZeroGrace").length).toBeGreaterThan(10);
    expect(firstZero).toMatchObject({ reason: "NoTraffic", state: "Inactive" });
    expect(sim.last).toMatchObject({ desired: 0, reason: "NoTraffic" });
  });

  it("the pod retention period extends the wait when longer than the grace period", () => {
    const sim = new Sim(settingsFor({ "scale-to-zero-pod-retention-period": "50s" }));
    sim.run(120, 5);
    const stop = sim.t;
    const firstZero = sim.run(160, 0).find((s) => s.desired === 0)!;
    expect(firstZero.t - stop).toBeGreaterThanOrEqual(60_000 + 50_000 - 1000);
  });

  it("with scale to zero disabled, an unrouted revision keeps one instance", () => {
    const sim = new Sim(settingsFor({}, { defaults: { enableScaleToZero: false } }));
    sim.reachable = false;
    sim.run(200, 0);
    expect(sim.last).toMatchObject({ desired: 1, reason: "ScaleToZeroDisabled" });
  });

  it("traffic during the grace period keeps the revision up and active", () => {
    const sim = new Sim(target10());
    sim.run(120, 5);
    sim.run(70, 0);
    expect(sim.last).toMatchObject({ desired: 1, reason: "ScaleToZeroGrace", state: "Inactive" });
    sim.run(4, 5);
    expect(sim.last).toMatchObject({ desired: 1, state: "Active" });
    sim.run(40, 0);
    expect(sim.last.desired).toBe(1);
  });
});

describe("KPA: activation and initial scale", () => {
  it("immediate activation from zero: a gateway's request asks for max(1, activation-scale) at once", () => {
    const atZero = () => new Sim(target10(), { initialized: true, currentScale: 0 });
    const sim = atZero();
    expect(sim.decide()).toMatchObject({ desired: 0, reason: "NoTraffic" });
    expect(sim.decide({ activationRequested: true })).toMatchObject({
      desired: 1,
      reason: "Activation",
      state: "Activating",
    });
    const three = new Sim(settingsFor({ "activation-scale": "3" }), {
      initialized: true,
      currentScale: 0,
    });
    expect(three.decide({ activationRequested: true }).desired).toBe(3);
  });

  it("an activating revision holds its scale while instances start, then times out to zero", () => {
    const sim = new Sim(target10(), {
      initialized: true,
      currentScale: 0,
      activationTimeoutMs: 20_000,
    });
    sim.follow = false;
    sim.decide({ activationRequested: true });
    const waiting = sim.run(18, 0);
    for (const s of waiting) expect(s).toMatchObject({ desired: 1, reason: "Activating" });
    const timedOut = sim.run(4, 0).find((s) => s.desired === 0)!;
    expect(timedOut).toMatchObject({ reason: "ActivationTimeout", state: "Inactive" });
  });

  it("after activation, one ready instance becomes Active and stays a stable window before the grace period", () => {
    const sim = new Sim(target10(), { initialized: true, currentScale: 0 });
    sim.decide({ activationRequested: true });
    const steps = sim.run(120, 0);
    // The tick that sees the instance ready marks it Active; the next one idles on it.
    expect(steps[0]).toMatchObject({ desired: 1, state: "Active" });
    expect(steps[1]).toMatchObject({ desired: 1, state: "Active", reason: "Idle" });
    const firstZero = steps.find((s) => s.desired === 0)!;
    expect(firstZero.t).toBeGreaterThanOrEqual(60_000 + 30_000);
  });

  it("initial scale: a new revision asks for initial-scale until that many were ready once", () => {
    const sim = new Sim(settingsFor({ "initial-scale": "3" }), {});
    sim.follow = false;
    sim.ready = 0;
    expect(sim.decide()).toMatchObject({ desired: 3, reason: "InitialScale", initialized: false });
    sim.ready = 2;
    expect(sim.decide()).toMatchObject({ desired: 3, initialized: false });
    sim.ready = 3;
    expect(sim.decide()).toMatchObject({ initialized: true });
    // Initialised: no traffic, so it scales down (halving) like any revision.
    expect(sim.decide().desired).toBe(1);
  });

  it("a new revision with the default initial scale runs one instance, then idles to zero", () => {
    const sim = new Sim(target10(), {});
    sim.follow = false;
    sim.ready = 0;
    expect(sim.decide()).toMatchObject({ desired: 1, reason: "InitialScale", state: "Activating" });
    sim.ready = 1;
    const readyAt = sim.t;
    sim.follow = true;
    const steps = sim.run(120, 0);
    expect(steps[0]).toMatchObject({ desired: 1, state: "Active", initialized: true });
    const firstZero = steps.find((s) => s.desired === 0)!;
    expect(firstZero.t - readyAt).toBeGreaterThanOrEqual(60_000 + 30_000);
  });
});

describe("KPA: excess burst capacity", () => {
  it("is floor(ready x target - target burst capacity - panic average)", () => {
    const sim = new Sim(settingsFor(), { initialized: true, currentScale: 3 });
    sim.follow = false;
    sim.run(10, 50);
    // target 100 (containerConcurrency 0), TBC 211: 3 x 100 - 211 - 50 = 39.
    expect(sim.last.excessBurstCapacity).toBe(39);
  });

  it("is 0 when the target burst capacity is 0 and -1 when it is unlimited", () => {
    for (const [tbc, ebc] of [
      ["0", 0],
      ["-1", -1],
    ] as const) {
      const sim = new Sim(settingsFor({ "target-burst-capacity": tbc }));
      sim.run(4, 50);
      expect(sim.last.excessBurstCapacity).toBe(ebc);
    }
  });
});
