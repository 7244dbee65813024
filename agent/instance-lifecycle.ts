/**
 * The instances this agent holds, from start to stop: a reconcile pass's
 * decisions applied (start what is desired, stop what is not, retry failures
 * that may have gone away), each start launched on its runtime, each stop
 * withdrawn first, then drained and stopped, and a previous run's containers
 * adopted instead of duplicated.
 */
import { conditionForFailure } from "../src/control/revision-health.ts";
import type { DesiredInstance, RuntimeKind } from "../src/fleet/types.ts";
import type { Revision } from "../src/model/types.ts";
import type { RedisStore } from "../src/store/index.ts";
import type { ContainerDriver } from "./containers.ts";
import { InstanceError } from "./errors.ts";
import type { Capacity } from "./identity.ts";
import { type Failure, type Instance, newInstance } from "./instance.ts";
import { type InstancePhaseDeps, setPhase } from "./instance-phase.ts";
import type { IsolateDriver } from "./isolates.ts";
import type { AgentOptions } from "./options.ts";
import { planReconcile, type ReconcileReason } from "./reconcile.ts";

export interface InstanceLifecycleDeps extends InstancePhaseDeps {
  options: Pick<AgentOptions, "drainDelayMs" | "dockerSocket">;
  capacity: Capacity;
  /** The agent's books (the fleet mirror and the metrics read them too). */
  instances: Map<string, Instance>;
  containers: ContainerDriver | undefined;
  isolates: IsolateDriver | undefined;
  store: Pick<RedisStore, "get">;
  /** Queue the removal of a stopped instance's report. */
  removeReport(inst: Instance): Promise<void>;
  /** The agent runs (not starting, draining or stopped). */
  running(): boolean;
  /** An instance left the books: a later pass may start it again. */
  onStopped(): void;
}

export class InstanceLifecycle {
  readonly #d: InstanceLifecycleDeps;
  /** Containers of a previous run found dead: their failure goes on the instance started in their place. */
  readonly #foundDead = new Map<string, Failure & { at: number }>();

  constructor(deps: InstanceLifecycleDeps) {
    this.#d = deps;
  }

