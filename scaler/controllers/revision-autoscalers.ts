/**
 * Each revision's autoscaler (kpa.ts) and what it was built from: its
 * settings (annotations over the cluster defaults; rebuilt when they change),
 * its resource needs, the seconds recorded so far and the last decision.
 *
 * After a takeover the autoscalers start from what is placed (Knative's
 * restart behaviour): a revision that was ever Ready is initialized, its
 * current scale is what runs, and a fresh autoscaler with several ready
 * instances starts in panic, so history lost with the old leader never
 * scales anything down.
 */
import { isRevisionReady } from "../../src/control/objects.ts";
import type { RuntimeKind } from "../../src/fleet/types.ts";
import type { Logger } from "../../src/logging.ts";
import {
  AUTOSCALING_PREFIX,
  parseScaling,
  resolveScaling,
  type ScalingDefaults,
  type ScalingSettings,
} from "../../src/model/index.ts";
import type { Revision } from "../../src/model/types.ts";
import { type Decision, KpaAutoscaler, type Observation } from "../kpa.ts";
import type { RevisionLoad } from "../metrics-source.ts";
import type { ScalerOptions } from "../options.ts";
import { type RevisionNeeds, revisionNeeds } from "../placement.ts";

/** One revision's autoscaler and what it was built from. */
export interface RevisionScaling {
  kpa: KpaAutoscaler;
  settingsKey: string;
  settings: ScalingSettings;
  /** The annotations do not parse; the cluster defaults are in use. */
  problem?: string;
  needs: RevisionNeeds;
  /** The last second (floor(ms / 1000)) a metric value was recorded for. */
  lastSecond?: number;
  decision?: Decision;
  /** It ran a ready instance, or an agent held its standby, since this scaler knew it (warmup.ts). */
  warmed?: boolean;
}

const ZERO: Observation = { concurrency: 0, rps: 0 };

function runtimeOf(rev: Revision): RuntimeKind {
  return rev.spec.worker ? "isolate" : "container";
}

/** What the autoscaling settings of a revision depend on. */
function settingsKeyOf(rev: Revision): string {
  const anns = Object.entries(rev.metadata.annotations ?? {})
    .filter(([k]) => k.startsWith(AUTOSCALING_PREFIX))
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return JSON.stringify([anns, rev.spec.containerConcurrency]);
}

export class RevisionAutoscalers {
  readonly #o: Pick<ScalerOptions, "activationTimeoutMs" | "placement">;
  readonly #defaults: ScalingDefaults;
  readonly #log: Logger;
  readonly #scaling = new Map<string, RevisionScaling>();

  constructor(
    o: Pick<ScalerOptions, "activationTimeoutMs" | "placement" | "autoscaler">,
    log: Logger,
  ) {
    this.#o = o;
    this.#defaults = o.autoscaler;
    this.#log = log;
  }

  get(ref: string): RevisionScaling | undefined {
    return this.#scaling.get(ref);
  }

  refs(): string[] {
    return [...this.#scaling.keys()];
  }

  delete(ref: string): void {
    this.#scaling.delete(ref);
  }

  /**
   * One value per revision for now (zero for a revision without load), except
   * for a revision at zero with no load: nothing runs to observe, so nothing
   * is recorded (Knative's collector gets no data from a revision without
   * pods). Its windows then restart at the first load, averaging over the
   * seconds since instead of over the idle time before it: a step from zero
   * to 100 clients is seen as 100 at the first tick, not as 100 / 6.
   */
  recordAll(loads: ReadonlyMap<string, RevisionLoad>, now: number): void {
    for (const [ref, s] of this.#scaling) {
      const load = loads.get(ref);
      const idle = !load || (load.concurrency === 0 && load.rps === 0);
      if (idle && s.decision?.desired === 0) {
        // Not a second to fill in later either: the gap is unknown, not idle.
        delete s.lastSecond;
        continue;
      }
      record(s, now, load ? { concurrency: load.concurrency, rps: load.rps } : ZERO);
    }
  }

  /** The revision's autoscaler, built (or its settings rebuilt) from `rev`; `placed`: instances that run. */
  for(ref: string, rev: Revision, placed: number): RevisionScaling {
    const key = settingsKeyOf(rev);
    const existing = this.#scaling.get(ref);
    if (existing && existing.settingsKey === key) return existing;
    const resolved = resolveScaling(
      rev.metadata.annotations,
      rev.spec,
      this.#defaults,
      "metadata.annotations",
    );
    let settings = resolved.settings;
    let problem: string | undefined;
    if (!settings) {
      problem = `invalid autoscaling annotations: ${resolved.causes.map((c) => `${c.field}: ${c.message}`).join("; ")}`;
      settings = parseScaling(undefined, rev.spec, this.#defaults);
    }
    let needs: RevisionNeeds;
    try {
      needs = revisionNeeds(rev.spec, this.#o.placement);
    } catch {
      const runtime = runtimeOf(rev);
      needs = { runtime, requests: this.#o.placement[runtime] };
    }
    const initialized = isRevisionReady(rev);
    const entry: RevisionScaling = existing
      ? { ...existing, settingsKey: key, settings, needs, ...(problem ? { problem } : {}) }
      : {
          kpa: new KpaAutoscaler({
            activationTimeoutMs: this.#o.activationTimeoutMs,
            initialized,
            ...(initialized || placed > 0 ? { currentScale: placed } : {}),
          }),
          settingsKey: key,
          settings,
          needs,
          ...(problem ? { problem } : {}),
        };
    if (!problem) delete entry.problem;
    if (problem && !existing) this.#log.warn({ revision: ref, problem }, "autoscaling annotations");
    this.#scaling.set(ref, entry);
    return entry;
  }

  /**
   * The revision's decision for now (kept as its last); a change of the
   * desired count is logged with why.
   */
  decide(
    ref: string,
    rev: Revision,
    now: number,
    input: { ready: number; placed: number; activationRequested: boolean; reachable: boolean },
  ): { decision: Decision; s: RevisionScaling } {
    const { ready } = input;
    const s = this.for(ref, rev, input.placed);
    const before = s.decision?.desired;
    const decision = s.kpa.decide(now, {
      readyInstances: ready,
      settings: s.settings,
      activationRequested: input.activationRequested,
      reachable: input.reachable,
    });
    s.decision = decision;
    if (before !== decision.desired) {
      this.#log.info(
        {
          revision: ref,
          from: before,
          to: decision.desired,
          ready,
          reason: decision.reason,
          mode: decision.mode,
          ...(decision.panicCause ? { panicCause: decision.panicCause } : {}),
          stableAvg: round(decision.stableAvg),
          panicAvg: round(decision.panicAvg),
        },
        decision.message,
      );
    }
    return { decision, s };
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/**
 * Record a value for every whole second since the last one recorded: the
 * counters integrate over time, so the average over the read interval is the
 * best value for each second in it (a late read leaves no zero-filled hole).
 */
function record(s: RevisionScaling, nowMs: number, obs: Observation): void {
  const sec = Math.floor(nowMs / 1000);
  const last = s.lastSecond;
  if (last !== undefined && sec > last) {
    const maxFill = Math.ceil(s.settings.stableWindowMs / 1000);
    for (let x = Math.max(last + 1, sec - maxFill + 1); x < sec; x++) s.kpa.record(x * 1000, obs);
  }
  s.kpa.record(nowMs, obs);
  s.lastSecond = Math.max(sec, last ?? sec);
}
