/**
 * Knative's KPA decision for one revision, as a pure state machine: the I/O
 * loop feeds it observations and asks for a decision each tick; time is an
 * argument, nothing here reads a clock, sets a timer or does I/O.
 *
 * One decision is Knative's two steps in a row:
 *
 * 1. The decider (autoscaler.go Scale): stable and panic averages from
 *    1-second buckets; ready = max(1, ready instances); desired counts
 *    ceil(avg / effectiveTarget) clamped to [floor(ready / maxScaleDownRate),
 *    ceil(maxScaleUpRate x ready)]; activation-scale raises a non-zero count;
 *    panic when ceil(panicAvg / target) / ready >= threshold, never scaling
 *    down while panicking and leaving only after a whole stable window below
 *    the threshold; the scale-down delay keeps the maximum over its window;
 *    excess burst capacity (informational).
 * 2. The PodAutoscaler reconciler (kpa/scaler.go + computeActiveCondition):
 *    min/max bounds (min-scale only while the revision is reachable, i.e.
 *    routed), initial scale, and the road to zero through the Active
 *    condition: Active -> (no traffic for a stable window while active) ->
 *    Inactive -> (grace period) -> 0. A revision that is activating (brand
 *    new, or started from zero) holds its scale until it has ready instances
 *    or the activation timeout passes.
 *
 * Where Skiff differs, on purpose:
 * - An activation request from a gateway (a request arrived for a revision
 *   without ready instances) is an input: the decision that sees it asks for at
 *   least max(1, activation-scale) at once. Gateways should also count held
 *   requests as in-flight, as Knative's activator does, so the stable window
 *   sees the demand.
 * - Knative may skip the grace period when its activator was already in the
 *   path; Skiff always waits max(grace, pod retention) after the revision went
 *   Inactive (so "stable window + grace" with no traffic before reaching zero).
 * - No metric data is treated as zero load rather than "no decision": a fresh
 *   autoscaler with several ready instances starts in panic (as Knative's does)
 *   so a scaler restart never scales down on lost history, and an active
 *   revision is kept for a stable window before it may go inactive.
 */
import { z } from "zod";
import type { ScalingSettings } from "../src/model/scaling.ts";
import { MaxWindow, MetricSeries } from "./metric-window.ts";

/** One sample of the fleet's load on a revision (summed over gateways). */
export interface Observation {
  /** Average in-flight requests over the sample period. */
  concurrency: number;
  /** Requests per second over the sample period. */
  rps: number;
}

export type ScaleMode = "stable" | "panic";

/**
 * Why an autoscaler is in panic mode: "load" (the panic window's load passed
 * the threshold) or "starting" (a fresh autoscaler with several ready
 * instances starts in panic, as Knative's does, so lost history never scales
 * anything down; it ends after one stable window).
 */
export type PanicCause = "load" | "starting";

/** Knative's PodAutoscaler `Active` condition: Unknown, True, False. */
export type ActiveState = "Activating" | "Active" | "Inactive";

/** Why `desired` is what it is: the last step that decided it. */
export type ScaleReason =
  /** ceil(stable average / target). */
  | "Stable"
  /** Panic mode: the larger of stable and panic, never below the panic maximum. */
  | "Panic"
  /** Capped by max-scale-up-rate x ready. */
  | "MaxScaleUpRate"
  /** Held at ready / max-scale-down-rate. */
  | "MaxScaleDownRate"
  /** A higher value within the scale-down delay window. */
  | "ScaleDownDelay"
  /** activation-scale raised a non-zero count. */
  | "ActivationScale"
  /** A gateway asked for the revision (it had no ready instance). */
  | "Activation"
  | "Min"
  | "Max"
  /** A new revision holds its initial scale until that many instances were ready once. */
  | "InitialScale"
  /** Waiting for instances started from zero to become ready. */
  | "Activating"
  /** Activation did not produce a ready instance in time: back to zero. */
  | "ActivationTimeout"
  /** No traffic, but active for less than a stable window: one instance stays. */
  | "Idle"
  /** Inactive; waiting out the scale-to-zero grace (and pod retention) period. */
  | "ScaleToZeroGrace"
  /** At zero (or going there): no traffic. */
  | "NoTraffic"
  /** Scale to zero is disabled cluster-wide: one instance stays. */
  | "ScaleToZeroDisabled";

