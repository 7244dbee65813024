/**
 * Knative's per-revision autoscaling annotations (`autoscaling.knative.dev/*`
 * on the revision template) parsed with Knative's bounds and defaults into one
 * typed object the scaler uses. The annotations themselves are stored as the
 * user wrote them; this module only reads them.
 *
 * Both spellings are accepted: `min-scale` and the legacy camelCase `minScale`.
 * Giving both with different values is an error (which one would win is not
 * obvious to a reader of the manifest).
 */
import { z } from "zod";
import { type Cause, ValidationError } from "../errors.ts";
import { DURATION_FORMAT, durationProblem, formatDuration, parseGoDuration } from "./duration.ts";
import { Issues, item, suggest } from "./fields.ts";

export const AUTOSCALING_PREFIX = "autoscaling.knative.dev/";
export const KPA_CLASS = "kpa.autoscaling.knative.dev";
export const DEFAULT_ANNOTATIONS_PREFIX = "spec.template.metadata.annotations";

export type ScalingMetric = "concurrency" | "rps";

const HOUR = 3_600_000;
/** Knative's window bounds. */
export const WINDOW_MIN_MS = 6_000;
export const WINDOW_MAX_MS = HOUR;
/** The smallest target Knative allows (fractions matter with small concurrency). */
export const TARGET_MIN = 0.01;
/** The scaler's metric bucket: a panic window is never shorter than this. */
const BUCKET_MS = 1_000;

/** Milliseconds, from a number (ms) or a Go duration string ("60s"). */
const duration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === "number") return v;
  const ms = parseGoDuration(v);
  if (ms === undefined || ms < 0) {
    ctx.addIssue({ code: "custom", message: `must be ${DURATION_FORMAT} or milliseconds` });
    return z.NEVER;
  }
  return ms;
});

/**
 * Cluster-wide autoscaler settings (Knative's config-autoscaler), with
 * Knative's defaults. Durations are milliseconds in the parsed form; the input
 * may give them as Go durations ("60s").
 */
export const scalingDefaultsSchema = z
  .object({
    stableWindow: duration.default(60_000),
    panicWindowPercentage: z.number().min(1).max(100).default(10),
    panicThresholdPercentage: z.number().min(110).max(1000).default(200),
    /** Per-instance concurrency target when containerConcurrency is 0. */
    targetConcurrency: z.number().min(TARGET_MIN).default(100),
    targetUtilizationPercentage: z.number().min(1).max(100).default(70),
    rpsTarget: z.number().min(TARGET_MIN).default(200),
    maxScaleUpRate: z.number().gt(1).default(1000),
    maxScaleDownRate: z.number().gt(1).default(2),
    scaleToZeroGracePeriod: duration.default(30_000),
    scaleToZeroPodRetentionPeriod: duration.default(0),
    scaleDownDelay: duration.default(0),
    initialScale: z.number().int().min(0).default(1),
    allowZeroInitialScale: z.boolean().default(false),
    minScale: z.number().int().min(0).default(0),
    /** 0 = unlimited. */
    maxScale: z.number().int().min(0).default(0),
    /** Upper bound for any max-scale (0 = no bound). */
    maxScaleLimit: z.number().int().min(0).default(0),
    activationScale: z.number().int().min(1).default(1),
    /** -1 = unlimited, 0 = the activator only at zero. */
    targetBurstCapacity: z
      .number()
      .refine((v) => v >= 0 || v === -1, "must be -1 or >= 0")
      .default(211),
    enableScaleToZero: z.boolean().default(true),
    tickInterval: duration.default(2_000),
  })
  .superRefine((d, ctx) => {
    if (d.initialScale === 0 && !d.allowZeroInitialScale) {
      ctx.addIssue({
        code: "custom",
        path: ["initialScale"],
        message: "0 is only allowed when allowZeroInitialScale is true",
      });
    }
    if (d.maxScale > 0 && d.minScale > d.maxScale) {
      ctx.addIssue({ code: "custom", path: ["maxScale"], message: "must be >= minScale" });
    }
    if (d.stableWindow < WINDOW_MIN_MS || d.stableWindow > WINDOW_MAX_MS) {
      ctx.addIssue({
        code: "custom",
        path: ["stableWindow"],
        message: "must be between 6s and 1h",
      });
    }
  });

export type ScalingDefaults = z.output<typeof scalingDefaultsSchema>;
export type ScalingDefaultsInput = z.input<typeof scalingDefaultsSchema>;
export const defaultScalingDefaults: ScalingDefaults = scalingDefaultsSchema.parse({});

