/**
 * The node agent: turns the scaler's desired instances for this host into
 * running containers and isolates, and tells the rest of Skiff about them.
 *
 * - Membership: registers in Redis with its id, data address, capacity and
 *   runtimes, and heartbeats with a TTL so a dead host is noticed within
 *   seconds. A graceful stop drains and deregisters.
 * - Reconcile: desired -> actual, one pass at a time, triggered by the
 *   desired channel (edge) and a periodic resync (level). Starts and stops
 *   run in the background; a pass only decides. Each pass also checks that
 *   Redis holds exactly the endpoints and reports it should (so a lost write,
 *   a pruning while the agent looked dead, or a previous run's leftovers are
 *   repaired).
 * - Instances: an endpoint is published only once the instance is ready and
 *   withdrawn at once when it is not (crash, exit, stall, unready, stop);
 *   each instance's Redis writes go through its own chain, in order.
 * - Observations only: each instance's report says its phase, when it last
 *   passed readiness, the image digest that ran and its last failure that is
 *   the revision's own (with the condition it belongs on). The scaler alone
 *   derives Revision status from the reports of all live agents
 *   (scaler/controllers/revision-status.ts).
 * - Restart: containers of a previous run are adopted, not duplicated.
 */
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import { ensureClusterIdentity } from "../src/cluster.ts";
import { conditionForFailure } from "../src/control/revision-health.ts";
import { Fleet } from "../src/fleet/fleet.ts";
import type { DesiredInstance, Endpoint, InstanceStatus, RuntimeKind } from "../src/fleet/types.ts";
import { type FleetWatch, watchFleet } from "../src/fleet/watch.ts";
import { createLogger, type Logger } from "../src/logging.ts";
import { redisUpGauge } from "../src/metrics.ts";
import type { Revision } from "../src/model/types.ts";
import { openRedis } from "../src/redis/connect.ts";
import { RedisHealth } from "../src/redis/health.ts";
import { createRedisStore, type RedisStore } from "../src/store/index.ts";
import { ContainerRuntime } from "./container/index.ts";
import { ContainerDriver } from "./containers.ts";
import { InstanceError } from "./errors.ts";
import { FleetMirror } from "./fleet-mirror.ts";
import { agentId, type Capacity, detectCapacity, offeredRuntimes } from "./identity.ts";
import {
  type Failure,
  type Instance,
  type InstanceSink,
  newInstance,
  type ReadyAt,
  statusOf,
} from "./instance.ts";
import { WorkerdPool } from "./isolate/index.ts";
import { IsolateDriver } from "./isolates.ts";
import { type AgentMetrics, agentMetrics, capacityGauge } from "./metrics.ts";
import { type AgentOptions, type AgentOptionsInput, parseAgentOptions } from "./options.ts";
import { heartbeatAlive } from "./orphans.ts";
import { planReconcile, type ReconcileReason, SerialRunner } from "./reconcile.ts";

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
  readonly #runner: SerialRunner;
  readonly #metrics: AgentMetrics;
  /** Containers of a previous run found dead: their failure goes on the instance started in their place. */
  readonly #foundDead = new Map<string, Failure & { at: number }>();
  /** Redis reachable or not; one log line per change (src/redis/health.ts). */
  #redisHealth: RedisHealth | undefined;
  /** For the Redis-dependent background work: quiet while Redis is away. */
  #redisLog: Logger;
  #watch: FleetWatch | undefined;
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
    this.#runner = new SerialRunner(
      (reasons) => this.#reconcile(reasons),
      (err) => this.#redisFailure(err, "reconcile pass failed", "error"),
    );
  }

  get state(): AgentState {
    return this.#state;
  }

  get runtimes(): RuntimeKind[] {
    return [...this.#runtimes];
  }

  /** Running, reconciled at least once, and its last heartbeat landed within the TTL. */
  /** Redis answered last time the agent looked. */
  get redisUp(): boolean {
    return this.#redisHealth?.up ?? false;
  }

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
    return this.#runner.trigger("manual");
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
      // No `logger`: RedisHealth (below, once the id is settled) logs an outage once.
      const redis = await openRedis(o.redisUrl, {
        connectionName: o.id ? `skiff-agent-${o.id}` : "skiff-agent",
      });
      this.#redis = redis;
      const ignore = () => {};
      redis.on("error", ignore);
      // The install's identity: part of the default agent id, the label of every
      // container, and the secret gateways show the workerd router.
      const cluster = await ensureClusterIdentity(redis, o.redisPrefix);
      if (!o.id) {
        // Two installs on one host (two `skiff up`) must never share an agent id.
        this.id = agentId({ address: o.address, clusterId: cluster.id });
        this.log = this.#baseLog.child({ agent: this.id });
        // Named like an agent with a given id, now and after a reconnect.
        redis.options.connectionName = `skiff-agent-${this.id}`;
        try {
          await redis.client("SETNAME", redis.options.connectionName);
        } catch {
          // Cosmetic (CLIENT LIST); the in-process store has no CLIENT command (throws at once).
        }
      }
      this.#redisHealth = new RedisHealth(redis, this.log, {
        whileLost: "instances keep serving; heartbeats and reports wait until it is back",
        onBack: "resyncing",
      });
      redis.off("error", ignore);
      this.#redisLog = this.#redisHealth.quietLogger;
      this.#fleet = new Fleet({ redis, prefix: o.redisPrefix, logger: this.#redisLog });
      this.#mirror = this.#fleetMirror(this.#fleet);
      this.#store = await createRedisStore({
        redis,
        prefix: o.redisPrefix,
        logger: this.#redisLog,
      });
      const sink = this.#sink();

      if (o.containers) {
        // The install's id labels every container and names the bridge, so that two
        // installs sharing a Docker engine never adopt or stop each other's.
        const runtime = new ContainerRuntime({
          clusterId: cluster.id,
          owner: this.id,
          dataAddress: o.address,
          socketPath: o.dockerSocket,
          startupTimeoutMs: o.startupTimeoutMs,
          standby: o.containerStandby,
          ...(o.portRange ? { portRange: o.portRange } : {}),
          registries: o.images.registries,
          pullTimeoutMs: o.images.pullTimeoutMs,
          ...(o.containerFirewall ? { firewall: o.containerFirewall } : {}),
        });
        if (await runtime.available()) {
          this.#containers = new ContainerDriver({
            runtime,
            sink,
            metrics: this.#metrics,
            backoff: o.restartBackoff,
            logger: this.log,
            registry: this.registry,
            // A dead agent's containers (absent heartbeat twice, a TTL x2 apart) are reaped.
            orphans: {
              isAlive: heartbeatAlive(redis, (id) => this.fleet.keys.agent(id)),
              graceMs: 2 * o.heartbeatTtlMs,
            },
          });
        } else {
          await runtime.close();
          this.log.warn(
            { socket: o.dockerSocket },
            "no Docker engine answered: this agent offers isolates only",
          );
        }
      }
      this.#runtimes = offeredRuntimes(this.#containers !== undefined);

      this.#pool = new WorkerdPool({
        host: o.address,
        metrics: this.registry,
        gatewaySecret: o.gatewaySecret ?? cluster.secret,
        ...(o.isolateSandbox ? { sandbox: o.isolateSandbox } : {}),
        ...(o.isolateMaxHeapMb ? { maxHeapMb: o.isolateMaxHeapMb } : {}),
        ...(o.isolateProcesses ? { processes: o.isolateProcesses } : {}),
        // Stable per agent id: a restart after SIGKILL finds and kills its predecessor's workerd.
        stateDir: o.isolateStateDir ?? join(this.#defaultStateDir(), "isolate"),
      });
      this.#pool.on("log", (e) => this.log.debug(e, "workerd"));
      this.#pool.on("warning", (e) => this.log.warn(e, "workerd pool"));
      await this.#pool.start();
      if (this.#pool.sandbox.notes.length > 0) {
        this.log.warn(
          { notes: this.#pool.sandbox.notes },
          "isolate sandbox incomplete on this host",
        );
      }
      this.#isolates = new IsolateDriver({
        pool: this.#pool,
        store: this.#store,
        sink,
        metrics: this.#metrics,
        logger: this.log,
      });

      await this.#adopt();

      await this.#mirror.register();

      this.#state = "running";
      this.#watch = await watchFleet({
        fleet: this.#fleet,
        channel: "desired",
        filter: (m) => m === this.id,
        onMessage: () => {
          void this.#runner.trigger("message");
        },
        resync: (reason) => this.#runner.trigger(reason),
        intervalMs: o.resyncIntervalMs,
        logger: this.#redisLog,
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
    await this.#runner.stop();
    // Announce the draining record so that the scaler places nothing new here.
    await this.#mirror
      ?.announceDrain()
      .catch((err: unknown) => this.log.warn({ err }, "announcing the drain failed"));
    const all = [...this.#instances.values()];
    // Withdraw everything first, so that gateways stop sending before anything stops.
    for (const inst of all) this.#enterStopping(inst);
    await Promise.all(all.map((inst) => this.#push(inst)));
    await Promise.all(all.map((inst) => this.#stopInstance(inst)));
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

  /**
   * A failure of Redis work: debug while Redis is away (its outage is logged
   * once by RedisHealth), `level` with the stack otherwise.
   */
  #redisFailure(
    err: unknown,
    msg: string,
    level: "warn" | "error" = "warn",
    instance?: string,
  ): void {
    const at = this.#redisHealth?.failureLevel(level) ?? level;
    const fields = instance === undefined ? {} : { instance };
    if (at === "debug") this.log.debug({ ...fields, err: (err as Error)?.message }, msg);
    else this.log[at]({ ...fields, err }, msg);
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
      standbys: () => this.#containers?.standbyRevisions() ?? [],
      serving: () => this.#state === "running" || this.#state === "starting",
      draining: () => this.#state === "draining",
      onRejoined: () => {
        if (this.#state !== "running") return;
        // Taken for dead (and pruned) meanwhile: put endpoints and reports back.
        this.log.warn("heartbeat found the agent record expired; rejoined the fleet");
        void this.#runner.trigger("event");
      },
      onFailure: (err, msg, instance) => this.#redisFailure(err, msg, "warn", instance),
    });
  }

  // ---- adoption ------------------------------------------------------------

  async #adopt(): Promise<void> {
    if (!this.#containers) return;
    const { running, exited } = await this.#containers.adopt();
    for (const a of running) {
      const desired: DesiredInstance = {
        id: a.instanceId,
        namespace: a.spec.namespace,
        revision: a.spec.revision,
        runtime: "container",
      };
      const inst = newInstance(desired);
      inst.coldStartRecorded = true; // it was started by a previous run
      // Redis may still hold its endpoint and report from that run: overwrite or withdraw them.
      inst.dirty = true;
      this.#instances.set(inst.id, inst);
      this.#containers.attachAdopted(inst, a);
    }
    // Still desired, the instance starts again (a new container) and its report says how the last one ended.
    for (const e of exited) {
      this.#foundDead.set(e.instanceId, { reason: e.reason, message: e.message, at: Date.now() });
    }
    if (running.length || exited.length) {
      this.log.info(
        { running: running.map((a) => a.instanceId), exited: exited.map((e) => e.instanceId) },
        "adopted containers of a previous run",
      );
    }
  }

  // ---- reconcile -----------------------------------------------------------

  async #reconcile(reasons: ReconcileReason[]): Promise<void> {
    const fleet = this.#fleet;
    if (!fleet || this.#state !== "running") return;
    const started = performance.now();
    const desired = await fleet.readDesired(this.id);
    if (this.#state !== "running") return;
    const plan = planReconcile(
      desired,
      [...this.#instances.values()].map((i) => ({ id: i.id, stopping: i.stopping })),
    );
    for (const id of plan.stop) {
      const inst = this.#instances.get(id);
      // No longer desired (a scale-down): a ready container may stay as a paused standby.
      if (inst) void this.#stopInstance(inst, { standby: true });
    }
    for (const d of plan.start) this.#startInstance(d);
    // Failures that may have gone away (revision created late, room freed) are retried now and then.
    if (reasons.some((r) => r !== "message" && r !== "event")) {
      void this.#containers
        ?.pruneStandbys(async (ns, rev) => (await this.#readRevision(ns, rev)) !== undefined)
        .catch((err: unknown) => this.log.warn({ err }, "pruning standbys failed"));
      void this.#containers
        ?.reapOrphans()
        .catch((err: unknown) => this.log.warn({ err }, "reaping orphaned containers failed"));
      const wanted = new Map(desired.map((d) => [d.id, d]));
      for (const inst of [...this.#instances.values()]) {
        const d = wanted.get(inst.id);
        if (d && inst.phase === "failed" && inst.retryable && !inst.stopping) {
          this.#instances.delete(inst.id);
          this.#startInstance(d, inst);
        }
      }
    }
    // Found dead at adoption but no longer desired: nothing reports on them.
    this.#foundDead.clear();
    // The repair reads every endpoint and report of this agent: level-triggered
    // passes only, not each desired-set message (a thousand new instances are
    // a thousand messages; each instance pushes its own writes).
    if (reasons.some((r) => r !== "message" && r !== "event")) await this.#mirror?.syncAll();
    this.#reconciled = true;
    this.#metrics.reconcile.observe((performance.now() - started) / 1000);
  }

  /** `previous`: a failed instance retried; it keeps its report until the outcome differs. */
  #startInstance(desired: DesiredInstance, previous?: Instance): void {
    const inst = newInstance(desired);
    if (previous) {
      inst.chain = previous.chain;
      inst.reported = previous.reported;
      inst.published = previous.published;
      inst.restarts = previous.restarts;
      inst.phase = previous.phase;
      inst.reason = previous.reason;
      inst.message = previous.message;
      inst.since = previous.since;
      inst.readyAt = previous.readyAt;
      inst.lastFailure = previous.lastFailure;
      inst.readyHealth = previous.readyHealth;
    }
    const dead = this.#foundDead.get(inst.id);
    if (dead) {
      this.#foundDead.delete(inst.id);
      inst.lastFailure = { condition: conditionForFailure(dead.reason), ...dead };
    }
    this.#instances.set(inst.id, inst);
    const active = [...this.#instances.values()].filter((i) => !i.stopping).length;
    if (active > this.capacity.maxInstances) {
      this.#setFailed(inst, {
        reason: "AgentFull",
        message: `agent ${this.id} already runs its maximum of ${this.capacity.maxInstances} instances; place this one elsewhere`,
      });
      inst.retryable = true;
      return;
    }
    if (!previous) void this.#push(inst);
    void this.#launch(inst);
  }

  async #launch(inst: Instance): Promise<void> {
    const { namespace, revision: name, runtime } = inst.desired;
    try {
      const revision = await this.#readRevision(namespace, name);
      if (inst.stopping) return;
      if (!revision) {
        throw new InstanceError(
          {
            reason: "RevisionNotFound",
            message: `revision "${name}" not found in namespace "${namespace}": it was deleted or never existed`,
          },
          { instanceId: inst.id, retryable: true, health: false },
        );
      }
      const kind: RuntimeKind = revision.spec.worker ? "isolate" : "container";
      if (kind !== runtime) {
        throw new InstanceError(
          {
            reason: "RuntimeMismatch",
            message: `revision "${name}" is a ${kind} revision, but the instance asks for the ${runtime} runtime`,
          },
          { instanceId: inst.id, health: false },
        );
      }
      if (kind === "container") {
        if (!this.#containers) {
          throw new InstanceError(
            {
              reason: "RuntimeUnavailable",
              message: `agent ${this.id} offers no container runtime (no Docker engine answered at ${this.options.dockerSocket})`,
            },
            { instanceId: inst.id, retryable: true, health: false },
          );
        }
        this.#containers.start(inst, revision);
      } else {
        await this.#isolates?.start(inst, revision);
      }
    } catch (err) {
      if (inst.stopping) return;
      const failure =
        err instanceof InstanceError
          ? { reason: err.failure.reason, message: err.failure.message }
          : { reason: "StartFailed", message: (err as Error)?.message ?? String(err) };
      inst.retryable = err instanceof InstanceError && err.retryable;
      const health = !(err instanceof InstanceError) || err.health;
      if (!this.#setPhase(inst, "failed", failure, health)) return; // a retry that failed the same way
      this.#metrics.failures.inc({ runtime, reason: failure.reason });
    }
  }

  async #readRevision(namespace: string, name: string): Promise<Revision | undefined> {
    return this.#store?.get("revisions", namespace, name);
  }

  #enterStopping(inst: Instance): void {
    if (inst.stopping) return;
    inst.drainOnStop = inst.phase === "ready";
    inst.stopping = true;
    this.#setPhase(inst, "stopping");
  }

  /** Withdraw first, then drain and stop; the instance leaves the agent's books when done. */
  #stopInstance(inst: Instance, options: { standby?: boolean } = {}): Promise<void> {
    this.#enterStopping(inst);
    inst.stopped ??= (async () => {
      await this.#push(inst);
      // Only an instance that was routable has requests to drain.
      const drainMs = inst.drainOnStop ? this.options.drainDelayMs : 0;
      try {
        if (inst.desired.runtime === "container") {
          const standby = options.standby === true && inst.drainOnStop;
          await this.#containers?.stop(inst, drainMs, { standby });
        } else await this.#isolates?.stop(inst, drainMs);
      } catch (err) {
        this.log.warn({ err, instance: inst.id }, "stopping instance failed");
      }
      if (this.#instances.get(inst.id) === inst) this.#instances.delete(inst.id);
      await (this.#mirror?.removeReport(inst) ?? inst.chain);
      this.log.info({ instance: inst.id, revision: inst.desired.revision }, "instance stopped");
      // It may be desired again (a later pass starts it now that it is gone).
      if (this.#state === "running") void this.#runner.trigger("event");
    })();
    return inst.stopped;
  }

  // ---- instance state -> Redis ---------------------------------------------

  #sink(): InstanceSink {
    return {
      ready: (inst, at, health) => this.#onReady(inst, at, health),
      starting: (inst, detail) => {
        if (inst.stopping) return;
        this.#setPhase(inst, "starting", detail);
      },
      failed: (inst, phase, failure, health = true) => {
        if (inst.stopping) return;
        this.#setPhase(inst, phase, failure, health);
      },
    };
  }

  #onReady(inst: Instance, at: ReadyAt, health: { imageDigest?: string } = {}): void {
    if (inst.stopping) return;
    const endpoint: Endpoint = {
      instanceId: inst.id,
      agentId: this.id,
      runtime: inst.desired.runtime,
      host: at.host,
      port: at.port,
      protocol: at.protocol,
      containerConcurrency: at.containerConcurrency,
      readyAt: Date.now(),
    };
    if (at.header) endpoint.header = at.header;
    inst.endpoint = endpoint;
    inst.readyHealth = health;
    inst.readyAt = endpoint.readyAt;
    if (!inst.coldStartRecorded) {
      inst.coldStartRecorded = true;
      this.#metrics.coldStart.observe(
        { runtime: inst.desired.runtime },
        (performance.now() - inst.startedAt) / 1000,
      );
    }
    this.#setPhase(inst, "ready");
    this.log.info(
      { instance: inst.id, revision: inst.desired.revision, host: at.host, port: at.port },
      "instance ready",
    );
  }

  #setFailed(inst: Instance, failure: Failure): boolean {
    return this.#setPhase(inst, "failed", failure);
  }

  /**
   * Returns whether anything changed (and so was queued for Redis). `health`:
   * the failure is the revision's own, so the report's lastFailure says it
   * (seen now, even when the phase is the same: a crash again).
   */
  #setPhase(inst: Instance, phase: Instance["phase"], detail?: Failure, health = false): boolean {
    const changed =
      inst.phase !== phase || inst.reason !== detail?.reason || inst.message !== detail?.message;
    if (health && detail && (changed || inst.lastFailure?.reason !== detail.reason)) {
      inst.lastFailure = {
        condition: conditionForFailure(detail.reason),
        reason: detail.reason,
        message: detail.message,
        at: Date.now(),
      };
      if (!changed) {
        void this.#push(inst);
        return true;
      }
    }
    if (!changed) return false;
    if (inst.phase !== phase) inst.since = Date.now();
    inst.phase = phase;
    inst.reason = detail?.reason;
    inst.message = detail?.message;
    if (phase === "backoff" || phase === "failed") {
      this.log.warn({ instance: inst.id, phase, ...detail }, "instance not running");
    }
    void this.#push(inst);
    return true;
  }

  /** Queue a write of the instance's endpoint and report (fleet-mirror.ts). */
  #push(inst: Instance): Promise<void> {
    return this.#mirror?.push(inst) ?? inst.chain;
  }
}
