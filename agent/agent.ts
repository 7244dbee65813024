/**
 * The node agent: turns the scaler's desired instances for this host into
 * running containers and isolates, and tells the rest of Skiff about them.
 * This class wires the parts and runs the agent's life: start, reconcile
 * passes, graceful stop (drain, withdraw, stop, deregister).
 *
 * - Connection (connection.ts): Redis, the install's identity, the agent id.
 * - Membership and mirror (fleet-mirror.ts): the host record with a
 *   heartbeat TTL, so a dead host is noticed within seconds; each instance's
 *   endpoint (only while ready) and report, written in order through its own
 *   chain; every level-triggered pass repairs what Redis holds (a lost write,
 *   a pruning while the agent looked dead, a previous run's leftovers).
 * - Reconcile (reconcile.ts, instance-lifecycle.ts): desired -> actual, one
 *   pass at a time, triggered by the desired channel (edge) and a periodic
 *   resync (level). Starts and stops run in the background; a pass only
 *   decides. Containers of a previous run are adopted, not duplicated.
 * - Observations only (instance-phase.ts): each instance's report says its
 *   phase, when it last passed readiness, the image digest that ran and its
 *   last failure that is the revision's own. The scaler alone derives
 *   Revision status from the reports of all live agents
 *   (scaler/controllers/revision-status.ts).
 * - Runtimes (runtimes.ts): the container driver and the workerd pool.
 */
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import { Fleet } from "../src/fleet/fleet.ts";
import { MAX_REPORTED_STANDBYS } from "../src/fleet/schemas.ts";
import type { InstanceStatus, RuntimeKind } from "../src/fleet/types.ts";
import { type FleetWatch, watchFleet } from "../src/fleet/watch.ts";
import { createLogger, type Logger } from "../src/logging.ts";
import { redisUpGauge } from "../src/metrics.ts";
import type { RedisHealth } from "../src/redis/health.ts";
import { Coalescer } from "../src/redis/resync.ts";
import { createRedisStore, type RedisStore } from "../src/store/index.ts";
import { connectAgent, logRedisFailure } from "./connection.ts";
import type { ContainerDriver } from "./containers.ts";
import { FleetMirror } from "./fleet-mirror.ts";
import { agentId, type Capacity, detectCapacity, offeredRuntimes } from "./identity.ts";
import { type Instance, statusOf } from "./instance.ts";
import { InstanceLifecycle } from "./instance-lifecycle.ts";
import { type InstancePhaseDeps, instanceSink } from "./instance-phase.ts";
import type { WorkerdPool } from "./isolate/index.ts";
import { IsolateDriver } from "./isolates.ts";
import { type AgentMetrics, agentMetrics, capacityGauge, isolateStandbysGauge } from "./metrics.ts";
import { type AgentOptions, type AgentOptionsInput, parseAgentOptions } from "./options.ts";
import type { ReconcileReason } from "./reconcile.ts";
import { createWorkerdPool, openContainerDriver, startWorkerdPool } from "./runtimes.ts";
import { watchWakes } from "./wakes.ts";

export type AgentState = "new" | "starting" | "running" | "draining" | "stopped";

export class Agent {
  readonly options: AgentOptions;
  /** Settled by start(): the default id includes the cluster id read from Redis. */
  id: string;
  readonly registry: Registry;
  log: Logger;
  readonly #baseLog: Logger;
  readonly capacity: Capacity;
  #runtimes: RuntimeKind[] = ["isolate"];
  #state: AgentState = "new";
  #startedAt = new Date();
  #redis: Redis | undefined;
  #fleet: Fleet | undefined;
  #store: RedisStore | undefined;
  #containers: ContainerDriver | undefined;
  #isolates: IsolateDriver | undefined;
  #pool: WorkerdPool | undefined;
  readonly #instances = new Map<string, Instance>();
  /** Starts, retries and stops them (set once the runtimes exist). */
  #lifecycle: InstanceLifecycle | undefined;
  /** Reconcile passes, one at a time; a burst of triggers becomes one more pass with all their reasons. */
  readonly #runner: Coalescer<Set<ReconcileReason>>;
  readonly #metrics: AgentMetrics;
  /** Redis reachable or not; one log line per change (src/redis/health.ts). */
  #redisHealth: RedisHealth | undefined;
  /** For the Redis-dependent background work: quiet while Redis is away. */
  #redisLog: Logger;
  #watch: FleetWatch | undefined;
  /** Ends the subscription to wake notices (src/fleet/wake.ts). */
  #unwatchWakes: (() => Promise<void>) | undefined;
  /** What Redis says about this host and its instances (set once the fleet handle exists). */
  #mirror: FleetMirror | undefined;
  #reconciled = false;
  #stopping: Promise<void> | undefined;

