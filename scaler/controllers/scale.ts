/**
 * The scale controller: Knative's KPA per revision, placement and the
 * desired sets of agents (the pure parts: kpa.ts decides, placement.ts /
 * plan.ts place).
 *
 * - Metrics: every `scrapeIntervalMs` the gateways' counters are read
 *   (metrics-source.ts) and recorded into each revision's autoscaler, one
 *   value per second (seconds between two reads get the average over the
 *   interval, since the counters integrate over time).
 * - Scaling pass: every `tickInterval`, at once on an activation signal, on a
 *   new revision, and when an agent joins or leaves: read the fleet, decide
 *   each revision's count, diff it with the desired sets of live agents,
 *   write the changes (fenced by the lease), report desired/actual/Active on
 *   each revision (scale-status.ts; written only when something changed).
 *
 * No agent is declared dead within `agentGraceMs` (one heartbeat TTL) plus
 * one reconnect backoff step (1.1 s) of this controller starting (a leader
 * change) or of its Redis connection coming back (a restart's AOF restores
 * heartbeat keys already expired): an agent without a record is then
 * presumed alive and not back yet, and the pass holds the fleet as it is (no
 * prune, no desired-set change) until every agent is back or the grace has
 * passed. Otherwise a healthy agent that heartbeats a few ms after the new
 * leader's first pass would be pruned and all its instances stopped.
 *
 * After a takeover the autoscalers start from what is placed (Knative's
 * restart behaviour): a revision that was ever Ready is initialized, its
 * current scale is what runs, and a fresh autoscaler with several ready
 * instances starts in panic, so history lost with the old leader never
 * scales anything down.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import { isRevisionReady } from "../../src/control/objects.ts";
import type { DesiredWriter } from "../../src/fleet/desired.ts";
import type { Fleet } from "../../src/fleet/fleet.ts";
import { parseRevisionRef, revisionRef } from "../../src/fleet/keys.ts";
import type { DesiredInstance, RuntimeKind } from "../../src/fleet/types.ts";
import type { Logger } from "../../src/logging.ts";
import {
  AUTOSCALING_PREFIX,
  parseScaling,
  resolveScaling,
  type ScalingDefaults,
  type ScalingSettings,
} from "../../src/model/index.ts";
import type { Revision } from "../../src/model/types.ts";
import { inParallel } from "../../src/parallel.ts";
import { MAX_RECONNECT_DELAY_MS } from "../../src/redis/connect.ts";
import { Coalescer } from "../../src/redis/resync.ts";
import type { RedisStore } from "../../src/store/index.ts";
import { gatewayKeys } from "../../src/traffic/keys.ts";
import type { CacheChange, ObjectCache } from "../cache.ts";
import { type FleetView, readFleetView, readyCount } from "../fleet-view.ts";
import { type Decision, KpaAutoscaler, type Observation } from "../kpa.ts";
import type { ScalerMetrics } from "../metrics.ts";
import { GatewayMetricsSource, type RevisionLoad } from "../metrics-source.ts";
import type { ScalerOptions } from "../options.ts";
import {
  type PlacedInstance,
  type ResourceRequests,
  type RevisionNeeds,
  revisionNeeds,
} from "../placement.ts";
import { planScale, type RevisionWant } from "../plan.ts";
import {
  type RoutingState,
  type ScaleReport,
  scaledRevision,
  writeScaleReport,
} from "../scale-status.ts";
import { type GuardDeps, guarded } from "./guard.ts";

/** Revision status writes of one pass in flight at once. */
const STATUS_WRITES_IN_FLIGHT = 16;
export interface ScaleControllerDeps extends GuardDeps {
  options: ScalerOptions;
  /** Commands (activation keys) and the source of the activation subscriber. */
  redis: Redis;
  store: Pick<RedisStore, "get" | "transact">;
  fleet: Fleet;
  cache: ObjectCache;
  writer: DesiredWriter;
  metrics: ScalerMetrics;
  logger: Logger;
  /** "{ns}/{rev}" that published routing tables send traffic to. */
  published(): ReadonlySet<string>;
  /** Checked before every write: false once this scaler is not the leader. */
  canWrite(): boolean;
}