  /** Take over the containers of a previous run (none without a container runtime). */
  async adopt(): Promise<void> {
    const { containers, instances, log } = this.#d;
    if (!containers) return;
    const { running, exited } = await containers.adopt();
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
      instances.set(inst.id, inst);
      containers.attachAdopted(inst, a);
    }
    // Still desired, the instance starts again (a new container) and its report says how the last one ended.
    for (const e of exited) {
      this.#foundDead.set(e.instanceId, { reason: e.reason, message: e.message, at: Date.now() });
    }
    if (running.length || exited.length) {
      log.info(
        { running: running.map((a) => a.instanceId), exited: exited.map((e) => e.instanceId) },
        "adopted containers of a previous run",
      );
    }
  }

  /** Apply one pass: start and stop so that what the agent holds becomes `desired`. */
  reconcile(desired: readonly DesiredInstance[], reasons: ReconcileReason[]): void {
    const { instances, containers, log } = this.#d;
    const now = Date.now();
    const wanted = new Map(desired.map((d) => [d.id, d]));
    for (const inst of instances.values()) {
      // The scaler adopted a woken instance: from now on it is an instance like any other.
      if (inst.heldUntil !== undefined && wanted.has(inst.id)) inst.heldUntil = undefined;
    }
    const plan = planReconcile(
      desired,
      [...instances.values()].map((i) => ({
        id: i.id,
        stopping: i.stopping,
        held: i.heldUntil !== undefined && i.heldUntil > now,
      })),
    );
    for (const id of plan.stop) {
      const inst = instances.get(id);
      // No longer desired (a scale-down): a ready instance may stay as a standby.
      if (inst) void this.#stopInstance(inst, { standby: true });
    }
    if (plan.start.length > 0) {
      log.debug({ start: plan.start.map((d) => d.id), reasons }, "starting desired instances");
    }
    for (const d of plan.start) this.#startInstance(d);
    // Failures that may have gone away (revision created late, room freed) are retried now and then.
    if (reasons.some((r) => r !== "message" && r !== "event")) {
      const exists = async (ns: string, rev: string) =>
        (await this.readRevision(ns, rev)) !== undefined;
      for (const driver of [containers, this.#d.isolates]) {
        void driver
          ?.pruneStandbys(exists)
          .catch((err: unknown) => log.warn({ err }, "pruning standbys failed"));
      }
      void containers
        ?.reapOrphans()
        .catch((err: unknown) => log.warn({ err }, "reaping orphaned containers failed"));
      for (const inst of [...instances.values()]) {
        const d = wanted.get(inst.id);
        if (d && inst.phase === "failed" && inst.retryable && !inst.stopping) {
          instances.delete(inst.id);
          this.#startInstance(d, inst);
        }
      }
    }
    // Found dead at adoption but no longer desired: nothing reports on them.
    this.#foundDead.clear();
  }

  /** Withdraw every endpoint first (gateways stop sending before anything stops), then stop all. */
  async stopAll(): Promise<void> {
    const all = [...this.#d.instances.values()];
    for (const inst of all) this.#enterStopping(inst);
    await Promise.all(all.map((inst) => this.#d.push(inst)));
    await Promise.all(all.map((inst) => this.#stopInstance(inst)));
  }

  /** Free room for one more instance (the agent's maxInstances). */
  hasRoom(): boolean {
    return this.#active() < this.#d.capacity.maxInstances;
  }

  /** Instances held and not stopping: what counts against maxInstances. */
  #active(): number {
    let active = 0;
    for (const i of this.#d.instances.values()) if (!i.stopping) active++;
    return active;
  }

  /**
   * Start an instance no desired set names yet (a wake, src/fleet/wake.ts):
   * kept until `heldUntil` unless the scaler adopts it by then. `revision`:
   * read already (alongside the wake's claim), so the launch does not read it again.
   */
  startHeld(desired: DesiredInstance, heldUntil: number, revision?: Revision): void {
    if (this.#d.instances.has(desired.id)) return;
    this.#startInstance(desired, undefined, heldUntil, revision);
  }

  /** A revision as the store holds it now (instances launch from it). */
  readRevision(namespace: string, name: string): Promise<Revision | undefined> {
    return this.#d.store.get("revisions", namespace, name);
  }

  /** `previous`: a failed instance retried; it keeps its report until the outcome differs. */
  #startInstance(
    desired: DesiredInstance,
    previous?: Instance,
    heldUntil?: number,
    revision?: Revision,
  ): void {
    const { instances, capacity } = this.#d;
    const inst = newInstance(desired);
    if (heldUntil !== undefined) inst.heldUntil = heldUntil;
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
    instances.set(inst.id, inst);
    if (this.#active() > capacity.maxInstances) {
      setPhase(this.#d, inst, "failed", {
        reason: "AgentFull",
        message: `agent ${this.#d.agentId} already runs its maximum of ${capacity.maxInstances} instances; place this one elsewhere`,
      });
      inst.retryable = true;
      return;
    }
    if (!previous) void this.#d.push(inst);
    void this.#launch(inst, revision);
  }

  async #launch(inst: Instance, read?: Revision): Promise<void> {
    const { namespace, revision: name, runtime } = inst.desired;
    try {
      const revision = read ?? (await this.readRevision(namespace, name));
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
        if (!this.#d.containers) {
          throw new InstanceError(
            {
              reason: "RuntimeUnavailable",
              message: `agent ${this.#d.agentId} offers no container runtime (no Docker engine answered at ${this.#d.options.dockerSocket})`,
            },
            { instanceId: inst.id, retryable: true, health: false },
          );
        }
        this.#d.containers.start(inst, revision);
      } else {
        await this.#d.isolates?.start(inst, revision);
      }
    } catch (err) {
      if (inst.stopping) return;
      const failure =
        err instanceof InstanceError
          ? { reason: err.failure.reason, message: err.failure.message }
          : { reason: "StartFailed", message: (err as Error)?.message ?? String(err) };
      inst.retryable = err instanceof InstanceError && err.retryable;
      const health = !(err instanceof InstanceError) || err.health;
      if (!setPhase(this.#d, inst, "failed", failure, health)) return; // a retry that failed the same way
      this.#d.metrics.failures.inc({ runtime, reason: failure.reason });
    }
  }

  #enterStopping(inst: Instance): void {
    if (inst.stopping) return;
    inst.drainOnStop = inst.phase === "ready";
    inst.stopping = true;
    setPhase(this.#d, inst, "stopping");
  }

  /** Withdraw first, then drain and stop; the instance leaves the agent's books when done. */
  #stopInstance(inst: Instance, options: { standby?: boolean } = {}): Promise<void> {
    const d = this.#d;
    this.#enterStopping(inst);
    inst.stopped ??= (async () => {
      await d.push(inst);
      // Only an instance that was routable has requests to drain.
      const drainMs = inst.drainOnStop ? d.options.drainDelayMs : 0;
      try {
        const standby = options.standby === true && inst.drainOnStop;
        if (inst.desired.runtime === "container")
          await d.containers?.stop(inst, drainMs, { standby });
        else await d.isolates?.stop(inst, drainMs, { standby });
      } catch (err) {
        d.log.warn({ err, instance: inst.id }, "stopping instance failed");
      }
      if (d.instances.get(inst.id) === inst) d.instances.delete(inst.id);
      await d.removeReport(inst);
      d.log.info({ instance: inst.id, revision: inst.desired.revision }, "instance stopped");
      // It may be desired again (a later pass starts it now that it is gone).
      if (d.running()) d.onStopped();
    })();
    return inst.stopped;
  }
}
