/**
 * Isolate instances: a worker Revision's compiled bundle is registered with
 * the agent's WorkerdPool under "{ns}/{rev}"; every instance of that revision
 * on this agent shares the registration (and the pool endpoint). An instance
 * is published only once its isolate is loaded: a module that throws at top
 * level fails the instance (WorkerModuleError, with the message and position)
 * instead of answering 500s. A stall takes out only the revisions whose
 * requests were running (WorkerStalled on their status); the pool moves them
 * to processes of their own and they are republished there, or, after
 * repeated stalls, stay out for the back-off period. A process that exits
 * takes out what it served until it is back.
 *
 * Standbys: when a scale-down stops a revision's last instance, its
 * registration (and so its isolate, already built in its process) is kept for
 * `standby.retentionMs`, unpublished. The next instance of the revision then
 * starts without reading its bundle or building its isolate again (a load
 * that finds it in place), and the agent reports the revision among its
 * standbys so that placement prefers this host. The workerd loader never
 * evicts an isolate before its process recycles, so a standby costs no memory
 * the process would not hold anyway; what it keeps is its namespace's
 * processes running through the retention.
 */
import { InFlight } from "../src/in-flight.ts";
import type { Logger } from "../src/logging.ts";
import { Labels, type Revision } from "../src/model/types.ts";
import type { Store } from "../src/store/store.ts";
import { InstanceError } from "./errors.ts";
import type { Instance, InstanceSink } from "./instance.ts";
import type { IsolateEvent, SpawnEvent, WorkerdPool } from "./isolate/index.ts";
import type { AgentMetrics } from "./metrics.ts";

export interface IsolateStandbyOptions {
  /** How long a standby is kept; 0 turns standbys off. */
  retentionMs: number;
  /** At most this many (the oldest goes first); 0 turns standbys off. */
  maxStandbys: number;
}

export interface IsolateDriverOptions {
  pool: WorkerdPool;
  store: Pick<Store, "getArtifact">;
  sink: InstanceSink;
  metrics: AgentMetrics;
  logger: Logger;
  standby?: IsolateStandbyOptions;
}

interface Registration {
  instances: Set<Instance>;
}

/** The key a revision is registered (and routed) under. */
export function revisionKeyOf(namespace: string, revision: string): string {
  return `${namespace}/${revision}`;
}

/** Env of a worker revision: its own plus the runtime contract's names. */
export function workerEnv(revision: Revision): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of revision.spec.worker?.env ?? []) env[e.name] = e.value;
  const labels = revision.metadata.labels ?? {};
  env.K_REVISION = revision.metadata.name;
  env.K_CONFIGURATION = labels[Labels.configuration] ?? revision.metadata.name;
  const service = labels[Labels.service];
  if (service) env.K_SERVICE = service;
  return env;
}

export class IsolateDriver {
  readonly pool: WorkerdPool;
  readonly #store: Pick<Store, "getArtifact">;
  readonly #sink: InstanceSink;
  readonly #metrics: AgentMetrics;
  readonly #log: Logger;
  readonly #registrations = new Map<string, Registration>();
  readonly #refusalTimers = new Map<Instance, NodeJS.Timeout>();
  /** Loads of a revision's bundle in progress, shared by concurrent starts. */
  readonly #loading = new InFlight<void>();
  readonly #standby: IsolateStandbyOptions;
  /** Revision keys kept as standbys (no instance), oldest first, with their expiry timer. */
  readonly #standbys = new Map<string, NodeJS.Timeout>();
  /** Parks in progress (the routers told to stop answering): a start waits for its revision's. */
  readonly #parking = new Map<string, Promise<void>>();