/** One revision's autoscaler and what it was built from. */
interface RevisionScaling {
  kpa: KpaAutoscaler;
  settingsKey: string;
  settings: ScalingSettings;
  /** The annotations do not parse; the cluster defaults are in use. */
  problem?: string;
  needs: RevisionNeeds;
  /** The last second (floor(ms / 1000)) a metric value was recorded for. */
  lastSecond?: number;
  decision?: Decision;
}

/** A snapshot of the last scaling pass, for tests and /metrics. */
export interface RevisionScaleState {
  desired: number;
  ready: number;
  placed: number;
  decision: Decision;
  load: RevisionLoad | undefined;
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

export class ScaleController {
  readonly #d: ScaleControllerDeps;
  readonly #o: ScalerOptions;
  readonly #log: Logger;
  readonly #defaults: ScalingDefaults;
  readonly #source: GatewayMetricsSource;
  readonly #gw: ReturnType<typeof gatewayKeys>;

  readonly #scaling = new Map<string, RevisionScaling>();
  readonly #state = new Map<string, RevisionScaleState>();
  /** Activation signals received since the last pass. */
  readonly #activations = new Set<string>();
  /** Revision -> the placement problem last logged for it (logged when it starts or changes). */
  readonly #loggedProblems = new Map<string, string>();
  /** Live agents of the last pass (an agent missing now died: its desired set is cleared). */
  #lastAgents = new Set<string>();
  #scanDesired = true;
  #loads = new Map<string, RevisionLoad>();

  readonly #tick: Coalescer;
  readonly #scrape: Coalescer;
  #activationSub: Redis | undefined;
  #unsubscribeAgents: (() => Promise<void>) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;
  /** Until then an agent without a heartbeat record is presumed alive, not dead. */
  #graceUntil = 0;
  #graceReason = "";
  #graceLogged = false;
  #graceTimer: NodeJS.Timeout | undefined;
  readonly #onRedisReady = () => this.#presumeAlive("redis reconnected");

  constructor(deps: ScaleControllerDeps) {
    this.#d = deps;
    this.#o = deps.options;
    this.#log = deps.logger;
    this.#defaults = deps.options.autoscaler;
    this.#gw = gatewayKeys(this.#o.redisPrefix);
    this.#source = new GatewayMetricsSource({
      redis: deps.redis,
      prefix: this.#o.redisPrefix,
      logger: deps.logger,
    });
    this.#tick = new Coalescer(guarded(deps, "tick", () => this.#pass()));
    this.#scrape = new Coalescer(guarded(deps, "scrape", () => this.#read()));
    deps.cache.listen({
      onChange: (c) => this.#onChange(c),
      onResync: () => this.#onResync(),
    });
    // From construction: the cache's first resync may already place a new revision.
    this.#presumeAlive("leadership starts");
    // ioredis emits "ready" on a nextTick before any reply of the commands it
    // replays, so a pass that reads after a reconnect sees the grace set.
    deps.redis.on("ready", this.#onRedisReady);
  }

  // ---- lifecycle -----------------------------------------------------------

