/**
 * The scale controller: Knative's KPA per revision, placement and the
 * desired sets of agents. This class runs the loop; the parts it composes:
 *
 * - revision-autoscalers.ts: each revision's autoscaler (kpa.ts decides),
 *   built from what is placed after a takeover.
 * - activation.ts: the gateways' activation signals and keys;
 *   activation-demand.ts: which of them count as a revision's activation.
 * - agent-grace.ts: no agent declared dead right after a leader change or a
 *   Redis reconnect; the pass holds the fleet as it is meanwhile.
 * - desired-sets.ts: what is placed, the pass's changes written, the sets of
 *   dead agents cleared (placement.ts / plan.ts place, purely).
 * - routing-states.ts, scale-reports.ts: what routes reference, and what the
 *   pass says on each revision (scale-status.ts: written only on change).
 *
 * Metrics: every `scrapeIntervalMs` the gateways' counters are read
 * (metrics-source.ts) and recorded into each revision's autoscaler, one
 * value per second (seconds between two reads get the average over the
 * interval, since the counters integrate over time).
 *
 * Scaling pass: every `tickInterval`, at once on an activation signal, on a
 * new revision, and when an agent joins or leaves: read the fleet, decide
 * each revision's count, diff it with the desired sets of live agents, write
 * the changes (fenced by the lease), report desired/actual/Active on each
 * revision.
 */
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import type { DesiredWriter } from "../../src/fleet/desired.ts";
import type { Fleet } from "../../src/fleet/fleet.ts";
import { newInstanceId, parseRevisionRef } from "../../src/fleet/keys.ts";
import { settleWakes } from "../../src/fleet/wake.ts";
import type { Logger } from "../../src/logging.ts";
import { Coalescer } from "../../src/redis/resync.ts";
import type { RedisStore } from "../../src/store/index.ts";
import type { CacheChange, ObjectCache } from "../cache.ts";
import { readFleetView, readyCount } from "../fleet-view.ts";
import type { ScalerMetrics } from "../metrics.ts";
import { GatewayMetricsSource, type RevisionLoad } from "../metrics-source.ts";
import type { ScalerOptions } from "../options.ts";
import { planScale, type RevisionWant } from "../plan.ts";
import { createdMs, wantsWarmup, warmupWindowMs } from "../warmup.ts";
import { Activation } from "./activation.ts";
import { activationRequested } from "./activation-demand.ts";
import { AgentGrace } from "./agent-grace.ts";
import { DesiredSets, deletedRevisions, readPlaced } from "./desired-sets.ts";
import { type LastView, planActivation, unplacedSignals, viewAfter } from "./fast-activation.ts";
import { type GuardDeps, guarded } from "./guard.ts";
import { RevisionAutoscalers } from "./revision-autoscalers.ts";
import { routingStates } from "./routing-states.ts";
import {
  PlacementProblemLog,
  type RevisionDecision,
  type RevisionScaleState,
  removeRevisionGauges,
  reportScale,
} from "./scale-reports.ts";
import { adoptWakes, withAdopted } from "./wake-adoption.ts";

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

export class ScaleController {
  readonly #d: ScaleControllerDeps;
  readonly #o: ScalerOptions;
  readonly #log: Logger;
  readonly #source: GatewayMetricsSource;
  readonly #autoscalers: RevisionAutoscalers;
  readonly #activation: Activation;
  readonly #grace: AgentGrace;
  readonly #desiredSets: DesiredSets;
  readonly #problems: PlacementProblemLog;

  readonly #state = new Map<string, RevisionScaleState>();
  readonly #unchanged = new Map<string, string>();
  #loads = new Map<string, RevisionLoad>();
  /** What the last pass saw and placed: where an activation is placed before the next. */
  #last: LastView | undefined;
  /** Something other than an activation asked for a pass since the last one. */
  #fullPassWanted = false;

  readonly #tick: Coalescer;
  readonly #scrape: Coalescer;
  #unsubscribeAgents: (() => Promise<void>) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;
  readonly #onRedisReady = () => this.#presumeAlive("redis reconnected");