  constructor(options: IsolateDriverOptions) {
    this.pool = options.pool;
    this.#store = options.store;
    this.#sink = options.sink;
    this.#metrics = options.metrics;
    this.#log = options.logger;
    this.#standby = options.standby ?? { retentionMs: 0, maxStandbys: 0 };
    this.pool.on("stall", (e) => this.#onStall(e));
    this.pool.on("exit", (e) => this.#onDown(e));
    this.pool.on("hang", (e) =>
      this.#log.warn({ slot: e.slot, reason: e.reason }, "workerd process hung"),
    );
    this.pool.on("spawn", (e) => this.#onSpawn(e));
    this.pool.on("recycle", (e) =>
      this.#log.info({ slot: e.slot, reason: e.reason }, "workerd process recycled"),
    );
  }

  async start(inst: Instance, revision: Revision): Promise<void> {
    const worker = revision.spec.worker;
    if (!worker) {
      throw new InstanceError(
        { reason: "StartFailed", message: `revision ${revision.metadata.name} has no worker` },
        { instanceId: inst.id },
      );
    }
    const { namespace, name } = revision.metadata;
    const key = revisionKeyOf(namespace, name);
    inst.revisionKey = key;
    inst.timeoutSeconds = revision.spec.timeoutSeconds;
    inst.containerConcurrency = revision.spec.containerConcurrency;
    this.#metrics.starts.inc({ runtime: "isolate" });
    if (this.#endStandby(key)) this.#metrics.isolateResumes.inc();
    // A concurrent stop of the last instance may unregister while we wait: load again then.
    let reg = this.#registrations.get(key);
    for (let i = 0; !reg && i < 3; i++) {
      await this.#loading.run(key, () => this.#register(key, revision));
      reg = this.#registrations.get(key);
    }
    if (!reg) {
      throw new InstanceError(
        {
          reason: "StartFailed",
          message: `revision ${key} could not be registered with the workerd pool`,
        },
        { instanceId: inst.id },
      );
    }
    reg.instances.add(inst);
    // A stop of the revision's last other instance meanwhile may have made it a standby.
    this.#endStandby(key);
    if (inst.stopping) return this.#release(inst);
    // A park told to the routers after this load would hide the instance again.
    await this.#parking.get(key);
    // Evaluate the module before publishing (also makes the first request warm).
    const loaded = await this.pool.load(key).catch((err: Error) => ({
      ok: false,
      kind: "code-unavailable" as const,
      message: err.message,
      position: undefined,
    }));
    if (!loaded.ok && loaded.kind !== "unknown-revision") {
      this.#release(inst);
      if (loaded.kind === "refused") {
        throw new InstanceError(
          { reason: "WorkerStalled", message: loaded.message },
          { instanceId: inst.id, retryable: true },
        );
      }
      if (loaded.kind === "module-error") {
        throw new InstanceError(
          {
            reason: "WorkerModuleError",
            message: `the worker's module failed to load: ${loaded.message.replace(/^Failed to start Worker:\s*/, "").replace(/\s+/g, " ")}${loaded.position ? ` (at ${loaded.position} of the compiled bundle)` : ""}`,
          },
          { instanceId: inst.id },
        );
      }
      throw new InstanceError(
        {
          reason: "WorkerLoadFailed",
          message: `the worker could not be loaded: ${loaded.message}`,
        },
        { instanceId: inst.id, retryable: true },
      );
    }
    if (inst.stopping) return this.#release(inst);
    const ep = this.pool.endpointFor(key);
    inst.slot = ep.slot;
    if (this.pool.refusedUntil(key) !== undefined) this.#refused(inst);
    else if (this.pool.slotUp(ep.slot)) this.#ready(inst);
    else {
      this.#sink.starting(inst, {
        reason: "WorkerdRestarting",
        message: "its workerd process is restarting",
      });
    }
  }

  async #register(key: string, revision: Revision): Promise<void> {
    const worker = revision.spec.worker;
    const { namespace, name } = revision.metadata;
    const code = await this.#store.getArtifact(namespace, name);
    if (code === undefined) {
      // Shared by every instance loading this revision: no instance id.
      throw new InstanceError(
        {
          reason: "ArtifactMissing",
          message: `the compiled bundle of worker revision "${name}" is missing from the store (${namespace}); redeploy the service to rebuild it`,
        },
        { retryable: true },
      );
    }
    await this.pool.register(key, {
      code,
      env: workerEnv(revision),
      network: worker?.network ?? "none",
      ...(worker?.compatibilityDate ? { compatibilityDate: worker.compatibilityDate } : {}),
      ...(worker?.compatibilityFlags ? { compatibilityFlags: worker.compatibilityFlags } : {}),
    });
    this.#registrations.set(key, { instances: new Set() });
  }

  #ready(inst: Instance): void {
    const key = inst.revisionKey as string;
    const ep = this.pool.endpointFor(key);
    inst.slot = ep.slot;
    this.#sink.ready(inst, {
      host: ep.host,
      port: ep.port,
      protocol: "http1",
      header: ep.header,
      containerConcurrency: inst.containerConcurrency,
    });
  }

  /** Instances whose revision the slot serves now. */
  #onSlot(slot: string): { key: string; inst: Instance }[] {
    const out: { key: string; inst: Instance }[] = [];
    for (const [key, reg] of this.#registrations) {
      let on: boolean;
      try {
        on = this.pool.endpointFor(key).slot === slot;
      } catch {
        continue;
      }
      if (on) for (const inst of reg.instances) out.push({ key, inst });
    }
    return out;
  }

  /**
   * A stall: only the revisions whose requests were running are at fault and
   * taken out (their neighbours' requests wait in the socket's backlog for the
   * fresh process). They come back in a process of their own (spawn), or after
   * their refusal period.
   */
  #onStall(e: IsolateEvent): void {
    this.#log.warn(
      { slot: e.slot, reason: e.reason, revisions: e.revisions },
      "worker stalled its workerd process",
    );
    for (const key of e.revisions) {
      const reg = this.#registrations.get(key);
      if (!reg) continue;
      let first = true;
      for (const inst of reg.instances) {
        if (inst.stopping) continue;
        this.#metrics.failures.inc({ runtime: "isolate", reason: "WorkerStalled" });
        this.#sink.failed(inst, "backoff", { reason: "WorkerStalled", message: e.reason }, first);
        first = false;
        if (e.refusedUntil !== undefined) this.#refused(inst);
      }
    }
  }

  /** Keep a refused revision's instance out until its refusal ends, then publish it again. */
  #refused(inst: Instance): void {
    const key = inst.revisionKey as string;
    const until = this.pool.refusedUntil(key);
    if (until === undefined) return;
    if (inst.phase === "ready") {
      this.#sink.failed(inst, "backoff", {
        reason: "WorkerStalled",
        message: `refused until ${new Date(until).toISOString()} after repeated stalls`,
      });
    }
    clearTimeout(this.#refusalTimers.get(inst));
    const timer = setTimeout(
      () => {
        this.#refusalTimers.delete(inst);
        if (inst.stopping || !this.#registrations.get(key)?.instances.has(inst)) return;
        if (this.pool.refusedUntil(key) !== undefined) this.#refused(inst);
        else if (this.pool.slotUp(this.pool.endpointFor(key).slot)) this.#ready(inst);
      },
      Math.max(0, until - Date.now()) + 10,
    );
    timer.unref();
    this.#refusalTimers.set(inst, timer);
  }

  /**
   * A process stalled or died: everything it served is unroutable until it is
   * back. The reason goes on the revisions that had requests in flight (the
   * likely culprits); when none is known, on every revision it served.
   */
  #onDown(e: IsolateEvent): void {
    const affected = this.#onSlot(e.slot);
    const keys = new Set(affected.map((a) => a.key));
    const culprits = new Set(e.revisions.filter((r) => keys.has(r)));
    const blame = culprits.size > 0 ? culprits : keys;
    const reason = e.type === "stall" ? "WorkerStalled" : "WorkerdExited";
    this.#log.warn(
      { slot: e.slot, reason: e.reason, revisions: e.revisions },
      "workerd process down",
    );
    const reported = new Set<string>();
    for (const { key, inst } of affected) {
      if (inst.stopping) continue;
      const first = blame.has(key) && !reported.has(key);
      if (first) reported.add(key);
      this.#metrics.failures.inc({ runtime: "isolate", reason });
      this.#sink.failed(inst, "backoff", { reason, message: e.reason }, first);
    }
  }

  #onSpawn(e: SpawnEvent): void {
    // A fresh process holds no isolate: the standbys it held are loaded and
    // parked again, or their next start would be a whole build (a burst of
    // wakes then queues behind those builds, one at a time per process).
    if (e.cause !== "start") void this.#reloadStandbys(e.slot);
    // Only a replacement (after a stall, hang or exit) or a revision's own new
    // process brings withdrawn revisions back (or moves them).
    if (e.cause === "start" || e.cause === "recycle") return;
    for (const { key, inst } of this.#onSlot(e.slot)) {
      if (inst.stopping || this.#refusalTimers.has(inst) || this.pool.moving(key)) continue;
      if (this.pool.refusedUntil(key) !== undefined) {
        this.#refused(inst);
        continue;
      }
      if (inst.phase !== "ready" || inst.endpoint?.port !== this.pool.endpointFor(key).port) {
        this.#ready(inst);
      }
    }
  }

  /**
   * Load and park again, one at a time (a restart is no time for a burst of
   * builds), the standbys whose process `slot` was replaced. A standby started
   * or dropped meanwhile is left alone: the check and the park's registration
   * happen in one turn after the load, so a start either ended the standby
   * before (skipped) or waits for the park and unparks it.
   */
  async #reloadStandbys(slot: string): Promise<void> {
    const keys = [...this.#standbys.keys()].filter(
      (key) => this.pool.endpointFor(key).slot === slot && !this.#parking.has(key),
    );
    const count = this.#metrics.isolateStandbyReloads;
    for (const key of keys) {
      if (!this.#standbys.has(key) || this.pool.moving(key)) {
        count.inc({ outcome: "skipped" });
        continue;
      }
      const loaded = await this.pool.load(key).catch(() => undefined);
      if (!loaded?.ok) {
        // Its next start builds it (and reports a failure then): nothing is lost.
        count.inc({ outcome: "failed" });
        continue;
      }
      if (!this.#standbys.has(key) || this.#parking.has(key)) {
        count.inc({ outcome: "skipped" });
        continue;
      }
      const parking = this.pool.park(key).finally(() => {
        if (this.#parking.get(key) === parking) this.#parking.delete(key);
      });
      this.#parking.set(key, parking);
      await parking;
      count.inc({ outcome: "parked" });
    }
  }

  /**
   * The endpoint is withdrawn already; in-flight requests keep their isolate
   * even after unregistering, so the wait only lets gateways notice. With
   * `standby` (a scale-down), a ready instance's revision may stay loaded.
   */
  async stop(inst: Instance, drainMs: number, options: { standby?: boolean } = {}): Promise<void> {
    const wait = Math.min(drainMs, inst.timeoutSeconds * 1000);
    if (wait > 0 && inst.endpoint) await new Promise((r) => setTimeout(r, wait));
    this.#release(inst, options.standby === true);
  }

  /** Whether the revision ("namespace/revision") is held as a standby now. */
  hasStandby(key: string): boolean {
    return this.#standbys.has(key);
  }

  /** Revision keys ("namespace/revision") held as standbys, oldest first. */
  standbyRevisions(): string[] {
    return [...this.#standbys.keys()];
  }

  /** Drop the standbys of revisions that no longer exist (`exists` asks the store). */
  async pruneStandbys(
    exists: (namespace: string, revision: string) => Promise<boolean>,
  ): Promise<void> {
    for (const key of [...this.#standbys.keys()]) {
      const slash = key.indexOf("/");
      if (!(await exists(key.slice(0, slash), key.slice(slash + 1)))) this.#dropStandby(key);
    }
  }

  #release(inst: Instance, standby = false): void {
    clearTimeout(this.#refusalTimers.get(inst));
    this.#refusalTimers.delete(inst);
    const key = inst.revisionKey;
    if (!key) return;
    const reg = this.#registrations.get(key);
    if (!reg) return;
    reg.instances.delete(inst);
    if (reg.instances.size > 0) return;
    const { retentionMs, maxStandbys } = this.#standby;
    // Only a revision that served (not one refused after stalls) is worth keeping.
    const keep =
      standby &&
      retentionMs > 0 &&
      maxStandbys > 0 &&
      inst.endpoint !== undefined &&
      this.pool.refusedUntil(key) === undefined;
    if (!keep) {
      this.#registrations.delete(key);
      this.pool.unregister(key);
      return;
    }
    this.#endStandby(key);
    const timer = setTimeout(() => this.#dropStandby(key), retentionMs);
    timer.unref();
    this.#standbys.set(key, timer);
    const parking = this.pool.park(key).finally(() => {
      if (this.#parking.get(key) === parking) this.#parking.delete(key);
    });
    this.#parking.set(key, parking);
    for (const oldest of this.#standbys.keys()) {
      if (this.#standbys.size <= maxStandbys) break;
      this.#dropStandby(oldest);
    }
  }

  /** The revision starts again: its standby (if any) becomes its registration. */
  #endStandby(key: string): boolean {
    const timer = this.#standbys.get(key);
    if (timer === undefined) return false;
    clearTimeout(timer);
    this.#standbys.delete(key);
    return true;
  }

  #dropStandby(key: string): void {
    if (!this.#endStandby(key)) return;
    const reg = this.#registrations.get(key);
    if (reg && reg.instances.size === 0) {
      this.#registrations.delete(key);
      this.pool.unregister(key);
    }
  }
}