export interface DecideInput {
  /** Instances of the revision that pass readiness now. */
  readyInstances: number;
  settings: ScalingSettings;
  /** A gateway holds a request for this revision and has nowhere to send it. */
  activationRequested?: boolean;
  /**
   * False when no route references the revision (Knative's Reachability):
   * min-scale no longer applies and scale-down is not rate-limited. Default true.
   */
  reachable?: boolean;
}

export interface Decision {
  /** Instances to run. */
  desired: number;
  mode: ScaleMode;
  /** Why it panics (only while `mode` is "panic"). */
  panicCause?: PanicCause;
  /** Observed average of the scaling metric over the stable / panic window. */
  stableAvg: number;
  panicAvg: number;
  reason: ScaleReason;
  /** Readable explanation for status and logs. */
  message: string;
  /**
   * floor(ready x target - targetBurstCapacity - panicAvg); negative means the
   * ready instances cannot absorb the configured burst. 0 when TBC is 0, -1
   * when TBC is -1 (unlimited). Informational.
   */
  excessBurstCapacity: number;
  /** The decider's count before bounds and scale-to-zero handling. */
  recommended: number;
  state: ActiveState;
  /** The revision has reached its initial scale once (initial scale no longer applies). */
  initialized: boolean;
}

export const kpaOptionsSchema = z.object({
  /**
   * How long an activating revision (scale target 0 after bounds) may wait for
   * a ready instance before it is scaled to zero: Knative's progress deadline
   * (600 s) plus its 10 s buffer.
   */
  activationTimeoutMs: z.number().int().positive().default(610_000),
  /**
   * The revision already reached its initial scale once (e.g. it was Ready
   * before a scaler restart). False: a brand-new revision.
   */
  initialized: z.boolean().default(false),
  /**
   * Instances currently asked for (what the I/O loop has placed), used while a
   * decision holds the scale. Default: the initial scale for a new revision,
   * else the ready count seen by the first decision.
   */
  currentScale: z.number().int().min(0).optional(),
});
export type KpaOptions = z.input<typeof kpaOptionsSchema>;

