/**
 * Container instances: a Revision becomes an InstanceSpec for the
 * ContainerRuntime, kept running by `supervise` (restart with backoff); what
 * the runtime and the supervisor see is told to the agent through its sink.
 * Containers a previous run of this agent left running are adopted (they
 * carry their spec in labels) and supervised from their next exit on.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { CONTAINER_MISSING, PULLING_IMAGE } from "../src/control/revision-health.ts";
import { MAX_REPORTED_STANDBYS } from "../src/fleet/schemas.ts";
import type { Logger } from "../src/logging.ts";
import { getCondition } from "../src/model/index.ts";
import { Labels, type Revision } from "../src/model/types.ts";
import {
  type AdoptResult,
  type ContainerRuntime,
  type ExitEvent,
  type ReadinessEvent,
  type SupervisorStatus,
  supervise,
} from "./container/index.ts";
import type { InstanceSpecInput } from "./container/spec.ts";
import { InstanceError, type InstanceFailure } from "./errors.ts";
import type { Instance, InstanceSink } from "./instance.ts";
import type { AgentMetrics } from "./metrics.ts";
import { OrphanReaper, type OrphanReaperOptions } from "./orphans.ts";

export interface ContainerDriverOptions {
  runtime: ContainerRuntime;
  sink: InstanceSink;
  metrics: AgentMetrics;
  backoff: { initialMs: number; maxMs: number };
  logger: Logger;
  /** Where the standby gauge and resume counter are registered (none: not exported). */
  registry?: Registry;
  /** Reap dead agents' containers of this cluster (orphans.ts); none: never reaped. */
  orphans?: Pick<OrphanReaperOptions, "isAlive" | "graceMs">;
}

/** The runtime contract's view of a Revision: what one of its containers runs. */
export function containerSpecFor(instanceId: string, revision: Revision): InstanceSpecInput {
  const container = revision.spec.containers?.[0];
  if (!container) {
    throw new InstanceError({
      reason: "StartFailed",
      message: `revision ${revision.metadata.name} has no container`,
    });
  }
  // Knative's tag-to-digest resolution: the digest recorded when the revision
  // was created is what runs, wherever the tag points now.
  const pinned = revision.status.containerStatuses?.[0]?.imageDigest;
  const missing = getCondition(revision.status.conditions, "ContainerHealthy");
  if (!pinned && missing?.status === "False" && missing.reason === CONTAINER_MISSING) {
    throw new InstanceError({ reason: CONTAINER_MISSING, message: missing.message ?? "" });
  }
  const labels = revision.metadata.labels ?? {};
  const spec: InstanceSpecInput = {
    instanceId,
    namespace: revision.metadata.namespace,
    configuration: labels[Labels.configuration] ?? revision.metadata.name,
    revision: revision.metadata.name,
    container: pinned ? { ...container, image: pinned } : container,
    containerConcurrency: revision.spec.containerConcurrency,
    timeoutSeconds: revision.spec.timeoutSeconds,
  };
  const service = labels[Labels.service];
  if (service) spec.service = service;
  return spec;
}

export class ContainerDriver {
  readonly runtime: ContainerRuntime;
  readonly #sink: InstanceSink;
  readonly #metrics: AgentMetrics;
  readonly #backoff: { initialMs: number; maxMs: number };
  readonly #log: Logger;
  /** Instances by id, for the runtime's events. */
  readonly #byId = new Map<string, Instance>();
  readonly #resumes: Counter | undefined;
  readonly #coldStarts: Counter<"sandbox"> | undefined;
  readonly #reaper: OrphanReaper | undefined;