/** Everything the scaler needs for one revision. Durations in milliseconds. */
export interface ScalingSettings {
  class: typeof KPA_CLASS;
  metric: ScalingMetric;
  /**
   * Per-instance target before utilisation: the `target` annotation (capped at
   * containerConcurrency for the concurrency metric, as Knative does), else
   * containerConcurrency when > 0, else the default (100 concurrency, 200 rps).
   */
  target: number;
  targetUtilizationPercentage: number;
  /** What observed load is divided by: max(0.01, target x utilisation / 100). */
  effectiveTarget: number;
  /** The hard per-instance limit (0 = none), copied from the spec. */
  containerConcurrency: number;
  /** The min-scale annotation (default 0), raised to 1 when scale-to-zero is disabled. */
  minScale: number;
  /** 0 = unlimited. */
  maxScale: number;
  /** Instances a new revision starts with (the scaler uses max(initialScale, minScale)). */
  initialScale: number;
  /** Smallest non-zero scale. */
  activationScale: number;
  stableWindowMs: number;
  panicWindowPercentage: number;
  /** stableWindow x panicWindowPercentage / 100, never below the 1 s metric bucket. */
  panicWindowMs: number;
  panicThresholdPercentage: number;
  scaleDownDelayMs: number;
  /** -1 = unlimited. */
  targetBurstCapacity: number;
  scaleToZeroPodRetentionMs: number;
  scaleToZeroGracePeriodMs: number;
  maxScaleUpRate: number;
  maxScaleDownRate: number;
  enableScaleToZero: boolean;
  tickIntervalMs: number;
}

/** Per-revision keys (kebab-case) and their legacy camelCase spellings. */
const KEYS = {
  class: undefined,
  metric: undefined,
  target: undefined,
  "target-utilization-percentage": "targetUtilizationPercentage",
  "min-scale": "minScale",
  "max-scale": "maxScale",
  "initial-scale": "initialScale",
  "activation-scale": undefined,
  window: undefined,
  "panic-window-percentage": "panicWindowPercentage",
  "panic-threshold-percentage": "panicThresholdPercentage",
  "scale-down-delay": "scaleDownDelay",
  "target-burst-capacity": "targetBurstCapacity",
  "scale-to-zero-pod-retention-period": "scaleToZeroPodRetentionPeriod",
} as const satisfies Record<string, string | undefined>;

type Key = keyof typeof KEYS;
export const SCALING_ANNOTATION_KEYS: readonly string[] = Object.keys(KEYS);

/** Knative settings that exist only cluster-wide (config-autoscaler). */
const GLOBAL_ONLY = [
  "max-scale-up-rate",
  "maxScaleUpRate",
  "max-scale-down-rate",
  "maxScaleDownRate",
  "scale-to-zero-grace-period",
  "scaleToZeroGracePeriod",
  "enable-scale-to-zero",
  "stable-window",
  "allow-zero-initial-scale",
  "max-scale-limit",
  "container-concurrency-target-default",
  "container-concurrency-target-percentage",
  "requests-per-second-target-default",
  "tick-interval",
];

export interface ScalingSpec {
  /** 0 (default) = unlimited. */
  containerConcurrency?: number;
}

interface Given {
  value: string;
  /** The annotation key actually used, for the error path. */
  key: string;
}

const INT = /^[+-]?\d+$/;
const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INT32_MAX = 2 ** 31 - 1;

/**
 * Validate and resolve the autoscaling annotations; collects all problems.
 * `fieldPrefix` is the path of the annotations map in the submitted object.
 */