/** Bounds Knative applies before scale-to-zero handling (0 max = unlimited). */
function applyBounds(min: number, max: number, x: number): number {
  if (x < min) return min;
  if (max !== 0 && x > max) return max;
  return x;
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10}s`;

/** Per-revision autoscaler state. Create one per revision; feed it, ask it. */
export class KpaAutoscaler {
  readonly #activationTimeoutMs: number;
  readonly #concurrency = new MetricSeries();
  readonly #rps = new MetricSeries();

  #started = false;
  #initialized: boolean;
  #current: number | undefined;
  #state: ActiveState = "Activating";
  #stateSince = 0;
  /** Undefined = not panicking; else the time of the last over-threshold decision. */
  #panicTime: number | undefined;
  #panicCause: PanicCause = "load";
  #maxPanicPods = 0;
  #delay: { window: MaxWindow; delayMs: number; tickMs: number } | undefined;

  constructor(options: KpaOptions = {}) {
    const o = kpaOptionsSchema.parse(options);
    this.#activationTimeoutMs = o.activationTimeoutMs;
    this.#initialized = o.initialized;
    this.#current = o.currentScale;
  }

  /** Add one observation taken at `nowMs`; samples in the same second are averaged. */
  record(nowMs: number, observation: Observation): void {
    this.#concurrency.record(nowMs, observation.concurrency);
    this.#rps.record(nowMs, observation.rps);
  }

  get state(): ActiveState {
    return this.#state;
  }

  get initialized(): boolean {
    return this.#initialized;
  }

  decide(nowMs: number, input: DecideInput): Decision {
    const s = input.settings;
    const readyNow = Math.max(0, Math.floor(input.readyInstances));
    const reachable = input.reachable ?? true;
    const minBound = reachable ? s.minScale : 0;
    this.#concurrency.retain(s.stableWindowMs);
    this.#rps.retain(s.stableWindowMs);

    if (!this.#started) this.#start(nowMs, readyNow, s, minBound);

    // ---- Step 1: the decider.
    const series = s.metric === "rps" ? this.#rps : this.#concurrency;
    const stableAvg = series.average(nowMs, s.stableWindowMs);
    const panicAvg = series.average(nowMs, s.panicWindowMs);
    const ready = Math.max(1, readyNow);
    const maxUp = Math.ceil(s.maxScaleUpRate * ready);
    const maxDown = reachable ? Math.floor(ready / s.maxScaleDownRate) : 0;
    const dspc = Math.ceil(stableAvg / s.effectiveTarget);
    const dppc = Math.ceil(panicAvg / s.effectiveTarget);
    let stablePods = Math.min(Math.max(dspc, maxDown), maxUp);
    let panicPods = Math.min(Math.max(dppc, maxDown), maxUp);
    let reason: ScaleReason =
      dspc > maxUp ? "MaxScaleUpRate" : dspc < maxDown ? "MaxScaleDownRate" : "Stable";
    if (s.activationScale > 1) {
      if (dspc > 0 && s.activationScale > stablePods) {
        stablePods = s.activationScale;
        reason = "ActivationScale";
      }
      if (dppc > 0 && s.activationScale > panicPods) panicPods = s.activationScale;
    }

    const overPanic = dppc / ready >= s.panicThresholdPercentage / 100;
    if (overPanic) {
      // Enter panic, or extend it: the stable window restarts from this tick.
      this.#panicTime = nowMs;
      this.#panicCause = "load";
    } else if (this.#panicTime !== undefined && this.#panicTime + s.stableWindowMs < nowMs) {
      // The surge has made its way into the stable window.
      this.#panicTime = undefined;
      this.#maxPanicPods = 0;
    }

    let desired = stablePods;
    const mode: ScaleMode = this.#panicTime === undefined ? "stable" : "panic";
    if (mode === "panic") {
      // Never scale down while panicking; provision for the larger of the two.
      this.#maxPanicPods = Math.max(this.#maxPanicPods, stablePods, panicPods);
      desired = this.#maxPanicPods;
      reason = "Panic";
    }

    if (s.scaleDownDelayMs > 0) {
      const d = this.#delayWindow(s);
      d.record(nowMs, desired);
      const held = d.current() ?? desired;
      if (held > desired) {
        desired = held;
        reason = "ScaleDownDelay";
      }
    } else this.#delay = undefined;

    let excessBurstCapacity = -1;
    if (s.targetBurstCapacity === 0) excessBurstCapacity = 0;
    else if (s.targetBurstCapacity > 0) {
      excessBurstCapacity = Math.floor(readyNow * s.target - s.targetBurstCapacity - panicAvg);
    }

    // Immediate activation: demand for a revision without ready instances.
    const activation = Math.max(1, s.activationScale);
    if (input.activationRequested && desired < activation) {
      desired = activation;
      reason = "Activation";
    }
    const recommended = desired;

    // ---- Step 2: bounds, initial scale and the road to zero.
    let min = minBound;
    if (!this.#initialized && s.initialScale > 1 && s.initialScale > min) {
      min = s.initialScale;
    }
    const bounded = applyBounds(min, s.maxScale, desired);
    if (bounded !== desired) {
      reason = bounded > desired ? (min === minBound ? "Min" : "InitialScale") : "Max";
      desired = bounded;
    }

    // want: what this decision asks for (-1 = unknown while activating);
    // apply: whether the I/O loop should act on it (else the current scale holds).
    let want = desired;
    let apply = true;
    if (desired === 0) {
      if (!s.enableScaleToZero) {
        want = 1;
        reason = "ScaleToZeroDisabled";
      } else if (this.#state === "Activating") {
        if (nowMs - this.#stateSince >= this.#activationTimeoutMs) {
          want = 0;
          reason = "ActivationTimeout";
        } else {
          want = -1;
          apply = false;
          reason = this.#initialized ? "Activating" : "InitialScale";
        }
      } else if (this.#state === "Active") {
        if (nowMs - this.#stateSince >= s.stableWindowMs) {
          // Mark Inactive; the grace period starts now and the scale holds.
          apply = false;
          reason = "ScaleToZeroGrace";
        } else {
          want = 1;
          reason = "Idle";
        }
      } else {
        const wait = Math.max(s.scaleToZeroGracePeriodMs, s.scaleToZeroPodRetentionMs);
        if (nowMs - this.#stateSince < wait) {
          apply = false;
          reason = "ScaleToZeroGrace";
        } else reason = "NoTraffic";
      }
    }

    this.#updateActive(nowMs, want, readyNow, s, minBound);
    if (apply) this.#current = want;
    const out = apply ? want : (this.#current ?? 0);
    // Holding a scale that is already zero is simply being at zero.
    if (out === 0 && !apply) reason = "NoTraffic";

    return {
      desired: out,
      mode,
      ...(mode === "panic" ? { panicCause: this.#panicCause } : {}),
      stableAvg,
      panicAvg,
      reason,
      message: this.#message(reason, nowMs, out, readyNow, s),
      excessBurstCapacity,
      recommended,
      state: this.#state,
      initialized: this.#initialized,
    };
  }

  #start(nowMs: number, readyNow: number, s: ScalingSettings, minBound: number): void {
    this.#started = true;
    // Knative: a new autoscaler with more than one ready instance starts in
    // panic, keeping the current scale until history builds up again.
    if (readyNow > 1) {
      this.#panicTime = nowMs;
      this.#panicCause = "starting";
      this.#maxPanicPods = readyNow;
    }
    this.#stateSince = nowMs;
    if (!this.#initialized) {
      this.#current ??= Math.max(s.initialScale, minBound);
      this.#state = "Activating";
    } else {
      this.#current ??= readyNow;
      this.#state = readyNow > 0 ? "Active" : this.#current > 0 ? "Activating" : "Inactive";
    }
  }

  /** Knative's computeActiveCondition. */
  #updateActive(
    nowMs: number,
    want: number,
    readyNow: number,
    s: ScalingSettings,
    minBound: number,
  ): void {
    const minReady = this.#initialized ? Math.max(minBound, 1) : Math.max(minBound, s.initialScale);
    if (readyNow >= minReady) this.#initialized = true;
    let next: ActiveState = this.#state;
    if (want === 0 || minReady === 0) next = "Inactive";
    else if (readyNow < minReady) {
      if (want > 0 || this.#state !== "Inactive") next = "Activating";
    } else if (want > 0 || this.#state !== "Inactive") next = "Active";
    if (next !== this.#state) {
      this.#state = next;
      this.#stateSince = nowMs;
    }
  }

  #delayWindow(s: ScalingSettings): MaxWindow {
    const d = this.#delay;
    if (d && d.delayMs === s.scaleDownDelayMs && d.tickMs === s.tickIntervalMs) return d.window;
    const window = new MaxWindow(s.scaleDownDelayMs, s.tickIntervalMs);
    this.#delay = { window, delayMs: s.scaleDownDelayMs, tickMs: s.tickIntervalMs };
    return window;
  }

  #message(
    reason: ScaleReason,
    nowMs: number,
    desired: number,
    ready: number,
    s: ScalingSettings,
  ): string {
    const since = nowMs - this.#stateSince;
    switch (reason) {
      case "Stable":
        return `stable: ${desired} instance(s) for the ${s.metric} over the last ${seconds(s.stableWindowMs)}`;
      case "Panic":
        if (this.#panicCause === "starting") {
          const left = Math.max(0, (this.#panicTime ?? nowMs) + s.stableWindowMs - nowMs);
          return `panic (starting): a new autoscaler keeps the ${desired} placed instance(s) until it has ${seconds(s.stableWindowMs)} of metrics (${seconds(left)} left); not a load surge`;
        }
        return `panic: load over ${s.panicThresholdPercentage}% of ${ready} ready instance(s); not scaling down for ${seconds(s.stableWindowMs)}`;
      case "MaxScaleUpRate":
        return `scale-up limited to ${s.maxScaleUpRate}x the ${ready} ready instance(s)`;
      case "MaxScaleDownRate":
        return `scale-down limited to 1/${s.maxScaleDownRate} of the ${ready} ready instance(s)`;
      case "ScaleDownDelay":
        return `holding ${desired} instance(s) for the ${seconds(s.scaleDownDelayMs)} scale-down delay`;
      case "ActivationScale":
        return `raised to activation-scale ${s.activationScale}`;
      case "Activation":
        return `a request is waiting: starting ${desired} instance(s)`;
      case "Min":
        return `held at min-scale ${s.minScale}`;
      case "Max":
        return `capped at max-scale ${s.maxScale}`;
      case "InitialScale":
        return `new revision: ${desired} instance(s) (initial scale) until they are ready`;
      case "Activating":
        return `waiting for ${desired} instance(s) to become ready (${seconds(since)} so far)`;
      case "ActivationTimeout":
        return `no instance became ready within ${seconds(this.#activationTimeoutMs)}; scaled to zero`;
      case "Idle":
        return `no traffic; keeping 1 instance until it was active for ${seconds(s.stableWindowMs)}`;
      case "ScaleToZeroGrace": {
        const wait = Math.max(s.scaleToZeroGracePeriodMs, s.scaleToZeroPodRetentionMs);
        return `no traffic for ${seconds(s.stableWindowMs)}; scaling to zero in ${seconds(Math.max(0, wait - since))}`;
      }
      case "NoTraffic":
        return "the revision is not receiving traffic";
      case "ScaleToZeroDisabled":
        return "no traffic, but scale to zero is disabled: keeping 1 instance";
    }
  }
}
