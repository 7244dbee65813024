/**
 * Isolate instances: a worker Revision's compiled bundle is registered with
 * the agent's WorkerdPool under "{ns}/{rev}"; every instance of that revision
 * on this agent shares the registration (and the pool endpoint). The pool's
 * stall/exit events take the affected revisions' endpoints out at once and
 * put the reason on the revisions at fault; a respawned process brings them
 * back.
 */
import type { Logger } from "../src/logging.ts";
import { Labels, type Revision } from "../src/model/types.ts";
import type { Store } from "../src/store/store.ts";
import { type Instance, type InstanceSink, StartError } from "./instance.ts";
import type { IsolateEvent, SpawnEvent, WorkerdPool } from "./isolate/index.ts";
import type { AgentMetrics } from "./metrics.ts";

export interface IsolateDriverOptions {
  pool: WorkerdPool;
  store: Pick<Store, "getArtifact">;
  sink: InstanceSink;
  metrics: AgentMetrics;
  logger: Logger;
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
  /** Loads of a revision's bundle in progress, shared by concurrent starts. */
  readonly #loading = new Map<string, Promise<void>>();

  constructor(options: IsolateDriverOptions) {
    this.pool = options.pool;
    this.#store = options.store;
    this.#sink = options.sink;
    this.#metrics = options.metrics;
    this.#log = options.logger;
    this.pool.on("stall", (e) => this.#onDown(e));
    this.pool.on("exit", (e) => this.#onDown(e));
    this.pool.on("spawn", (e) => this.#onSpawn(e));
    this.pool.on("recycle", (e) =>
      this.#log.info({ slot: e.slot, reason: e.reason }, "workerd process recycled"),
    );
  }

  async start(inst: Instance, revision: Revision): Promise<void> {
    const worker = revision.spec.worker;
    if (!worker) throw new Error(`revision ${revision.metadata.name} has no worker`);
    const { namespace, name } = revision.metadata;
    const key = revisionKeyOf(namespace, name);
    inst.revisionKey = key;
    inst.timeoutSeconds = revision.spec.timeoutSeconds;
    inst.containerConcurrency = revision.spec.containerConcurrency;
    this.#metrics.starts.inc({ runtime: "isolate" });
    // A concurrent stop of the last instance may unregister while we wait: load again then.
    let reg = this.#registrations.get(key);
    for (let i = 0; !reg && i < 3; i++) {
      let loading = this.#loading.get(key);
      if (!loading) {
        loading = this.#register(key, revision).finally(() => this.#loading.delete(key));
        this.#loading.set(key, loading);
      }
      await loading;
      reg = this.#registrations.get(key);
    }
    if (!reg) throw new Error(`revision ${key} could not be registered with the workerd pool`);
    reg.instances.add(inst);
    if (inst.stopping) return this.#release(inst);
    const ep = this.pool.endpointFor(key);
    inst.slot = ep.slot;
    if (this.#slotUp(ep.slot)) this.#ready(inst);
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
      throw new StartError(
        "ArtifactMissing",
        `the compiled bundle of worker revision "${name}" is missing from the store (${namespace}); redeploy the service to rebuild it`,
        { retryable: true },
      );
    }
    this.pool.register(key, {
      code,
      env: workerEnv(revision),
      network: worker?.network ?? "none",
      ...(worker?.compatibilityDate ? { compatibilityDate: worker.compatibilityDate } : {}),
      ...(worker?.compatibilityFlags ? { compatibilityFlags: worker.compatibilityFlags } : {}),
    });
    this.#registrations.set(key, { instances: new Set() });
  }

  #slotUp(slot: number): boolean {
    return this.pool.running && this.pool.stats()[slot]?.pid !== undefined;
  }

  #ready(inst: Instance): void {
    const key = inst.revisionKey as string;
    const ep = this.pool.endpointFor(key);
    this.#sink.ready(inst, {
      host: ep.host,
      port: ep.port,
      protocol: "http1",
      header: ep.header,
      containerConcurrency: inst.containerConcurrency,
    });
  }

  /** Instances served by one process slot. */
  #onSlot(slot: number): { key: string; inst: Instance }[] {
    const out: { key: string; inst: Instance }[] = [];
    for (const [key, reg] of this.#registrations) {
      for (const inst of reg.instances) if (inst.slot === slot) out.push({ key, inst });
    }
    return out;
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
    // Only a replacement after a stall or an exit brings withdrawn revisions back.
    if (e.cause !== "stall" && e.cause !== "exit") return;
    for (const { inst } of this.#onSlot(e.slot)) if (!inst.stopping) this.#ready(inst);
  }

  /**
   * The endpoint is withdrawn already; in-flight requests keep their isolate
   * even after unregistering, so the wait only lets gateways notice.
   */
  async stop(inst: Instance, drainMs: number): Promise<void> {
    const wait = Math.min(drainMs, inst.timeoutSeconds * 1000);
    if (wait > 0 && inst.endpoint) await new Promise((r) => setTimeout(r, wait));
    this.#release(inst);
  }

  #release(inst: Instance): void {
    const key = inst.revisionKey;
    if (!key) return;
    const reg = this.#registrations.get(key);
    if (!reg) return;
    reg.instances.delete(inst);
    if (reg.instances.size === 0) {
      this.#registrations.delete(key);
      this.pool.unregister(key);
    }
  }
}
