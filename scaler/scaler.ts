/**
 * The scaler's work while it leads: the I/O loop around the pure parts
 * (kpa.ts decides, placement.ts / plan.ts place, gc.ts selects,
 * src/control/* computes status and routing tables).
 *
 * - Objects: Revisions, Configurations and Routes are cached from the store
 *   with watchAndResync (events for speed, a periodic full re-read for
 *   correctness). Route, Configuration and readiness changes reconcile the
 *   affected Routes at once (routes.ts); a resync reconciles them all.
 * - Metrics: every `scrapeIntervalMs` the gateways' counters are read
 *   (metrics-source.ts) and recorded into each revision's autoscaler, one
 *   value per second (seconds between two reads get the average over the
 *   interval, since the counters integrate over time).
 * - Scaling pass: every `tickInterval`, at once on an activation signal, and
 *   when an agent joins or leaves: read the fleet, decide each revision's
 *   count, diff it with the desired sets of live agents, write the changes
 *   (fenced by the lease), report desired/actual/Active on each revision.
 * - Revision GC every `gcIntervalMs`.
 *
 * No agent is declared dead within `agentGraceMs` (one heartbeat TTL) plus
 * one reconnect backoff step (1.1 s) of this loop starting (a leader change) or of its Redis connection coming back
 * (a restart's AOF restores heartbeat keys already expired): an agent without
 * a record is then presumed alive and not back yet, and the pass holds the
 * fleet as it is (no prune, no desired-set change) until every agent is back
 * or the grace has passed. Otherwise a healthy agent that heartbeats a few ms
 * after the new leader's first pass would be pruned and all its instances
 * stopped.
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
import { NotLeaderError } from "../src/errors.ts";
import { DesiredWriter } from "../src/fleet/desired.ts";
import type { Fleet } from "../src/fleet/fleet.ts";
import { parseRevisionRef, revisionRef } from "../src/fleet/keys.ts";
import type { DesiredInstance, RuntimeKind } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import {
  AUTOSCALING_PREFIX,
  getCondition,
  parseScaling,
  resolveScaling,
  type ScalingDefaults,
  type ScalingSettings,
} from "../src/model/index.ts";
import {
  type Configuration,
  Labels,
  type Plural,
  type Revision,
  type Route,
} from "../src/model/types.ts";
import { MAX_RECONNECT_DELAY_MS } from "../src/redis/connect.ts";
import { type RedisStore, type WatchAndResync, watchAndResync } from "../src/store/index.ts";
import type { StoreEvent } from "../src/store/store.ts";
import { gatewayKeys } from "../src/traffic/keys.ts";
import { Coalescer } from "./coalesce.ts";
import { type FleetView, readFleetView, readyCount } from "./fleet-view.ts";
import { type Decision, KpaAutoscaler, type Observation } from "./kpa.ts";
import type { ScalerMetrics } from "./metrics.ts";
import { GatewayMetricsSource, type RevisionLoad } from "./metrics-source.ts";
import type { ScalerOptions } from "./options.ts";
import {
  type PlacedInstance,
  type ResourceRequests,
  type RevisionNeeds,
  revisionNeeds,
} from "./placement.ts";
import { planScale, type RevisionWant } from "./plan.ts";
import { collectRevisions } from "./revision-gc.ts";
import {
  type RoutingState,
  type ScaleReport,
  scaledRevision,
  writeScaleReport,
} from "./revision-status.ts";
import { RouteReconciler } from "./routes.ts";

export interface ScalerLoopDeps {
  options: ScalerOptions;
  /** Commands (shared by the store, the fleet and routing writes). */
  redis: Redis;
  store: RedisStore;
  fleet: Fleet;
  leaseKey: string;
  /** The lease value while this scaler leads, else undefined (checked before every write). */
  leaseValue(): string | undefined;
  metrics: ScalerMetrics;
  logger: Logger;
  /**
   * Whether Redis is reachable (src/redis/health.ts): while it is not, a
   * failed pass is the expected consequence, logged at debug (the outage
   * itself is one line). Default: always.
   */
  redisUp?: () => boolean;
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

