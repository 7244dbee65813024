/**
 * ContainerRuntime: runs revision instances as Docker containers on one host.
 *
 * Networking: every instance has its own network namespace on the cluster's
 * bridge (network.ts; inter-container traffic off) and listens on its declared
 * containerPort (PORT, default 8080, as in Knative). The runtime publishes
 * that port on the agent's data address at a host port it allocates, and that
 * is the endpoint gateways use; no traffic ever goes to a bridge address.
 * Inside, 127.0.0.1 is the container itself: the host's Redis, admin ports and
 * workerd sockets are out of reach. Every container carries the cluster id and
 * the agent id as labels; only containers with both are adopted or stopped.
 *
 * Lifecycle: start() resolves only once the readiness probe passes; a later
 * unexpected exit is reported by an "exit" event at once (from one Docker
 * events subscription) with a readable reason. A ready instance is probed on
 * (the probe's periodSeconds/failureThreshold/successThreshold, else every
 * readyProbePeriodMs, 3 failures, 1 success); a change is a "readiness" event
 * and the container is left running (the caller withdraws its endpoint). stop() drains, then SIGTERM,
 * grace, SIGKILL, remove. adopt() picks up the containers of a previous run of
 * the same agent (by labels). Restart policy is the caller's (see supervise.ts).
 *
 * This class is the facade; each idea is a module beside it: starting.ts (cold
 * starts), sandboxes.ts (network namespaces started ahead of need),
 * standby-pool.ts (paused standbys), readiness.ts (probing),
 * exits.ts (exit watching), stopping.ts, adoption.ts, instances.ts (what is
 * tracked), owned.ts (this owner's containers on the engine).
 */
import { EventEmitter } from "node:events";
import Docker from "dockerode";
import pLimit from "p-limit";
import { SkiffError, UnavailableError } from "../../src/errors.ts";
import { InstanceError } from "../errors.ts";
import { adoptContainers } from "./adoption.ts";
import type { RuntimeContext } from "./context.ts";
import { dockerMessage } from "./docker-errors.ts";
import { ContainerEvents } from "./events.ts";
import { ExitWatcher } from "./exits.ts";
import { ImageResolver } from "./images.ts";
import { InstanceTable } from "./instances.ts";
import { ClusterNetwork } from "./network.ts";
import { OwnedContainers } from "./owned.ts";
import { PortAllocator } from "./ports.ts";
import { ReadinessProber } from "./readiness.ts";
import {
  type ContainerRuntimeOptions,
  ContainerRuntimeOptionsSchema,
  type RuntimeOptions,
} from "./runtime-options.ts";
import type {
  AdoptResult,
  InstanceInfo,
  RuntimeEvents,
  StandbyInfo,
  StartedInstance,
  StopOptions,
} from "./runtime-types.ts";
import { SandboxPool } from "./sandboxes.ts";
import { type InstanceSpecInput, InstanceSpecSchema, parseWith } from "./spec.ts";
import { StandbyPool } from "./standby-pool.ts";
import { ColdStarter } from "./starting.ts";
import { Stopper } from "./stopping.ts";

export type { ContainerRuntimeOptions } from "./runtime-options.ts";
export type {
  AdoptResult,
  ExitEvent,
  ReadinessEvent,
  StartedInstance,
  StartTimings,
  StopOptions,
} from "./runtime-types.ts";

export class ContainerRuntime extends EventEmitter<RuntimeEvents> {
  readonly options: Readonly<RuntimeOptions>;
  readonly docker: Docker;
  readonly #ctx: RuntimeContext;
  readonly #starter: ColdStarter;
  #closed = false;

  constructor(options: ContainerRuntimeOptions = {}) {
    super();
    const o = parseWith(ContainerRuntimeOptionsSchema, options, {
      kind: "ContainerRuntimeOptions",
    });
    this.options = o;
    this.docker = o.docker ?? new Docker({ socketPath: o.socketPath });
    // The parts are filled in below, before any of them is called.
    const base: Partial<RuntimeContext> = {
      options: o,
      docker: this.docker,
      emitter: this,
      ports: new PortAllocator(o.dataAddress, o.portRange),
      images: new ImageResolver(this.docker, {
        registries: o.registries,
        pullTimeoutMs: o.pullTimeoutMs,
        reachTimeoutMs: o.reachTimeoutMs,
        onProgress: (instanceId, message) => this.emit("pulling", { instanceId, message }),
      }),
      closed: () => this.#closed,
      startGate: pLimit(o.startConcurrency),
    };
    const ctx = base as RuntimeContext;
    ctx.owned = new OwnedContainers(ctx);
    const keys = ctx.owned.keys;
    ctx.network = new ClusterNetwork(this.docker, {
      name: o.networkName ?? `skiff-${o.clusterId}`,
      labels: { [keys.managed]: "true", [keys.cluster]: o.clusterId },
      ...(o.firewall ? { firewall: o.firewall } : {}),
    });
    ctx.events = new ContainerEvents(this.docker, [
      `${keys.cluster}=${o.clusterId}`,
      `${keys.owner}=${o.owner}`,
    ]);
    ctx.table = new InstanceTable(ctx);
    ctx.exits = new ExitWatcher(ctx);
    ctx.readiness = new ReadinessProber(ctx);
    ctx.standbys = new StandbyPool(ctx);
    ctx.sandboxes = new SandboxPool(ctx);
    ctx.stopper = new Stopper(ctx);
    this.#ctx = ctx;
    this.#starter = new ColdStarter(ctx);
  }