  /** Subscribe to activations and agents, run the first pass, then keep the timers. */
  async start(): Promise<void> {
    const o = this.#o;
    const sub = this.#d.redis.duplicate({ connectionName: "skiff-scaler:activate" });
    // Each failed reconnect attempt: the outage itself is logged once (RedisHealth).
    sub.on("error", (err: Error & { code?: string }) =>
      this.#log.debug({ err: err.code ?? err.message }, "activation subscriber error"),
    );
    sub.on("message", (_channel: string, ref: string) => this.#onActivation(ref));
    this.#activationSub = sub;
    await sub.subscribe(this.#gw.activateChannel);
    if (this.#stopped) return this.#teardown();
    this.#unsubscribeAgents = await this.#d.fleet.subscribe("agents", () => {
      void this.#tick.trigger();
    });
    if (this.#stopped) return this.#teardown();

    // The first pass builds every autoscaler from what is placed; reads start after it.
    await this.#tick.trigger();
    await this.#scrape.trigger();
    if (this.#stopped) return this.#teardown();
    const every = (ms: number, c: Coalescer) => {
      const t = setInterval(() => void c.trigger(), ms);
      t.unref();
      this.#timers.push(t);
    };
    every(o.scrapeIntervalMs, this.#scrape);
    every(this.#defaults.tickInterval, this.#tick);
  }

  /** Stop acting at once (no write starts after this), then release everything. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#teardown();
    await Promise.all([this.#tick.idle(), this.#scrape.idle()]);
  }

  /** Idempotent: stops whatever start() got to. */
  async #teardown(): Promise<void> {
    this.#d.redis.off("ready", this.#onRedisReady);
    clearTimeout(this.#graceTimer);
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const unsubscribe = this.#unsubscribeAgents;
    this.#unsubscribeAgents = undefined;
    await unsubscribe?.().catch(() => {});
    this.#activationSub?.disconnect();
    this.#activationSub = undefined;
  }

  #canWrite(): boolean {
    return !this.#stopped && this.#d.canWrite();
  }

  /** Hold off declaring agents dead for one heartbeat TTL from now. */
  #presumeAlive(reason: string): void {
    if (this.#stopped) return;
    // Agents may reconnect up to one backoff step after we did, then heartbeat within their TTL.
    const grace = this.#o.agentGraceMs + MAX_RECONNECT_DELAY_MS;
    this.#graceUntil = Date.now() + grace;
    this.#graceReason = reason;
    this.#graceLogged = false;
    clearTimeout(this.#graceTimer);
    // A pass right after the grace prunes whoever is still missing.
    this.#graceTimer = setTimeout(() => void this.#tick.trigger(), grace + 1);
    this.#graceTimer.unref();
  }

  /** Run a scaling pass now and wait for it. */
  tickNow(): Promise<void> {
    return this.#tick.trigger();
  }

  /** Read the gateways' counters now and wait for it. */
  scrapeNow(): Promise<void> {
    return this.#scrape.trigger();
  }

  /** The last pass's view of one revision ("{ns}/{rev}"). */
  revisionState(ref: string): RevisionScaleState | undefined {
    return this.#state.get(ref);
  }

  // ---- objects -------------------------------------------------------------

  #onChange(c: CacheChange): void {
    if (c.kind !== "revisions" || this.#stopped) return;
    // A new revision is placed now, not at the next tick: deploy to Ready
    // waits on nothing but the instance's own start.
    if (c.after && !c.before) void this.#tick.trigger();
    if (!c.after) this.#forget(c.ref);
  }

  #onResync(): void {
    for (const ref of [...this.#scaling.keys()]) {
      if (!this.#d.cache.revisions.has(ref)) this.#forget(ref);
    }
    this.#scanDesired = true;
  }

  #forget(ref: string): void {
    this.#scaling.delete(ref);
    this.#state.delete(ref);
    const r = parseRevisionRef(ref);
    if (!r) return;
    const labels = { namespace: r.namespace, revision: r.revision };
    const m = this.#d.metrics;
    m.desired.remove(labels);
    m.actual.remove(labels);
    m.panic.remove({ ...labels, reason: "load" });
    m.panic.remove({ ...labels, reason: "starting" });
    m.observed.remove({ ...labels, window: "stable" });
    m.observed.remove({ ...labels, window: "panic" });
  }

  // ---- activation ----------------------------------------------------------

  #onActivation(ref: string): void {
    if (this.#stopped || !parseRevisionRef(ref)) return;
    this.#d.metrics.activations.inc();
    this.#activations.add(ref);
    this.#log.info({ revision: ref }, "activation signal");
    void this.#tick.trigger();
  }

  // ---- metrics -------------------------------------------------------------

  async #read(): Promise<void> {
    const loads = await this.#source.read();
    const now = Date.now();
    this.#loads = loads;
    for (const [ref, s] of this.#scaling) {
      const load = loads.get(ref);
      record(s, now, load ? { concurrency: load.concurrency, rps: load.rps } : ZERO);
    }
  }

  // ---- the scaling pass ----------------------------------------------------

  #scalingFor(ref: string, rev: Revision, placed: number): RevisionScaling {
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

  /** Which revisions routes reference: published or resolved ("active"), or about to be ("pending"). */
  #routingStates(): Map<string, RoutingState> {
    const out = new Map<string, RoutingState>();
    for (const ref of this.#d.published()) out.set(ref, "active");
    for (const route of this.#d.cache.routes.values()) {
      const ns = route.metadata.namespace;
      for (const t of route.status.traffic ?? []) {
        if (t.revisionName) out.set(revisionRef(ns, t.revisionName), "active");
      }
    }
    for (const route of this.#d.cache.routes.values()) {
      const ns = route.metadata.namespace;
      for (const t of route.spec.traffic) {
        if (t.revisionName || !t.configurationName) continue;
        const latest = this.#d.cache.configurations.get(revisionRef(ns, t.configurationName))
          ?.status.latestCreatedRevisionName;
        if (!latest) continue;
        const ref = revisionRef(ns, latest);
        if (!out.has(ref)) out.set(ref, "pending");
      }
    }
    return out;
  }

  async #activationKeys(refs: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    if (refs.length === 0) return out;
    const pipe = this.#d.redis.pipeline();
    for (const ref of refs) {
      const r = parseRevisionRef(ref)!;
      pipe.exists(this.#gw.activate(r.namespace, r.revision));
    }
    const replies = (await pipe.exec()) ?? [];
    refs.forEach((ref, i) => {
      const [err, n] = replies[i] ?? [];
      if (!err && Number(n) > 0) out.add(ref);
    });
    return out;
  }

  async #pass(): Promise<void> {
    const started = performance.now();
    const m = this.#d.metrics;
    const view = await readFleetView(this.#d.fleet, {
      prune: () => Date.now() >= this.#graceUntil,
    });
    if (!this.#canWrite()) return;
    if (view.missing.length > 0) {
      // Not dead yet, maybe not back yet: change nothing until they are, or the grace ends.
      m.heldPasses.inc();
      if (!this.#graceLogged) {
        this.#graceLogged = true;
        this.#log.warn(
          {
            missing: view.missing,
            reason: this.#graceReason,
            waitMs: Math.max(0, this.#graceUntil - Date.now()),
          },
          "agents without a heartbeat record are presumed alive for one heartbeat TTL; holding the fleet as it is",
        );
      }
      return;
    }
    const now = Date.now();
    await this.#clearDeadAgents(view);

    const placedByRev = new Map<string, number>();
    const placed: PlacedInstance[] = [];
    const unknown = new Set<string>();
    for (const [agentId, list] of view.desired) {
      const agent = view.byId.get(agentId);
      for (const d of list) {
        const ref = revisionRef(d.namespace, d.revision);
        const s = this.#scaling.get(ref);
        const requests: ResourceRequests = s?.needs.requests ?? this.#o.placement[d.runtime];
        const status = view.statuses.get(d.id);
        placed.push({
          id: d.id,
          agentId,
          revision: ref,
          requests,
          ready: status?.phase === "ready",
          ...(status ? { since: status.since } : {}),
        });
        if (!this.#d.cache.revisions.has(ref)) unknown.add(ref);
        else if (agent && !agent.draining) placedByRev.set(ref, (placedByRev.get(ref) ?? 0) + 1);
      }
    }
    // Instances of revisions we do not know: deleted ones go (checked in the store, not just the cache).
    const remove = new Set<string>();
    for (const ref of unknown) {
      const r = parseRevisionRef(ref)!;
      if (!(await this.#d.store.get("revisions", r.namespace, r.revision))) remove.add(ref);
    }

    const zero = [...this.#d.cache.revisions.keys()].filter((ref) => readyCount(view, ref) === 0);
    const keys = await this.#activationKeys(zero);
    const signalled = new Set(this.#activations);
    this.#activations.clear();
    const routing = this.#routingStates();

    const wants = new Map<string, RevisionWant>();
    const decisions = new Map<string, { decision: Decision; ready: number; s: RevisionScaling }>();
    for (const [ref, rev] of this.#d.cache.revisions) {
      const ready = readyCount(view, ref);
      const s = this.#scalingFor(ref, rev, placedByRev.get(ref) ?? 0);
      const load = this.#loads.get(ref);
      const activationRequested =
        ready === 0 && (signalled.has(ref) || keys.has(ref) || (load?.queued ?? 0) > 0);
      const before = s.decision?.desired;
      const decision = s.kpa.decide(now, {
        readyInstances: ready,
        settings: s.settings,
        activationRequested,
        reachable: routing.has(ref),
      });
      s.decision = decision;
      decisions.set(ref, { decision, ready, s });
      m.decisions.inc({ reason: decision.reason });
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
      wants.set(ref, {
        namespace: rev.metadata.namespace,
        revision: rev.metadata.name,
        desired: decision.desired,
        runtime: s.needs.runtime,
        requests: s.needs.requests,
      });
    }

    const plan = planScale({
      agents: view.agents,
      placed,
      wants,
      remove,
      newId: (revision) => `${revision}-${randomBytes(4).toString("hex")}`,
      nowMs: now,
    });
    await this.#apply(plan.add, plan.remove);
    for (const [ref, p] of plan.problems) {
      m.placementFailures.inc({ reason: p.reason }, p.unplaced);
      // Once per problem, not once per pass (a full fleet is a steady state).
      if (this.#loggedProblems.get(ref) === p.reason) continue;
      this.#loggedProblems.set(ref, p.reason);
      this.#log.warn({ revision: ref, reason: p.reason }, p.message);
    }
    for (const ref of this.#loggedProblems.keys()) {
      if (!plan.problems.has(ref)) this.#loggedProblems.delete(ref);
    }

    // Report on each revision (written only when something changed).
    const writes: { ref: string; namespace: string; revision: string; report: ScaleReport }[] = [];
    for (const [ref, { decision, ready, s }] of decisions) {
      const rev = this.#d.cache.revisions.get(ref);
      if (!rev) continue;
      const problem = plan.problems.get(ref);
      const report: ScaleReport = {
        desired: decision.desired,
        actual: ready,
        state: decision.state,
        initialized: decision.initialized,
        routingState: routing.get(ref) ?? "reserve",
        ...(problem ? { placement: { reason: problem.reason, message: problem.message } } : {}),
        ...(s.problem ? { scalingProblem: s.problem } : {}),
      };
      this.#state.set(ref, {
        desired: decision.desired,
        ready,
        placed: plan.scale.get(ref) ?? 0,
        decision,
        load: this.#loads.get(ref),
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
      if (scaledRevision(rev, report)) writes.push({ ref, ...labels, report });
    }
    // Different objects: a few in flight at once, so a thousand new revisions
    // cost a thousand round trips divided by the width, not in a row.
    await inParallel(writes, STATUS_WRITES_IN_FLIGHT, async (w) => {
      if (!this.#canWrite()) return;
      try {
        await writeScaleReport(this.#d.store, w.namespace, w.revision, w.report, {
          domain: this.#o.domain,
          scheme: this.#o.urlScheme,
        });
      } catch (err) {
        m.errors.inc({ stage: "status" });
        this.#log.warn({ err, revision: w.ref }, "writing revision status failed");
      }
    });
    m.tick.observe((performance.now() - started) / 1000);
  }

  async #apply(add: Map<string, DesiredInstance[]>, remove: Map<string, string[]>): Promise<void> {
    const agents = new Set([...add.keys(), ...remove.keys()]);
    for (const agentId of agents) {
      const adding = add.get(agentId) ?? [];
      const removing = remove.get(agentId) ?? [];
      await this.#d.writer.write(agentId, { add: adding, remove: removing });
      if (adding.length) this.#d.metrics.scaleChanges.inc({ change: "added" }, adding.length);
      if (removing.length) this.#d.metrics.scaleChanges.inc({ change: "removed" }, removing.length);
      this.#log.info(
        { agent: agentId, added: adding.map((d) => d.id), removed: removing },
        "desired instances changed",
      );
    }
  }

  /** Desired sets of agents that are gone: cleared, so a host that comes back starts nothing stale. */
  async #clearDeadAgents(view: FleetView): Promise<void> {
    const candidates = new Set([...this.#lastAgents].filter((id) => !view.byId.has(id)));
    if (this.#scanDesired) {
      this.#scanDesired = false;
      for (const id of await this.#d.writer.agentsWithDesired()) {
        if (!view.byId.has(id)) candidates.add(id);
      }
    }
    for (const id of candidates) {
      await this.#d.writer.write(id, { clear: true });
      this.#log.info({ agent: id }, "agent gone: its desired instances are placed elsewhere");
    }
    this.#lastAgents = new Set(view.byId.keys());
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