  constructor(options: ContainerDriverOptions) {
    this.runtime = options.runtime;
    if (options.orphans) {
      this.#reaper = new OrphanReaper({
        ...options.orphans,
        runtime: options.runtime,
        logger: options.logger,
      });
    }
    this.#sink = options.sink;
    this.#metrics = options.metrics;
    this.#backoff = options.backoff;
    this.#log = options.logger;
    // One exit listener per supervised instance: hundreds are expected, not a leak.
    this.runtime.setMaxListeners(0);
    this.runtime.on("exit", (e) => this.#onExit(e));
    this.runtime.on("readiness", (e) => this.#onReadiness(e));
    this.runtime.on("pulling", (e) => {
      const inst = this.#byId.get(e.instanceId);
      if (inst && !inst.stopping) {
        this.#sink.starting(inst, { reason: PULLING_IMAGE, message: e.message });
      }
    });
    this.runtime.on("warning", (err) => this.#log.warn({ err }, "container runtime warning"));
    this.runtime.on("standby", (e) => {
      if (e.change === "resumed") this.#resumes?.inc();
      this.#log.debug(e, "container standby");
    });
    const registry = options.registry;
    if (registry) {
      const runtime = this.runtime;
      if (!registry.getSingleMetric("skiff_agent_container_standbys")) {
        new Gauge({
          name: "skiff_agent_container_standbys",
          help: "Paused container standbys this agent holds (not instances: no endpoint, not capacity)",
          registers: [registry],
          collect() {
            this.set(runtime.standbys().length);
          },
        });
      }
      if (!registry.getSingleMetric("skiff_agent_container_sandboxes")) {
        new Gauge({
          name: "skiff_agent_container_sandboxes",
          help: "Network sandboxes started ahead of need and not yet given to an instance (agent.containerSandboxes)",
          registers: [registry],
          collect() {
            this.set(runtime.readySandboxes());
          },
        });
      }
      this.#coldStarts =
        (registry.getSingleMetric("skiff_agent_container_cold_starts_total") as
          | Counter<"sandbox">
          | undefined) ??
        new Counter({
          name: "skiff_agent_container_cold_starts_total",
          help: "Container instances started as new containers (not resumed standbys), by sandbox: joined a ready network sandbox, or none was ready (many of those: raise agent.containerSandboxes.count)",
          labelNames: ["sandbox"],
          registers: [registry],
        });
      this.#resumes =
        (registry.getSingleMetric("skiff_agent_container_resumes_total") as Counter | undefined) ??
        new Counter({
          name: "skiff_agent_container_resumes_total",
          help: "Container instances started by resuming a paused standby",
          registers: [registry],
        });
    }
  }

  /**
   * The revisions ("namespace/revision", sorted, at most MAX_REPORTED_STANDBYS)
   * this agent holds a paused standby of: the scaler places there first.
   */
  standbyRevisions(): string[] {
    const refs = new Set(this.runtime.standbys().map((s) => `${s.namespace}/${s.revision}`));
    return [...refs].sort().slice(0, MAX_REPORTED_STANDBYS);
  }

  /** Network sandboxes ready for cold starts (the agent record reports them to placement). */
  readySandboxes(): number {
    return this.runtime.readySandboxes();
  }

  /** Remove every paused standby (the agent leaves for good). */
  removeStandbys(): Promise<void> {
    return this.runtime.removeStandbys();
  }

  /**
   * Remove the standbys of revisions that no longer exist (`exists` asks the
   * store): nothing would ever resume them, and they hold memory.
   */
  async pruneStandbys(
    exists: (namespace: string, revision: string) => Promise<boolean>,
  ): Promise<void> {
    const refs = new Map(this.runtime.standbys().map((s) => [`${s.namespace}/${s.revision}`, s]));
    const gone = new Set<string>();
    for (const [ref, s] of refs) if (!(await exists(s.namespace, s.revision))) gone.add(ref);
    if (gone.size)
      await this.runtime.removeStandbys((s) => gone.has(`${s.namespace}/${s.revision}`));
  }

  /**
   * One orphan check (on the periodic resync): removes the containers of
   * owners seen without a heartbeat for the grace. Resolves to those owners.
   */
  reapOrphans(): Promise<string[]> {
    return this.#reaper?.sweep() ?? Promise.resolve([]);
  }

  /** Take over the containers a previous run left (call once, before reconciling). */
  adopt(): Promise<AdoptResult> {
    return this.runtime.adopt();
  }

  /** Track an adopted container as `inst`; it is routable as soon as it probes ready. */
  attachAdopted(inst: Instance, adopted: AdoptResult["running"][number]): void {
    inst.adopted = true;
    inst.spec = adopted.spec;
    inst.timeoutSeconds = adopted.spec.timeoutSeconds;
    inst.containerConcurrency = adopted.spec.containerConcurrency;
    this.#byId.set(inst.id, inst);
    if (adopted.ready) {
      this.#sink.ready(inst, {
        host: adopted.host,
        port: adopted.port,
        protocol: adopted.protocol,
        containerConcurrency: inst.containerConcurrency,
      });
    } else {
      this.#sink.starting(inst, {
        reason: "Adopted",
        message: "adopted after an agent restart; waiting for its readiness probe",
      });
    }
  }

  start(inst: Instance, revision: Revision): void {
    const spec = containerSpecFor(inst.id, revision);
    inst.spec = spec;
    inst.timeoutSeconds = revision.spec.timeoutSeconds;
    inst.containerConcurrency = revision.spec.containerConcurrency;
    this.#byId.set(inst.id, inst);
    this.#supervise(inst, spec);
  }

  #supervise(inst: Instance, spec: InstanceSpecInput): void {
    const base = inst.restarts;
    inst.supervisor = supervise(this.runtime, spec, {
      initialBackoffMs: this.#backoff.initialMs,
      maxBackoffMs: this.#backoff.maxMs,
      onStatus: (s) => this.#onStatus(inst, s, base),
    });
    inst.supervisor.done.catch((err: unknown) =>
      this.#log.error({ err, instance: inst.id }, "container supervisor failed"),
    );
  }

  #onStatus(inst: Instance, s: SupervisorStatus, base: number): void {
    if (inst.stopping) return;
    switch (s.state) {
      case "starting":
        this.#metrics.starts.inc({ runtime: "container" });
        inst.restarts = base + s.attempt - 1;
        this.#sink.starting(inst);
        return;
      case "ready":
        if (!s.instance.resumed) {
          this.#coldStarts?.inc({ sandbox: s.instance.sandboxed ? "joined" : "none" });
        }
        // Where a start's time went (gate queue, create, docker start, readiness): for profiling bursts.
        this.#log.debug(
          {
            instance: inst.id,
            revision: inst.desired.revision,
            resumed: s.instance.resumed ?? false,
            sandboxed: s.instance.sandboxed ?? false,
            ...s.instance.timings,
          },
          "container started",
        );
        this.#sink.ready(
          inst,
          {
            host: s.instance.host,
            port: s.instance.port,
            protocol: s.instance.protocol,
            containerConcurrency: inst.containerConcurrency,
          },
          s.instance.image.digest ? { imageDigest: s.instance.image.digest } : {},
        );
        return;
      case "backoff":
        this.#fail(inst, "backoff", s.failure);
        return;
      case "stopped":
        if (s.failure) this.#fail(inst, "failed", s.failure);
        return;
    }
  }

  #fail(inst: Instance, phase: "backoff" | "failed", failure: InstanceFailure): void {
    this.#metrics.failures.inc({ runtime: "container", reason: failure.reason });
    this.#sink.failed(inst, phase, { reason: failure.reason, message: failure.message });
  }

  /** Supervised instances learn of exits from their supervisor; adopted ones from here. */
  #onExit(e: ExitEvent): void {
    const inst = this.#byId.get(e.instanceId);
    if (!inst || inst.supervisor || inst.stopping || !inst.spec) return;
    this.#fail(inst, "backoff", e);
    const spec = inst.spec;
    inst.restartTimer = setTimeout(() => {
      inst.restartTimer = undefined;
      if (inst.stopping) return;
      inst.restarts += 1;
      this.#supervise(inst, spec);
    }, this.#backoff.initialMs);
  }

  #onReadiness(e: ReadinessEvent): void {
    const inst = this.#byId.get(e.instanceId);
    if (!inst || inst.stopping) return;
    if (!e.ready) {
      this.#sink.starting(inst, { reason: "ReadinessProbeFailed", message: e.message });
      return;
    }
    const info = this.runtime.get(inst.id);
    if (!info) return;
    this.#sink.ready(inst, {
      host: info.host,
      port: info.port,
      protocol: info.protocol,
      containerConcurrency: inst.containerConcurrency,
    });
  }

  /**
   * The endpoint is withdrawn already: give gateways `drainMs` (bounded by
   * timeoutSeconds in the runtime), then SIGTERM, grace, SIGKILL, remove; or,
   * with `standby` (a scale-down), pause it as a standby for a later start.
   */
  async stop(inst: Instance, drainMs: number, options: { standby?: boolean } = {}): Promise<void> {
    clearTimeout(inst.restartTimer);
    const stop = { drainMs, ...(options.standby ? { standby: true } : {}) };
    try {
      if (inst.supervisor) await inst.supervisor.stop(stop);
      else if (inst.spec) await this.runtime.stop(inst.id, stop);
    } finally {
      this.#byId.delete(inst.id);
    }
  }

  async close(): Promise<void> {
    await this.runtime.close();
  }
}