  constructor(deps: ScaleControllerDeps) {
    this.#d = deps;
    this.#o = deps.options;
    this.#log = deps.logger;
    this.#source = new GatewayMetricsSource({
      redis: deps.redis,
      prefix: this.#o.redisPrefix,
      logger: deps.logger,
    });
    this.#autoscalers = new RevisionAutoscalers(this.#o, deps.logger);
    this.#activation = new Activation({
      redis: deps.redis,
      prefix: this.#o.redisPrefix,
      metrics: deps.metrics,
      logger: deps.logger,
      listening: () => !this.#stopped,
      // The signalled revisions are placed from the last view; a full pass only if that cannot.
      onSignal: () => void this.#tick.trigger(),
    });
    this.#grace = new AgentGrace({
      agentGraceMs: this.#o.agentGraceMs,
      logger: deps.logger,
      // A pass right after the grace prunes whoever is still missing.
      onEnd: () => void this.#fullPass(),
    });
    this.#desiredSets = new DesiredSets(deps.writer, deps.metrics, deps.logger);
    this.#problems = new PlacementProblemLog(deps.metrics, deps.logger);
    this.#tick = new Coalescer(
      guarded(deps, "tick", async () => {
        const full = this.#fullPassWanted;
        this.#fullPassWanted = false;
        // An activation alone needs no full pass when the last view placed it: the
        // next tick's pass takes the signal (and an immediate one would hold the
        // event loop while the gateway waits for the instance, in `skiff up`).
        if ((await this.#placeActivated()) && !full) return;
        await this.#pass();
      }),
    );
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
    await this.#activation.subscribe();
    if (this.#stopped) return this.#teardown();
    this.#unsubscribeAgents = await this.#d.fleet.subscribe("agents", () => {
      void this.#fullPass();
    });
    if (this.#stopped) return this.#teardown();

    // The first pass builds every autoscaler from what is placed; reads start after it.
    await this.#fullPass();
    await this.#scrape.trigger();
    if (this.#stopped) return this.#teardown();
    const every = (ms: number, run: () => unknown) => {
      const t = setInterval(() => void run(), ms);
      t.unref();
      this.#timers.push(t);
    };
    every(o.scrapeIntervalMs, () => this.#scrape.trigger());
    every(o.autoscaler.tickInterval, () => this.#fullPass());
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
    this.#grace.stop();
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const unsubscribe = this.#unsubscribeAgents;
    this.#unsubscribeAgents = undefined;
    await unsubscribe?.().catch(() => {});
    this.#activation.close();
  }

  #canWrite(): boolean {
    return !this.#stopped && this.#d.canWrite();
  }

  /** Hold off declaring agents dead for one heartbeat TTL from now (agent-grace.ts). */
  #presumeAlive(reason: string): void {
    if (this.#stopped) return;
    this.#grace.begin(reason);
  }

  /** Run a scaling pass now and wait for it. */
  tickNow(): Promise<void> {
    return this.#fullPass();
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
    if (c.after && !c.before) void this.#fullPass();
    if (!c.after) this.#forget(c.ref);
  }

  #onResync(): void {
    for (const ref of this.#autoscalers.refs()) {
      if (!this.#d.cache.revisions.has(ref)) this.#forget(ref);
    }
    this.#desiredSets.rescan();
  }

  #forget(ref: string): void {
    this.#autoscalers.delete(ref);
    this.#state.delete(ref);
    this.#unchanged.delete(ref);
    removeRevisionGauges(this.#d.metrics, ref);
  }

  // ---- metrics -------------------------------------------------------------

  async #read(): Promise<void> {
    const loads = await this.#source.read();
    const now = Date.now();
    this.#loads = loads;
    this.#autoscalers.recordAll(loads, now);
  }

  // ---- the scaling pass ----------------------------------------------------

  #fullPass(): Promise<void> {
    this.#fullPassWanted = true;
    return this.#tick.trigger();
  }

  /**
   * Signalled revisions with nothing placed get their first instances from the
   * last view (fast-activation.ts). True when every signalled revision is
   * placed now (or was already): no full pass is needed for them.
   */
  async #placeActivated(): Promise<boolean> {
    const now = Date.now();
    const signalled = this.#activation.peek();
    const last = this.#last;
    if (signalled.size === 0 || !this.#canWrite()) return false;
    const refs = unplacedSignals(last, signalled, now, 2 * this.#o.autoscaler.tickInterval);
    if (refs === undefined || !last) return false;
    if (refs.length === 0) return true;
    // The agents as they are now (one read): which ones live, drain, or hold a
    // standby of the revision changes between passes, and placement weighs it.
    // And who woke them: an agent may have started an instance from its standby.
    const [{ live }, claims] = await Promise.all([
      this.#d.fleet.listAgents(),
      settleWakes(
        this.#d.redis,
        this.#d.fleet.keys,
        refs.flatMap((ref) => {
          const parsed = parseRevisionRef(ref);
          return parsed ? [{ ref, ...parsed }] : [];
        }),
      ),
    ]);
    if (!this.#canWrite()) return false;
    const { add, handled } = planActivation({
      agents: live,
      last,
      refs,
      claims,
      scaling: (ref) => {
        const rev = this.#d.cache.revisions.get(ref);
        const s = this.#autoscalers.get(ref);
        if (!rev || !s) return undefined;
        return { namespace: rev.metadata.namespace, revision: rev.metadata.name, s };
      },
      nowMs: now,
      newId: newInstanceId,
    });
    if (add.size === 0) return handled;
    await this.#desiredSets.apply(add, new Map());
    const added = [...add.values()].flat();
    this.#d.metrics.fastActivations.inc(added.length);
    this.#log.debug({ instances: added.map((d) => d.id) }, "placed at activation");
    const requestsOf = (ref: string) => this.#autoscalers.get(ref)?.needs.requests;
    this.#last = viewAfter(last.placed, { add, remove: new Map() }, requestsOf, now);
    return handled;
  }

  async #pass(): Promise<void> {
    const started = performance.now();
    const m = this.#d.metrics;
    const { cache } = this.#d;
    const view = await readFleetView(this.#d.fleet, { prune: () => this.#grace.ended() });
    if (!this.#canWrite()) return;
    if (view.missing.length > 0) {
      // Not dead yet, maybe not back yet: change nothing until they are, or the grace ends.
      m.heldPasses.inc();
      this.#grace.holding(view.missing);
      return;
    }
    const now = Date.now();
    await this.#desiredSets.clearDeadAgents(view);

    const { placed, placedByRev, unknown } = readPlaced(
      view,
      (ref) => cache.revisions.has(ref),
      (ref, d) => this.#autoscalers.get(ref)?.needs.requests ?? this.#o.placement[d.runtime],
    );
    // Instances of revisions we do not know: deleted ones go.
    const remove = await deletedRevisions(unknown, this.#d.store);

    const zero = [...cache.revisions.keys()].filter((ref) => readyCount(view, ref) === 0);
    const keys = await this.#activation.keys(zero);
    const signalled = this.#activation.take();
    const routing = routingStates(this.#d.published(), cache);

    const wants = new Map<string, RevisionWant>();
    const decisions = new Map<string, RevisionDecision>();
    const standbys = new Set(view.agents.flatMap((a) => a.standbys ?? []));
    for (const [ref, rev] of cache.revisions) {
      const ready = readyCount(view, ref);
      const load = this.#loads.get(ref);
      const { decision, s } = this.#autoscalers.decide(ref, rev, now, {
        ready,
        placed: placedByRev.get(ref) ?? 0,
        activationRequested: activationRequested({
          ready,
          signalled: signalled.has(ref),
          keyed: keys.has(ref),
          queued: load?.queued ?? 0,
        }),
        reachable: routing.has(ref),
      });
      decisions.set(ref, { decision, ready, s });
      m.decisions.inc({ reason: decision.reason });
      const standby = standbys.has(ref);
      const warmup = wantsWarmup({
        desired: decision.desired,
        ready,
        standby,
        warmed: s.warmed === true,
        createdMs: createdMs(rev),
        nowMs: now,
        windowMs: warmupWindowMs(s.needs.runtime, this.#o),
      });
      if (ready > 0 || standby) s.warmed = true;
      wants.set(ref, {
        namespace: rev.metadata.namespace,
        revision: rev.metadata.name,
        desired: warmup ? 1 : decision.desired,
        runtime: s.needs.runtime,
        requests: s.needs.requests,
      });
    }

    // Revisions brought up from nothing: an agent may have woken one already.
    const adopted = await adoptWakes(
      { redis: this.#d.redis, keys: this.#d.fleet.keys },
      [...wants].filter(
        ([ref, w]) => w.runtime === "isolate" && w.desired > 0 && !placedByRev.get(ref),
      ),
      view.agents,
      now,
    );
    placed.push(...[...adopted.values()].flatMap((list) => list.map((a) => a.placed)));
    const plan = planScale({
      agents: view.agents,
      placed,
      wants,
      remove,
      newId: newInstanceId,
      nowMs: now,
    });
    withAdopted(plan.add, adopted);
    await this.#desiredSets.apply(plan.add, plan.remove);
    this.#last = viewAfter(placed, plan, (ref) => wants.get(ref)?.requests, now);
    this.#problems.note(plan.problems);

    await reportScale(
      {
        options: this.#o,
        store: this.#d.store,
        metrics: m,
        log: this.#log,
        canWrite: () => this.#canWrite(),
        state: this.#state,
        unchanged: this.#unchanged,
      },
      { decisions, revisions: cache.revisions, plan, routing, loads: this.#loads },
    );
    m.tick.observe((performance.now() - started) / 1000);
  }
}
