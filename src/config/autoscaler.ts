/**
 * The `autoscaler` section: Knative's config-autoscaler, the global defaults
 * per-revision annotations override. The values and ranges are the model's
 * (src/model/scaling.ts, which the deploy API validates annotations with);
 * this adds what the reference says and the flags of `skiff scaler` / `up`.
 */
import { scalingDefaultsSchema } from "../model/scaling.ts";
import { setting } from "./meta.ts";

const s = scalingDefaultsSchema.shape;
const both = (flag: string) => ({ scaler: flag, up: flag });

const DURATION = 'Go duration ("60s") or ms';

export const autoscalerSection = scalingDefaultsSchema.safeExtend({
  stableWindow: setting(s.stableWindow, {
    defaultText: "60s",
    description: `The window load is averaged over (6s..1h); ${DURATION}.`,
    flags: both("--stable-window <duration>"),
  }),
  panicWindowPercentage: setting(s.panicWindowPercentage, {
    description: "The panic window as a percentage of the stable window (1..100).",
    flags: both("--panic-window-percentage <percent>"),
  }),
  panicThresholdPercentage: setting(s.panicThresholdPercentage, {
    description:
      "Panic when the panic-window load exceeds this percentage of capacity (110..1000).",
  }),
  targetConcurrency: setting(s.targetConcurrency, {
    description: "In-flight requests per instance aimed for when containerConcurrency is 0.",
    flags: both("--target-concurrency <n>"),
  }),
  targetUtilizationPercentage: setting(s.targetUtilizationPercentage, {
    description: "Share of the target aimed for (1..100).",
    flags: both("--target-utilization <percent>"),
  }),
  rpsTarget: setting(s.rpsTarget, {
    description: "Requests per second per instance aimed for with the rps metric.",
  }),
  maxScaleUpRate: setting(s.maxScaleUpRate, {
    description: "Instances may grow at most by this factor per decision.",
  }),
  maxScaleDownRate: setting(s.maxScaleDownRate, {
    description: "Instances may shrink at most by this factor per decision.",
  }),
  scaleToZeroGracePeriod: setting(s.scaleToZeroGracePeriod, {
    defaultText: "30s",
    description: `Wait after going inactive before removing the last instance; ${DURATION}.`,
    flags: both("--scale-to-zero-grace <duration>"),
  }),
  scaleToZeroPodRetentionPeriod: setting(s.scaleToZeroPodRetentionPeriod, {
    defaultText: "0s",
    description: `Keep the last instance at least this long after traffic stopped; ${DURATION}.`,
  }),
  scaleDownDelay: setting(s.scaleDownDelay, {
    defaultText: "0s",
    description: `A scale-down takes effect only after the load stayed low this long; ${DURATION}.`,
  }),
  initialScale: setting(s.initialScale, {
    description: "Instances a new revision starts with (0 needs allowZeroInitialScale).",
  }),
  allowZeroInitialScale: setting(s.allowZeroInitialScale, {
    description: "Whether initialScale (and the annotation) may be 0.",
  }),
  minScale: setting(s.minScale, { description: "Instances every revision keeps at least." }),
  maxScale: setting(s.maxScale, { description: "Instances a revision has at most; 0: unlimited." }),
  maxScaleLimit: setting(s.maxScaleLimit, {
    description: "Upper bound for any max-scale annotation; 0: none.",
  }),
  activationScale: setting(s.activationScale, {
    description: "Instances a revision scales to when it leaves zero.",
  }),
  targetBurstCapacity: setting(s.targetBurstCapacity, {
    description:
      "Spare capacity kept for bursts before requests go through the activator; -1: unlimited, 0: only at zero.",
  }),
  enableScaleToZero: setting(s.enableScaleToZero, {
    description: "false: every revision keeps at least one instance.",
    flags: both("--no-enable-scale-to-zero"),
  }),
  tickInterval: setting(s.tickInterval, {
    defaultText: "2s",
    description: `The autoscaler's decision period; ${DURATION}.`,
    flags: both("--tick-interval <duration>"),
  }),
});