  constructor(input: AgentOptionsInput = {}) {
    this.options = parseAgentOptions(input);
    const o = this.options;
    this.id = agentId({ address: o.address, ...(o.id ? { id: o.id } : {}) });
    this.#baseLog = o.logger ?? createLogger({ component: "agent" });
    this.log = this.#baseLog.child({ agent: this.id });
    this.#redisLog = this.log;
    this.registry = o.registry ?? new Registry();
    this.capacity = detectCapacity(o.capacity);
    this.#metrics = agentMetrics(this.registry, () =>
      [...this.#instances.values()].map((i) => ({ phase: i.phase, runtime: i.desired.runtime })),
    );
    capacityGauge(this.registry, this.capacity);
    redisUpGauge(this.registry, () => this.redisUp);
    this.#runner = new Coalescer(
      async (reasons) => {
        try {
          await this.#reconcile([...reasons]);
        } catch (err) {
          this.#redisFailure(err, "reconcile pass failed", "error");
        }
      },
      {
        merge: (waiting, next) => {
          for (const r of next) waiting.add(r);
          return waiting;
        },
      },
    );
  }

  get state(): AgentState {
    return this.#state;
  }

  get runtimes(): RuntimeKind[] {
    return [...this.#runtimes];
  }

  /** Redis answered last time the agent looked. */
  get redisUp(): boolean {
    return this.#redisHealth?.up ?? false;
  }

  /** Running, reconciled at least once, and its last heartbeat landed within the TTL. */
  get ready(): boolean {
    return (
      this.#state === "running" &&
      this.#reconciled &&
      Date.now() - (this.#mirror?.lastBeat ?? 0) < this.options.heartbeatTtlMs
    );
  }

  /** What the agent holds now, as it reports it. */
  instances(): InstanceStatus[] {
    return [...this.#instances.values()].map((i) => statusOf(i, this.id));
  }

  /** The fleet handle (tests and the HTTP server use it). */
  get fleet(): Fleet {
    if (!this.#fleet) throw new Error("agent is not started");
    return this.#fleet;
  }

  get pool(): WorkerdPool | undefined {
    return this.#pool;
  }

  /** Run a reconcile pass now and wait for it. */
  reconcileNow(): Promise<void> {
    return this.#trigger("manual");
  }

  /** Wait until instance writes in progress are done (tests). */
  async settled(): Promise<void> {
    await Promise.all([...this.#instances.values()].map((i) => i.chain));
  }

  // ---- lifecycle -----------------------------------------------------------

  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`agent cannot start: it is ${this.#state}`);
    this.#state = "starting";
    this.#startedAt = new Date();
    const o = this.options;
    try {
      const { redis, cluster, ...conn } = await connectAgent(
        o,
        { id: this.id, log: this.log },
        (id) => this.#baseLog.child({ agent: id }),
        (r) => {
          this.#redis = r;
        },
      );
      this.id = conn.id;
      this.log = conn.log;
      this.#redisHealth = conn.health;
      this.#redisLog = this.#redisHealth.quietLogger;
      this.#fleet = new Fleet({ redis, prefix: o.redisPrefix, logger: this.#redisLog });
      this.#mirror = this.#fleetMirror(this.#fleet);
      this.#store = await createRedisStore({
        redis,
        prefix: o.redisPrefix,
        logger: this.#redisLog,
      });
      const phase: InstancePhaseDeps = {
        agentId: this.id,
        log: this.log,
        metrics: this.#metrics,
        push: (inst) => this.#push(inst),
      };
      const sink = instanceSink(phase);

      if (o.containers) {
        this.#containers = await openContainerDriver({
          options: o,
          clusterId: cluster.id,
          agentId: this.id,
          sink,
          metrics: this.#metrics,
          registry: this.registry,
          log: this.log,
          redis,
          fleet: this.#fleet,
        });
      }
      this.#runtimes = offeredRuntimes(this.#containers !== undefined);

      this.#pool = createWorkerdPool(o, {
        registry: this.registry,
        log: this.log,
        gatewaySecret: o.gatewaySecret ?? cluster.secret,
        // Stable per agent id: a restart after SIGKILL finds and kills its predecessor's workerd.
        stateDir: o.isolateStateDir ?? join(this.#defaultStateDir(), "isolate"),
      });
      await startWorkerdPool(this.#pool, this.log);
      this.#isolates = new IsolateDriver({
        pool: this.#pool,
        store: this.#store,
        sink,
        metrics: this.#metrics,
        logger: this.log,
        standby: o.isolateStandby,
      });
      const isolates = this.#isolates;
      isolateStandbysGauge(this.registry, () => isolates.standbyRevisions().length);
      this.#lifecycle = new InstanceLifecycle({
        ...phase,
        options: o,
        capacity: this.capacity,
        instances: this.#instances,
        containers: this.#containers,
        isolates: this.#isolates,
        store: this.#store,
        removeReport: (inst) => this.#mirror?.removeReport(inst) ?? inst.chain,
        running: () => this.#state === "running",
        onStopped: () => void this.#trigger("event"),
      });

      await this.#lifecycle.adopt();

      await this.#mirror.register();

      this.#state = "running";
      this.#watch = await watchFleet({
        fleet: this.#fleet,
        channel: "desired",
        filter: (m) => m === this.id,
        onMessage: () => {
          void this.#trigger("message");
        },
        resync: (reason) => this.#trigger(reason),
        intervalMs: o.resyncIntervalMs,
        logger: this.#redisLog,
      });
      const lifecycle = this.#lifecycle;
      this.#unwatchWakes = await watchWakes({
        fleet: this.#fleet,
        agentId: this.id,
        isolates,
        canStart: () => this.#state === "running" && lifecycle.hasRoom(),
        startHeld: (d, heldUntil, revision) => lifecycle.startHeld(d, heldUntil, revision),
        readRevision: (ns, name) => lifecycle.readRevision(ns, name),
        onHoldEnded: () => void this.#trigger("event"),
        metrics: this.#metrics,
        log: this.log,
      });
      this.log.info(
        { address: o.address, runtimes: this.#runtimes, capacity: this.capacity },
        "agent started",
      );
    } catch (err) {
      await this.#teardown().catch(() => {});
      this.#state = "stopped";
      throw err;
    }
  }

  /**
   * Graceful stop (SIGTERM): stop taking work, withdraw every endpoint, let
   * in-flight requests finish (bounded by each revision's timeoutSeconds), stop
   * every instance, deregister. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#gracefulStop();
    return this.#stopping;
  }

  async #gracefulStop(): Promise<void> {
    if (this.#state === "new" || this.#state === "stopped") {
      this.#state = "stopped";
      return;
    }
    this.#state = "draining";
    this.log.info({ instances: this.#instances.size }, "agent draining");
    await this.#watch?.stop();
    // Passes from here on find the agent draining and change nothing.
    await this.#runner.idle();
    // Announce the draining record so that the scaler places nothing new here.
    await this.#mirror
      ?.announceDrain()
      .catch((err: unknown) => this.log.warn({ err }, "announcing the drain failed"));
    await this.#lifecycle?.stopAll();
    // Leaving the fleet: nothing will be placed here to resume them.
    await this.#containers
      ?.removeStandbys()
      .catch((err: unknown) => this.log.warn({ err }, "removing standbys failed"));
    await this.#teardown({ deregister: true });
    if (!this.options.isolateStateDir) {
      // Nothing of ours runs any more: the default state directory has served its purpose.
      await rm(this.#defaultStateDir(), { recursive: true, force: true }).catch(() => {});
    }
    this.#state = "stopped";
    this.log.info("agent stopped");
  }

  async #teardown(options: { deregister?: boolean } = {}): Promise<void> {
    this.#mirror?.stopHeartbeat();
    this.#redisHealth?.close();
    await this.#unwatchWakes?.().catch(() => {});
    await this.#watch?.stop().catch(() => {});
    await this.#pool?.stop().catch((err: unknown) => this.log.warn({ err }, "pool stop failed"));
    await this.#containers?.close().catch(() => {});
    if (options.deregister && this.#mirror) {
      await this.#mirror
        .deregister()
        .catch((err: unknown) => this.log.warn({ err }, "deregistering failed"));
    }
    await this.#store?.close().catch(() => {});
    await this.#fleet?.close().catch(() => {});
    if (this.#redis) {
      await this.#redis.quit().catch(() => this.#redis?.disconnect());
    }
  }

  #redisFailure(err: unknown, msg: string, level: "warn" | "error" = "warn", instance?: string) {
    logRedisFailure(this.log, this.#redisHealth, { err, msg, level, instance });
  }

  #defaultStateDir(): string {
    return join(tmpdir(), `skiff-agent-${this.id}`);
  }

  #fleetMirror(fleet: Fleet): FleetMirror {
    const o = this.options;
    return new FleetMirror({
      fleet,
      agentId: this.id,
      address: o.address,
      capacity: this.capacity,
      labels: o.labels,
      startedAt: this.#startedAt,
      heartbeatTtlMs: o.heartbeatTtlMs,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      instances: this.#instances,
      runtimes: () => this.#runtimes,
      // The record holds MAX_REPORTED_STANDBYS: containers' first (a resume saves the
      // most there), then the isolates' newest.
      standbys: () =>
        [
          ...(this.#containers?.standbyRevisions() ?? []),
          ...(this.#isolates?.standbyRevisions().reverse() ?? []),
        ].slice(0, MAX_REPORTED_STANDBYS),
      sandboxes: () => this.#containers?.readySandboxes() ?? 0,
      serving: () => this.#state === "running" || this.#state === "starting",
      draining: () => this.#state === "draining",
      onRejoined: () => {
        if (this.#state !== "running") return;
        // Taken for dead (and pruned) meanwhile: put endpoints and reports back.
        this.log.warn("heartbeat found the agent record expired; rejoined the fleet");
        void this.#trigger("event");
      },
      onFailure: (err, msg, instance) => this.#redisFailure(err, msg, "warn", instance),
    });
  }

  // ---- reconcile -----------------------------------------------------------

  #trigger(reason: ReconcileReason): Promise<void> {
    return this.#runner.trigger(new Set([reason]));
  }

  async #reconcile(reasons: ReconcileReason[]): Promise<void> {
    const fleet = this.#fleet;
    if (!fleet || this.#state !== "running") return;
    const started = performance.now();
    const desired = await fleet.readDesired(this.id);
    if (this.#state !== "running") return;
    this.#lifecycle?.reconcile(desired, reasons);
    // The repair reads every endpoint and report of this agent: level-triggered
    // passes only, not each desired-set message (a thousand new instances are
    // a thousand messages; each instance pushes its own writes).
    if (reasons.some((r) => r !== "message" && r !== "event")) await this.#mirror?.syncAll();
    this.#reconciled = true;
    this.#metrics.reconcile.observe((performance.now() - started) / 1000);
  }

  /** Queue a write of the instance's endpoint and report (fleet-mirror.ts). */
  #push(inst: Instance): Promise<void> {
    return this.#mirror?.push(inst) ?? inst.chain;
  }
}