function isReady(rev: Revision | undefined): boolean {
  return getCondition(rev?.status.conditions, "Ready")?.status === "True";
}

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

export class ScalerLoop {
  readonly #d: ScalerLoopDeps;
  readonly #o: ScalerOptions;
  readonly #log: Logger;
  readonly #defaults: ScalingDefaults;
  readonly #writer: DesiredWriter;
  readonly #routes: RouteReconciler;
  readonly #source: GatewayMetricsSource;
  readonly #gw: ReturnType<typeof gatewayKeys>;

  readonly #revisions = new Map<string, Revision>();
  readonly #configs = new Map<string, Configuration>();
  readonly #routeObjs = new Map<string, Route>();
  readonly #scaling = new Map<string, RevisionScaling>();
  readonly #state = new Map<string, RevisionScaleState>();
  /** Activation signals received since the last pass. */
  readonly #activations = new Set<string>();
  /** Live agents of the last pass (an agent missing now died: its desired set is cleared). */
  #lastAgents = new Set<string>();
  #scanDesired = true;
  #loads = new Map<string, RevisionLoad>();

  readonly #tick: Coalescer;
  readonly #scrape: Coalescer;
  readonly #gc: Coalescer;
  #watch: WatchAndResync | undefined;
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

  constructor(deps: ScalerLoopDeps) {
    this.#d = deps;
    this.#o = deps.options;
    this.#log = deps.logger;
    this.#defaults = deps.options.autoscaler;
    this.#gw = gatewayKeys(this.#o.redisPrefix);
    this.#writer = new DesiredWriter({
      redis: deps.redis,
      prefix: this.#o.redisPrefix,
      leaseKey: deps.leaseKey,
      leaseValue: () => (this.#stopped ? undefined : deps.leaseValue()),
    });
    this.#routes = new RouteReconciler({
      store: deps.store,
      redis: deps.redis,
      prefix: this.#o.redisPrefix,
      domain: this.#o.domain,
      scheme: this.#o.urlScheme,
      logger: deps.logger,
      canWrite: () => this.#canWrite(),
    });
    this.#source = new GatewayMetricsSource({
      redis: deps.redis,
      prefix: this.#o.redisPrefix,
      logger: deps.logger,
    });
    this.#tick = new Coalescer(() => this.#guard("tick", () => this.#pass()));
    this.#scrape = new Coalescer(() => this.#guard("scrape", () => this.#read()));
    this.#gc = new Coalescer(() => this.#guard("gc", () => this.#collect()));
  }

  #canWrite(): boolean {
    return !this.#stopped && this.#d.leaseValue() !== undefined;
  }

  async #guard(stage: string, fn: () => Promise<void>): Promise<void> {
    if (this.#stopped) return;
    try {
      await fn();
    } catch (err) {
      if (this.#stopped) return;
      if (err instanceof NotLeaderError) {
        this.#log.warn("lease lost during a pass: no more writes");
        return;
      }
      this.#d.metrics.errors.inc({ stage });
      if (this.#d.redisUp?.() === false) {
        this.#log.debug({ err: (err as Error).message }, `scaler ${stage} failed: redis is away`);
        return;
      }
      this.#log.error({ err }, `scaler ${stage} failed`);
    }
  }

  // ---- lifecycle -----------------------------------------------------------

  async start(): Promise<void> {
    const o = this.#o;
    this.#presumeAlive("leadership starts");
    // ioredis emits "ready" on a nextTick before any reply of the commands it
    // replays, so a pass that reads after a reconnect sees the grace set.
    this.#d.redis.on("ready", this.#onRedisReady);
    await this.#routes.loadPublished();
    this.#watch = await watchAndResync({
      store: this.#d.store,
      intervalMs: o.resyncIntervalMs,
      onEvent: (e) => this.#onEvent(e),
      resync: () => this.#resync(),
      logger: this.#log,
    });
    if (this.#stopped) return this.#teardown();

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
    every(o.gcIntervalMs, this.#gc);
  }

  /** Stop acting at once (no write starts after this), then release everything. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#teardown();
    await Promise.all([this.#tick.idle(), this.#scrape.idle(), this.#gc.idle()]);
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
    const watch = this.#watch;
    this.#watch = undefined;
    await watch?.stop();
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

  /** Run revision GC now and wait for it. */
  collectNow(): Promise<void> {
    return this.#gc.trigger();
  }

  /** Re-read every object and reconcile every route now. */
  async resyncNow(): Promise<void> {
    await this.#watch?.resyncNow();
  }

  /** The last pass's view of one revision ("{ns}/{rev}"). */
  revisionState(ref: string): RevisionScaleState | undefined {
    return this.#state.get(ref);
  }

  // ---- objects -------------------------------------------------------------

  #cacheFor(kind: Plural): Map<string, Revision | Configuration | Route> | undefined {
    if (kind === "revisions") return this.#revisions as Map<string, Revision>;
    if (kind === "configurations") return this.#configs as Map<string, Configuration>;
    if (kind === "routes") return this.#routeObjs as Map<string, Route>;
    return undefined;
  }

  async #onEvent(e: StoreEvent): Promise<void> {
    const cache = this.#cacheFor(e.kind);
    if (!cache || this.#stopped) return;
    const ref = revisionRef(e.namespace, e.name);
    const before = cache.get(ref);
    const obj =
      e.type === "delete" ? undefined : await this.#d.store.get(e.kind, e.namespace, e.name);
    if (obj) cache.set(ref, obj as Revision & Configuration & Route);
    else cache.delete(ref);

    const dirty = new Set<string>();
    if (e.kind === "routes") dirty.add(ref);
    else if (e.kind === "configurations") {
      dirty.add(ref); // a Service's Route has its Configuration's name
    } else if (e.kind === "revisions") {
      // A new revision is placed now, not at the next tick: deploy to Ready
      // waits on nothing but the instance's own start.
      if (obj && !before) void this.#tick.trigger();
      const rev = (obj ?? before) as Revision | undefined;
      const readiness =
        isReady(before as Revision | undefined) !== isReady(obj as Revision | undefined);
      if (!obj) this.#forget(ref);
      if (rev && (readiness || !obj || !before)) {
        const config = rev.metadata.labels?.[Labels.configuration];
        if (config) dirty.add(revisionRef(e.namespace, config));
        for (const [key, route] of this.#routeObjs) {
          if (route.metadata.namespace !== e.namespace) continue;
          if (route.status.traffic?.some((t) => t.revisionName === e.name)) dirty.add(key);
        }
      }
    }
    for (const key of dirty) {
      const r = parseRevisionRef(key);
      if (r) await this.#reconcileRoute(r.namespace, r.revision);
    }
  }

  async #reconcileRoute(namespace: string, name: string): Promise<void> {
    if (this.#stopped) return;
    try {
      const out = await this.#routes.reconcile(namespace, name);
      if (out.outcome !== "absent") this.#d.metrics.routePublishes.inc({ outcome: out.outcome });
      if (out.outcome === "held") {
        this.#log.debug({ route: `${namespace}/${name}`, reason: out.reason }, "route held");
      }
    } catch (err) {
      if (this.#stopped) return;
      this.#d.metrics.errors.inc({ stage: "route" });
      this.#log.error({ err, route: `${namespace}/${name}` }, "route reconcile failed");
    }
  }

  async #resync(): Promise<void> {
    if (this.#stopped) return;
    const store = this.#d.store;
    const [revisions, configs, routes] = await Promise.all([
      store.list("revisions"),
      store.list("configurations"),
      store.list("routes"),
    ]);
    const fill = <T extends Revision | Configuration | Route>(m: Map<string, T>, list: T[]) => {
      m.clear();
      for (const x of list) m.set(revisionRef(x.metadata.namespace, x.metadata.name), x);
    };
    fill(this.#revisions, revisions);
    fill(this.#configs, configs);
    fill(this.#routeObjs, routes);
    for (const ref of [...this.#scaling.keys()]) if (!this.#revisions.has(ref)) this.#forget(ref);

    await this.#routes.loadPublished();
    for (const route of routes) {
      await this.#reconcileRoute(route.metadata.namespace, route.metadata.name);
    }
    for (const key of this.#routes.publishedRoutes()) {
      if (this.#routeObjs.has(key)) continue;
      const r = parseRevisionRef(key);
      if (r) await this.#reconcileRoute(r.namespace, r.revision);
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
    const initialized = isReady(rev);
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
    for (const ref of this.#routes.publishedRevisions()) out.set(ref, "active");
    for (const route of this.#routeObjs.values()) {
      const ns = route.metadata.namespace;
      for (const t of route.status.traffic ?? []) {
        if (t.revisionName) out.set(revisionRef(ns, t.revisionName), "active");
      }
    }
    for (const route of this.#routeObjs.values()) {
      const ns = route.metadata.namespace;
      for (const t of route.spec.traffic) {
        if (t.revisionName || !t.configurationName) continue;
        const latest = this.#configs.get(revisionRef(ns, t.configurationName))?.status
          .latestCreatedRevisionName;
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
        if (!this.#revisions.has(ref)) unknown.add(ref);
        else if (agent && !agent.draining) placedByRev.set(ref, (placedByRev.get(ref) ?? 0) + 1);
      }
    }
    // Instances of revisions we do not know: deleted ones go (checked in the store, not just the cache).
    const remove = new Set<string>();
    for (const ref of unknown) {
      const r = parseRevisionRef(ref)!;
      if (!(await this.#d.store.get("revisions", r.namespace, r.revision))) remove.add(ref);
    }

    const zero = [...this.#revisions.keys()].filter((ref) => readyCount(view, ref) === 0);
    const keys = await this.#activationKeys(zero);
    const signalled = new Set(this.#activations);
    this.#activations.clear();
    const routing = this.#routingStates();

    const wants = new Map<string, RevisionWant>();
    const decisions = new Map<string, { decision: Decision; ready: number; s: RevisionScaling }>();
    for (const [ref, rev] of this.#revisions) {
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
      this.#log.warn({ revision: ref, reason: p.reason }, p.message);
    }

    // Report on each revision (written only when something changed).
    for (const [ref, { decision, ready, s }] of decisions) {
      const rev = this.#revisions.get(ref);
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
      if (!scaledRevision(rev, report) || !this.#canWrite()) continue;
      try {
        await writeScaleReport(this.#d.store, labels.namespace, labels.revision, report, {
          domain: this.#o.domain,
          scheme: this.#o.urlScheme,
        });
      } catch (err) {
        m.errors.inc({ stage: "status" });
        this.#log.warn({ err, revision: ref }, "writing revision status failed");
      }
    }
    m.tick.observe((performance.now() - started) / 1000);
  }

  async #apply(add: Map<string, DesiredInstance[]>, remove: Map<string, string[]>): Promise<void> {
    const agents = new Set([...add.keys(), ...remove.keys()]);
    for (const agentId of agents) {
      const adding = add.get(agentId) ?? [];
      const removing = remove.get(agentId) ?? [];
      await this.#writer.write(agentId, { add: adding, remove: removing });
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
      for (const id of await this.#writer.agentsWithDesired()) {
        if (!view.byId.has(id)) candidates.add(id);
      }
    }
    for (const id of candidates) {
      await this.#writer.write(id, { clear: true });
      this.#log.info({ agent: id }, "agent gone: its desired instances are placed elsewhere");
    }
    this.#lastAgents = new Set(view.byId.keys());
  }

  // ---- revision GC ---------------------------------------------------------

  async #collect(): Promise<void> {
    const deleted = await collectRevisions({
      store: this.#d.store,
      configurations: [...this.#configs.values()],
      revisions: [...this.#revisions.values()],
      routes: [...this.#routeObjs.values()],
      published: this.#routes.publishedRevisions(),
      settings: this.#o.gc,
      nowMs: Date.now(),
      logger: this.#log,
      canWrite: () => this.#canWrite(),
    });
    if (deleted.length > 0) this.#d.metrics.gcDeleted.inc(deleted.length);
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