  /** Whether the Docker engine answers (for the agent's advertised runtimes). */
  async available(timeoutMs = 2_000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.docker.ping().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs);
        }),
      ]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Create and start one instance (or resume a standby of the same spec);
   * resolves once it passes readiness. Rejects with InstanceError.
   */
  async start(input: InstanceSpecInput): Promise<StartedInstance> {
    if (this.#closed) throw new UnavailableError("ContainerRuntime is closed");
    const spec = parseWith(InstanceSpecSchema, input, {
      kind: "Instance",
      ...(typeof input?.instanceId === "string" ? { name: input.instanceId } : {}),
    });
    const id = spec.instanceId;
    const { table, standbys } = this.#ctx;
    table.claim(id);
    try {
      const standby = standbys.take(spec);
      if (standby) {
        const resumed = await standbys.resume(spec, standby);
        if (resumed) return resumed;
      }
      return await this.#starter.start(spec);
    } catch (err) {
      if (err instanceof SkiffError) throw err;
      // The engine itself failed us (socket gone, daemon error): still a readable start failure.
      throw new InstanceError(
        { reason: "StartFailed", message: `docker engine error: ${dockerMessage(err)}` },
        { instanceId: id, cause: err },
      );
    } finally {
      table.release(id);
    }
  }

  /**
   * Stop an instance: the caller has already withdrawn its endpoint. Waits for
   * `drained` (or `drainMs`), bounded by the revision's timeoutSeconds, then
   * docker stop (SIGTERM, grace, SIGKILL) and remove, or pauses it as a
   * standby. Idempotent; an instance this runtime does not track is still
   * stopped if a container of this owner carries its id.
   */
  stop(instanceId: string, options: StopOptions = {}): Promise<void> {
    return this.#ctx.stopper.stop(instanceId, options);
  }

  /**
   * After an agent restart: take over this owner's containers (adoption.ts).
   * Attach the "exit" listener first: an adopted instance that dies during
   * adopt() is reported as an exit event, not in the result.
   */
  adopt(): Promise<AdoptResult> {
    if (this.#closed) return Promise.reject(new UnavailableError("ContainerRuntime is closed"));
    return adoptContainers(this.#ctx);
  }

  /** The instances this runtime tracks now. */
  list(): InstanceInfo[] {
    const { table } = this.#ctx;
    return [...table.byId.values()].map((t) => table.info(t));
  }

  get(instanceId: string): InstanceInfo | undefined {
    const { table } = this.#ctx;
    const t = table.byId.get(instanceId);
    return t && table.info(t);
  }

  /** The paused standbys this runtime holds. */
  standbys(): StandbyInfo[] {
    return this.#ctx.standbys.list();
  }

  /** Remove every standby, or those `which` picks (e.g. of a deleted revision). */
  removeStandbys(which?: (s: StandbyInfo) => boolean): Promise<void> {
    return this.#ctx.standbys.remove(which);
  }

  /** Network sandboxes started and not yet given to an instance. */
  readySandboxes(): number {
    return this.#ctx.sandboxes.ready;
  }

  /** Other agents' containers of this cluster, counted by owner (orphan reaping). */
  otherOwners(): Promise<Map<string, number>> {
    return this.#ctx.owned.otherOwners();
  }

  /** Force-remove every container of this cluster owned by agent `owner` (never this one). */
  removeOwnedBy(owner: string): Promise<number> {
    return this.#ctx.owned.removeOwnedBy(owner);
  }

  /** The cluster's bridge network name. */
  get networkName(): string {
    return this.#ctx.network.name;
  }

  /**
   * Stop watching and probing. Instances keep running (a new runtime can
   * adopt them), ready network sandboxes are removed; the bridge is removed
   * only if no container is attached.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const { events, standbys, table, network } = this.#ctx;
    events.close();
    // Standbys stay paused for the next run to adopt (or remove). Ready sandboxes
    // hold nothing worth keeping (the next run refills): removed, so an unused
    // bridge can go below.
    standbys.close();
    await this.#ctx.sandboxes.removeReady();
    for (const t of table.byId.values()) {
      clearTimeout(t.probeTimer);
      t.interrupt();
    }
    if (this.options.removeNetworkOnClose && this.#starter.networkUsed) {
      await network.removeIfUnused();
    }
  }
}
