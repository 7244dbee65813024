/**
 * What a scaling pass says about each revision: the snapshot tests and
 * /metrics read, the per-revision gauges, its placement problems (counted on
 * every pass, logged when they start or change) and the scale report on the
 * Revision (scale-status.ts: written only when it changes something).
 */
import { parseRevisionRef } from "../../src/fleet/keys.ts";
import type { Logger } from "../../src/logging.ts";
import type { Revision } from "../../src/model/types.ts";
import { inParallel } from "../../src/parallel.ts";
import type { RedisStore } from "../../src/store/index.ts";
import type { Decision } from "../kpa.ts";
import type { ScalerMetrics } from "../metrics.ts";
import type { RevisionLoad } from "../metrics-source.ts";
import type { ScalerOptions } from "../options.ts";
import type { ScalePlan } from "../plan.ts";
import {
  type RoutingState,
  type ScaleReport,
  scaledRevision,
  writeScaleReport,
} from "../scale-status.ts";
import type { RevisionScaling } from "./revision-autoscalers.ts";

/** Revision status writes of one pass in flight at once. */
const STATUS_WRITES_IN_FLIGHT = 16;

/** A snapshot of the last scaling pass, for tests and /metrics. */
export interface RevisionScaleState {
  desired: number;
  ready: number;
  placed: number;
  decision: Decision;
  load: RevisionLoad | undefined;
}

/** One revision's decision in a pass, with what it was made from. */
export interface RevisionDecision {
  decision: Decision;
  ready: number;
  s: RevisionScaling;
}

/** A deleted revision's gauges go with it. */
export function removeRevisionGauges(m: ScalerMetrics, ref: string): void {
  const r = parseRevisionRef(ref);
  if (!r) return;
  const labels = { namespace: r.namespace, revision: r.revision };
  m.desired.remove(labels);
  m.actual.remove(labels);
  m.panic.remove({ ...labels, reason: "load" });
  m.panic.remove({ ...labels, reason: "starting" });
  m.observed.remove({ ...labels, window: "stable" });
  m.observed.remove({ ...labels, window: "panic" });
}

/** Placement problems: counted on every pass, logged once per problem (a full fleet is a steady state). */
export class PlacementProblemLog {
  /** Revision -> the placement problem last logged for it (logged when it starts or changes). */
  readonly #logged = new Map<string, string>();
  readonly #metrics: ScalerMetrics;
  readonly #log: Logger;

  constructor(metrics: ScalerMetrics, log: Logger) {
    this.#metrics = metrics;
    this.#log = log;
  }

  note(problems: ScalePlan["problems"]): void {
    for (const [ref, p] of problems) {
      this.#metrics.placementFailures.inc({ reason: p.reason }, p.unplaced);
      // Once per problem, not once per pass (a full fleet is a steady state).
      if (this.#logged.get(ref) === p.reason) continue;
      this.#logged.set(ref, p.reason);
      this.#log.warn({ revision: ref, reason: p.reason }, p.message);
    }
    for (const ref of this.#logged.keys()) {
      if (!problems.has(ref)) this.#logged.delete(ref);
    }
  }
}

export interface ScaleReportDeps {
  options: Pick<ScalerOptions, "domain" | "urlScheme">;
  store: Pick<RedisStore, "transact">;
  metrics: ScalerMetrics;
  log: Logger;
  /** Checked before each write: false once this scaler may not write. */
  canWrite(): boolean;
  /** The snapshot of the last pass, per revision (updated here). */
  state: Map<string, RevisionScaleState>;
  /**
   * Per revision, the resourceVersion and report a pass last found would
   * change nothing (updated here): the same again is skipped without cloning
   * and comparing the revision, which with many revisions held the event loop
   * for milliseconds at every pass (an activation's included).
   */
  unchanged: Map<string, string>;
}

/** Report on each revision: snapshot, gauges, and its status (written only when something changed). */
export async function reportScale(
  d: ScaleReportDeps,
  pass: {
    decisions: ReadonlyMap<string, RevisionDecision>;
    revisions: ReadonlyMap<string, Revision>;
    plan: Pick<ScalePlan, "problems" | "scale">;
    routing: ReadonlyMap<string, RoutingState>;
    loads: ReadonlyMap<string, RevisionLoad>;
  },
): Promise<void> {
  const m = d.metrics;
  const { plan } = pass;
  const writes: { ref: string; namespace: string; revision: string; report: ScaleReport }[] = [];
  for (const [ref, { decision, ready, s }] of pass.decisions) {
    const rev = pass.revisions.get(ref);
    if (!rev) continue;
    const problem = plan.problems.get(ref);
    const report: ScaleReport = {
      desired: decision.desired,
      actual: ready,
      state: decision.state,
      initialized: decision.initialized,
      routingState: pass.routing.get(ref) ?? "reserve",
      ...(problem ? { placement: { reason: problem.reason, message: problem.message } } : {}),
      ...(s.problem ? { scalingProblem: s.problem } : {}),
    };
    d.state.set(ref, {
      desired: decision.desired,
      ready,
      placed: plan.scale.get(ref) ?? 0,
      decision,
      load: pass.loads.get(ref),
    });
    const labels = { namespace: rev.metadata.namespace, revision: rev.metadata.name };
    m.desired.set(labels, decision.desired);
    m.actual.set(labels, ready);
    for (const reason of ["load", "starting"] as const) {
      const on = decision.mode === "panic" && decision.panicCause === reason;
      m.panic.set({ ...labels, reason }, on ? 1 : 0);
    }
    m.observed.set({ ...labels, window: "stable" }, decision.stableAvg);
    m.observed.set({ ...labels, window: "panic" }, decision.panicAvg);
    const memo = `${rev.metadata.resourceVersion}\u0000${JSON.stringify(report)}`;
    if (d.unchanged.get(ref) === memo) continue;
    if (scaledRevision(rev, report)) {
      d.unchanged.delete(ref);
      writes.push({ ref, ...labels, report });
    } else d.unchanged.set(ref, memo);
  }
  // Different objects: a few in flight at once, so a thousand new revisions
  // cost a thousand round trips divided by the width, not in a row.
  await inParallel(writes, STATUS_WRITES_IN_FLIGHT, async (w) => {
    if (!d.canWrite()) return;
    try {
      await writeScaleReport(d.store, w.namespace, w.revision, w.report, {
        domain: d.options.domain,
        scheme: d.options.urlScheme,
      });
    } catch (err) {
      m.errors.inc({ stage: "status" });
      d.log.warn({ err, revision: w.ref }, "writing revision status failed");
    }
  });
}