export function resolveScaling(
  annotations: Readonly<Record<string, string>> | undefined,
  spec: ScalingSpec,
  defaults: ScalingDefaults = defaultScalingDefaults,
  fieldPrefix: string = DEFAULT_ANNOTATIONS_PREFIX,
): { settings: ScalingSettings | undefined; causes: Cause[] } {
  const issues = new Issues();
  const anns = annotations ?? {};
  const at = (key: string) => item(fieldPrefix, key);
  const given = new Map<Key, Given>();

  // Collect both spellings of each key; unknown keys under the prefix are typos.
  for (const [k, legacy] of Object.entries(KEYS) as [Key, string | undefined][]) {
    const kebab = AUTOSCALING_PREFIX + k;
    const camel = legacy === undefined ? undefined : AUTOSCALING_PREFIX + legacy;
    const a = anns[kebab];
    const b = camel === undefined ? undefined : anns[camel];
    if (a !== undefined && b !== undefined && a !== b && camel !== undefined) {
      issues.add(
        at(camel),
        `conflicts with ${kebab} ("${b}" vs "${a}"); both spell the same setting, keep only ${kebab}`,
      );
    }
    if (a !== undefined) given.set(k, { value: a, key: kebab });
    else if (b !== undefined && camel !== undefined) given.set(k, { value: b, key: camel });
  }
  const allSpellings = Object.entries(KEYS).flatMap(([k, l]) => (l ? [k, l] : [k]));
  for (const key of Object.keys(anns)) {
    if (!key.startsWith(AUTOSCALING_PREFIX)) continue;
    const name = key.slice(AUTOSCALING_PREFIX.length);
    if (allSpellings.includes(name)) continue;
    if (GLOBAL_ONLY.includes(name)) {
      issues.add(
        at(key),
        `"${name}" is a cluster-wide autoscaler setting and cannot be set per revision; remove this annotation`,
        "FieldValueNotSupported",
      );
      continue;
    }
    const close = suggest(name, allSpellings);
    issues.add(
      at(key),
      `unknown autoscaling annotation${close ? `; did you mean "${AUTOSCALING_PREFIX}${close}"?` : ""} ` +
        `(known: ${SCALING_ANNOTATION_KEYS.join(", ")})`,
      "FieldValueNotSupported",
    );
  }

  const int = (k: Key, min: number, max = INT32_MAX): number | undefined => {
    const g = given.get(k);
    if (g === undefined) return undefined;
    if (!INT.test(g.value.trim())) {
      issues.add(at(g.key), `"${g.value}" is not an integer; use a whole number such as "${min}"`);
      return undefined;
    }
    const n = Number(g.value.trim());
    if (n < min || n > max) {
      issues.add(at(g.key), `must be between ${min} and ${max} (got "${g.value}")`);
      return undefined;
    }
    return n;
  };
  const float = (k: Key, min: number, max = Number.POSITIVE_INFINITY): number | undefined => {
    const g = given.get(k);
    if (g === undefined) return undefined;
    if (!FLOAT.test(g.value.trim())) {
      issues.add(at(g.key), `"${g.value}" is not a number; use a decimal such as "${min}"`);
      return undefined;
    }
    const n = Number(g.value.trim());
    if (n < min || n > max) {
      const range =
        max === Number.POSITIVE_INFINITY ? `at least ${min}` : `between ${min} and ${max}`;
      issues.add(at(g.key), `must be ${range} (got "${g.value}")`);
      return undefined;
    }
    return n;
  };
  const dur = (k: Key, minMs: number, maxMs: number, wholeSeconds: boolean): number | undefined => {
    const g = given.get(k);
    if (g === undefined) return undefined;
    const ms = parseGoDuration(g.value);
    if (ms === undefined) {
      issues.add(at(g.key), durationProblem(g.value));
      return undefined;
    }
    if (ms < minMs || ms > maxMs) {
      issues.add(
        at(g.key),
        `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)} (got "${g.value}")`,
      );
      return undefined;
    }
    if (wholeSeconds && ms % 1000 !== 0) {
      issues.add(at(g.key), `must be a whole number of seconds (got "${g.value}")`);
      return undefined;
    }
    return ms;
  };

  const cls = given.get("class");
  if (cls !== undefined && cls.value !== KPA_CLASS) {
    issues.add(
      at(cls.key),
      `"${cls.value}" is not supported; Skiff implements only the KPA class ("${KPA_CLASS}"), ` +
        "so remove this annotation or set it to that value",
      "FieldValueNotSupported",
    );
  }
  let metric: ScalingMetric = "concurrency";
  const m = given.get("metric");
  if (m !== undefined) {
    if (m.value === "concurrency" || m.value === "rps") metric = m.value;
    else if (m.value === "cpu" || m.value === "memory") {
      issues.add(
        at(m.key),
        `metric "${m.value}" needs the HPA class, but only the KPA class (${KPA_CLASS}) is supported; ` +
          'use "concurrency" or "rps"',
        "FieldValueNotSupported",
      );
    } else {
      issues.add(
        at(m.key),
        `must be "concurrency" or "rps" (got "${m.value}")`,
        "FieldValueNotSupported",
      );
    }
  }

  const target = float("target", TARGET_MIN);
  const utilization = float("target-utilization-percentage", 1, 100);
  const minScale = int("min-scale", 0);
  const maxScaleLimit = defaults.maxScaleLimit;
  const maxScale = int("max-scale", 0);
  if (maxScale !== undefined && maxScaleLimit > 0 && (maxScale === 0 || maxScale > maxScaleLimit)) {
    issues.add(
      at(given.get("max-scale")!.key),
      `must be between 1 and ${maxScaleLimit}, the cluster's max-scale limit (got "${maxScale}"; 0 would mean unlimited)`,
    );
  }
  const effMin = minScale ?? defaults.minScale;
  const effMax = maxScale ?? defaults.maxScale;
  if (effMax > 0 && effMin > effMax && (minScale !== undefined || maxScale !== undefined)) {
    const blame = given.get("max-scale") ?? given.get("min-scale")!;
    issues.add(
      at(blame.key),
      `max-scale=${effMax} is less than min-scale=${effMin}; raise max-scale (0 means unlimited) or lower min-scale`,
    );
  }
  const initialScale = int("initial-scale", 0);
  if (initialScale === 0 && !defaults.allowZeroInitialScale) {
    issues.add(
      at(given.get("initial-scale")!.key),
      "must be at least 1; 0 is only allowed when the cluster setting allowZeroInitialScale is true",
    );
  }
  const activationScale = int("activation-scale", 1);
  const window = dur("window", WINDOW_MIN_MS, WINDOW_MAX_MS, true);
  const panicWindowPct = float("panic-window-percentage", 1, 100);
  const panicThresholdPct = float("panic-threshold-percentage", 110, 1000);
  const scaleDownDelay = dur("scale-down-delay", 0, HOUR, true);
  const retention = dur("scale-to-zero-pod-retention-period", 0, HOUR, false);
  let burst: number | undefined;
  const tbc = given.get("target-burst-capacity");
  if (tbc !== undefined) {
    const n = FLOAT.test(tbc.value.trim()) ? Number(tbc.value.trim()) : Number.NaN;
    if (Number.isNaN(n) || (n < 0 && n !== -1)) {
      issues.add(
        at(tbc.key),
        `must be -1 (unlimited), 0, or a positive number (got "${tbc.value}")`,
      );
    } else burst = n;
  }

  if (issues.count > 0) return { settings: undefined, causes: issues.causes };

  const cc = spec.containerConcurrency ?? 0;
  let total: number;
  if (target !== undefined)
    total = metric === "concurrency" && cc > 0 ? Math.min(target, cc) : target;
  else if (metric === "rps") total = defaults.rpsTarget;
  else total = cc > 0 ? cc : defaults.targetConcurrency;
  const util = utilization ?? defaults.targetUtilizationPercentage;
  const stableWindowMs = window ?? defaults.stableWindow;
  const pwp = panicWindowPct ?? defaults.panicWindowPercentage;

  return {
    causes: [],
    settings: {
      class: KPA_CLASS,
      metric,
      target: total,
      targetUtilizationPercentage: util,
      effectiveTarget: Math.max(TARGET_MIN, (total * util) / 100),
      containerConcurrency: cc,
      // Knative: with scale-to-zero disabled cluster-wide, the floor is one instance.
      minScale: defaults.enableScaleToZero ? effMin : Math.max(1, effMin),
      maxScale: effMax,
      initialScale: initialScale ?? defaults.initialScale,
      activationScale: activationScale ?? defaults.activationScale,
      stableWindowMs,
      panicWindowPercentage: pwp,
      panicWindowMs: Math.max(BUCKET_MS, Math.round((stableWindowMs * pwp) / 100)),
      panicThresholdPercentage: panicThresholdPct ?? defaults.panicThresholdPercentage,
      scaleDownDelayMs: scaleDownDelay ?? defaults.scaleDownDelay,
      targetBurstCapacity: burst ?? defaults.targetBurstCapacity,
      scaleToZeroPodRetentionMs: retention ?? defaults.scaleToZeroPodRetentionPeriod,
      scaleToZeroGracePeriodMs: defaults.scaleToZeroGracePeriod,
      maxScaleUpRate: defaults.maxScaleUpRate,
      maxScaleDownRate: defaults.maxScaleDownRate,
      enableScaleToZero: defaults.enableScaleToZero,
      tickIntervalMs: defaults.tickInterval,
    },
  };
}

/** Like resolveScaling, but throws a ValidationError listing every problem. */
export function parseScaling(
  annotations: Readonly<Record<string, string>> | undefined,
  spec: ScalingSpec,
  defaults: ScalingDefaults = defaultScalingDefaults,
  fieldPrefix: string = DEFAULT_ANNOTATIONS_PREFIX,
): ScalingSettings {
  const { settings, causes } = resolveScaling(annotations, spec, defaults, fieldPrefix);
  if (settings === undefined) throw ValidationError.of(causes);
  return settings;
}
