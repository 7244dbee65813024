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
 */
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import Docker from "dockerode";
import { z } from "zod";
import { AlreadyExistsError, SkiffError } from "../../src/errors.ts";
import { dockerMessage, dockerStatus, InstanceError, type InstanceFailure } from "./errors.ts";
import { ContainerEvents } from "./events.ts";
import { ImageResolver, type ResolvedImage } from "./images.ts";
import { tailLogs } from "./logs.ts";
import { ClusterNetwork, isNetworkGone, isPortTaken } from "./network.ts";
import { PortAllocator } from "./ports.ts";
import { describeTarget, type ProbeTarget, probeCheck, probeOnce, probeTarget } from "./probe.ts";
import {
  buildCreateOptions,
  declaredPort,
  type InstanceSpec,
  type InstanceSpecInput,
  InstanceSpecSchema,
  labelKeys,
  parseWith,
  protocolOf,
} from "./spec.ts";
import { memoryAvailable, StandbyOptionsSchema, standbyKey } from "./standby.ts";

const port = z.number().int().min(1).max(65535);

export const ContainerRuntimeOptionsSchema = z.object({
  /** A dockerode instance; when absent one is made for `socketPath`. */
  docker: z
    .custom<Docker>(
      (v) => typeof v === "object" && v !== null && "createContainer" in v,
      "must be a dockerode instance",
    )
    .optional(),
  socketPath: z.string().min(1).default("/var/run/docker.sock"),
  /** The install's id (src/cluster.ts): names the bridge and labels every container. */
  clusterId: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]{0,40}$/, "use 1-41 lower-case letters, digits, '_', '.', '-'")
    .default("default"),
  /** The cluster's bridge network; default `skiff-<clusterId>`. */
  networkName: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/)
    .optional(),
  /**
   * Host firewall rules for the bridge (firewall.ts): containers may not reach
   * this host's own addresses nor `blockCidrs` (the fleet's control network).
   * Needs root and iptables; absent: no rules (single host: loopback is hidden anyway).
   */
  firewall: z
    .object({
      blockCidrs: z.array(z.cidrv4("use IPv4 CIDRs such as 10.0.0.0/24")).default([]),
      iptables: z.string().min(1).optional(),
    })
    .optional(),
  /** On close(), remove the bridge when no container is attached any more (Docker refuses otherwise). */
  removeNetworkOnClose: z.boolean().default(true),
  /** The agent's id: labels every container so that agents sharing an engine never adopt each other's. */
  owner: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "use letters, digits, '_', '.', '-'")
    .default("skiff"),
  /** Address the instances' ports are published on and gateways connect to (loopback in tests). */
  dataAddress: z.ipv4().default("127.0.0.1"),
  /** Serving ports are allocated from here; keep it clear of the ephemeral range (32768+). */
  portRange: z
    .object({ min: port, max: port })
    .refine((r) => r.min <= r.max, "min must not exceed max")
    .default({ min: 20000, max: 29999 }),
  labelPrefix: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]*\.$/, 'use a lower-case prefix ending in ".", e.g. "skiff."')
    .default("skiff."),
  /** Container names are `${namePrefix}${clusterId}-${instanceId}` (unique per install on an engine). */
  namePrefix: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/)
    .default("skiff-"),
  /** Pull missing images from here; without it only local images are used. */
  registry: z
    .object({
      address: z.string().min(1),
      username: z.string().optional(),
      password: z.string().optional(),
      insecure: z.boolean().default(false),
      pullTimeoutMs: z.number().int().positive().default(300_000),
      reachTimeoutMs: z.number().int().positive().default(2_000),
    })
    .optional(),
  /** SIGTERM -> SIGKILL grace on stop; default: the revision's timeoutSeconds (Knative). */
  stopGraceSeconds: z.number().int().min(0).optional(),
  /** A container not ready within this long is removed and start() fails. */
  startupTimeoutMs: z.number().int().positive().default(60_000),
  /** Probe period until first ready (Knative: 50 ms; tens of ms keeps cold starts short). */
  probeIntervalMs: z.number().int().min(1).max(1_000).default(10),
  /** Per-probe timeout unless the probe sets timeoutSeconds. */
  probeTimeoutMs: z.number().int().positive().default(1_000),
  /**
   * Probe period once ready, unless the probe sets periodSeconds. Kubernetes'
   * 10 s would leave an instance that stops answering its probe routable for
   * up to 30 s (failureThreshold 3); 1 s withdraws it within about 3 s, for one
   * small request per second per instance.
   */
  readyProbePeriodMs: z.number().int().positive().default(1_000),
  /**
   * Fallback TCP probe only (the container's netns cannot be read): a connection
   * through the published port that stays open this long counts as accepted.
   */
  probeSettleMs: z.number().int().min(1).max(5_000).default(250),
  /** Probe TCP readiness inside the container's netns when this host's /proc shows it (false: always the fallback). */
  probeNetns: z.boolean().default(true),
  /**
   * Capabilities added to every container on top of what its spec needs
   * (all are dropped; NET_BIND_SERVICE comes back for a port below 1024).
   */
  capAdd: z.array(z.string().regex(/^[A-Za-z_]+$/)).default([]),
  pidsLimit: z.number().int().positive().default(4096),
  /** Size of the /tmp tmpfs ("64m"); default: the kernel's (counted against the memory limit). */
  tmpfsSize: z.string().optional(),
  logMaxSize: z.string().default("10m"),
  /** Log lines quoted in failure messages. */
  logTailLines: z.number().int().min(0).max(1000).default(20),
  /** Remove a container once its exit has been reported (logs are quoted in the message first). */
  removeExited: z.boolean().default(true),
  /**
   * Paused standbys (standby.ts): an instance stopped with `standby: true` is
   * paused (no CPU; memory, netns and published port kept) instead of removed,
   * and a later start() of the same spec under a new instance id resumes it.
   */
  standby: StandbyOptionsSchema,
});

export type ContainerRuntimeOptions = z.input<typeof ContainerRuntimeOptionsSchema>;
type Options = z.output<typeof ContainerRuntimeOptionsSchema>;

export interface Endpoint {
  host: string;
  port: number;
  protocol: "http1" | "h2c";
}

export interface StartTimings {
  /** Local image lookup (and pull, if any). */
  imageMs: number;
  /** Port allocation and docker create. */
  createMs: number;
  /** docker start. */
  startMs: number;
  /** From started to the first passing readiness probe. */
  readyMs: number;
  totalMs: number;
}

export interface StartedInstance extends Endpoint {
  instanceId: string;
  containerId: string;
  image: ResolvedImage;
  timings: StartTimings;
  /** A paused standby was resumed (no container created; timings.startMs is the unpause). */
  resumed?: boolean;
}

/** A paused container kept for a later start() of the same spec. */
export interface StandbyInfo extends Endpoint {
  containerId: string;
  namespace: string;
  revision: string;
  /** ms since epoch it was paused (or adopted as a standby). */
  pausedAt: number;
}

/** An instance that had been ready (or adopted) exited without stop(). */
export interface ExitEvent extends InstanceFailure {
  instanceId: string;
  containerId: string;
  namespace: string;
  revision: string;
}

export interface ReadinessEvent {
  instanceId: string;
  revision: string;
  ready: boolean;
  message: string;
}

export interface AdoptedInstance extends Endpoint {
  instanceId: string;
  containerId: string;
  spec: InstanceSpec;
  imageId: string;
  /** Whether one probe just now passed (periodic probing continues either way). */
  ready: boolean;
}

export interface AdoptResult {
  running: AdoptedInstance[];
  /** Containers of this owner found dead: reported (and removed when removeExited). */
  exited: ExitEvent[];
}

export interface StopOptions {
  /** Resolves when the caller knows in-flight requests are done (e.g. from the gateway). */
  drained?: PromiseLike<unknown>;
  /** Without `drained`: wait this long before SIGTERM (default 0). */
  drainMs?: number;
  /** SIGTERM -> SIGKILL grace; default options.stopGraceSeconds, else the spec's timeoutSeconds. */
  graceSeconds?: number;
  /**
   * After the drain, pause the container as a standby instead of stopping it
   * (when it was ready, standbys are on and memory allows; else a normal stop).
   */
  standby?: boolean;
}

export type InstanceState = "starting" | "ready" | "unready" | "stopping";

export interface InstanceInfo extends Endpoint {
  instanceId: string;
  containerId: string;
  state: InstanceState;
  namespace: string;
  revision: string;
}

export interface RuntimeEvents {
  exit: [ExitEvent];
  readiness: [ReadinessEvent];
  /** Something went wrong in the background (events stream lost, removal failed). */
  warning: [Error];
  /** A standby was paused, resumed or removed (the count changed). */
  standby: [{ change: "paused" | "resumed" | "removed"; containerId: string; reason?: string }];
}

interface Standby extends StandbyInfo {
  key: string;
  imageId: string;
  pid?: number;
  timer?: NodeJS.Timeout;
}

interface Tracked extends Endpoint {
  spec: InstanceSpec;
  containerId: string;
  state: InstanceState;
  failure?: InstanceFailure;
  dying: boolean;
  forgotten: boolean;
  oomSeen: boolean;
  /** Settles when the container exited or stop() was called: wakes the readiness loop. */
  interrupted: Promise<void>;
  interrupt: () => void;
  probeTimer?: NodeJS.Timeout;
  stopping?: Promise<void>;
  /** The container's main process on this host, once seen running (for netns probes). */
  pid?: number;
  /** The image it runs (kept on a standby: a resume must run what the spec resolves to now). */
  imageId?: string;
}

export class ContainerRuntime extends EventEmitter<RuntimeEvents> {
  readonly options: Readonly<Options>;
  readonly docker: Docker;
  readonly #keys: ReturnType<typeof labelKeys>;
  readonly #ports: PortAllocator;
  readonly #images: ImageResolver;
  readonly #events: ContainerEvents;
  readonly #network: ClusterNetwork;
  #networkUsed = false;
  readonly #byId = new Map<string, Tracked>();
  readonly #byContainer = new Map<string, Tracked>();
  readonly #claimed = new Set<string>();
  /** stop() calls for instances whose start() has not tracked a container yet. */
  readonly #pendingStops = new Map<string, { options: StopOptions; done: () => void }>();
  /** Paused standbys by container id (their ports stay reserved). */
  readonly #standbys = new Map<string, Standby>();
  #closed = false;

  constructor(options: ContainerRuntimeOptions = {}) {
    super();
    this.options = parseWith(ContainerRuntimeOptionsSchema, options, {
      kind: "ContainerRuntimeOptions",
    });
    this.docker = this.options.docker ?? new Docker({ socketPath: this.options.socketPath });
    this.#keys = labelKeys(this.options.labelPrefix);
    this.#ports = new PortAllocator(this.options.dataAddress, this.options.portRange);
    this.#images = new ImageResolver(this.docker, this.options.registry);
    this.#network = new ClusterNetwork(this.docker, {
      name: this.options.networkName ?? `skiff-${this.options.clusterId}`,
      labels: { [this.#keys.managed]: "true", [this.#keys.cluster]: this.options.clusterId },
      ...(this.options.firewall ? { firewall: this.options.firewall } : {}),
    });
    this.#events = new ContainerEvents(this.docker, [
      `${this.#keys.cluster}=${this.options.clusterId}`,
      `${this.#keys.owner}=${this.options.owner}`,
    ]);
    this.#events.on("die", (e) => {
      this.#onDie(e.containerId, e.exitCode).catch((err: Error) => this.emit("warning", err));
    });
    this.#events.on("oom", (e) => {
      const t = this.#byContainer.get(e.containerId);
      if (t) t.oomSeen = true;
    });
    this.#events.on("reconnect", () => void this.#recheckAll());
    this.#events.on("warning", (err) => this.emit("warning", err));
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

  /** Create and start one instance; resolves once it passes readiness. Rejects with InstanceError. */
  async start(input: InstanceSpecInput): Promise<StartedInstance> {
    if (this.#closed) throw new Error("ContainerRuntime is closed");
    const spec = parseWith(InstanceSpecSchema, input, {
      kind: "Instance",
      ...(typeof input?.instanceId === "string" ? { name: input.instanceId } : {}),
    });
    const id = spec.instanceId;
    if (this.#byId.has(id) || this.#claimed.has(id)) {
      throw new AlreadyExistsError(
        `instance ${id} is already running on this agent; stop it first`,
        {
          kind: "Instance",
          name: id,
        },
      );
    }
    this.#claimed.add(id);
    try {
      const standby = this.#takeStandby(spec);
      if (standby) {
        const resumed = await this.#resume(spec, standby);
        if (resumed) return resumed;
      }
      return await this.#start(spec);
    } catch (err) {
      if (err instanceof SkiffError) throw err;
      // The engine itself failed us (socket gone, daemon error): still a readable start failure.
      throw new InstanceError(
        id,
        { reason: "StartFailed", message: `docker engine error: ${dockerMessage(err)}` },
        { cause: err },
      );
    } finally {
      this.#claimed.delete(id);
      const pending = this.#pendingStops.get(id);
      if (pending) {
        this.#pendingStops.delete(id);
        pending.done();
      }
    }
  }

  async #start(spec: InstanceSpec): Promise<StartedInstance> {
    const id = spec.instanceId;
    const t0 = performance.now();
    this.#networkUsed = true;
    // All settle before a failure is thrown: nothing (a bridge) is made behind a failed start.
    const [resolved, opened, ensured] = await Promise.allSettled([
      this.#images.resolve(id, spec.container.image),
      this.#events.open(),
      this.#network.ensure(),
    ]);
    for (const r of [resolved, opened, ensured]) if (r.status === "rejected") throw r.reason;
    const image = (resolved as PromiseFulfilledResult<ResolvedImage>).value;
    this.#trimStandbysIfMemoryTight();
    const t1 = performance.now();
    let t: Tracked;
    let t2: number;
    // A published port someone took since the check, or a bridge removed under
    // us (its last user shut down): try again with a new port / a new bridge.
    for (let attempt = 1; ; attempt++) {
      const port = await this.#ports.allocate();
      let containerId: string;
      try {
        containerId = await this.#create(spec, image, port);
      } catch (err) {
        this.#ports.release(port);
        throw err;
      }
      t = this.#track(
        spec,
        containerId,
        { host: this.options.dataAddress, port, protocol: protocolOf(spec.container) },
        "starting",
      );
      t.imageId = image.id;
      t2 = performance.now();
      try {
        await this.docker.getContainer(containerId).start();
        break;
      } catch (err) {
        if (t.state === "stopping") {
          await t.stopping;
          this.#throwIfInterrupted(t);
        }
        await this.#discard(t);
        const retry = isPortTaken(err) || isNetworkGone(err);
        if (isNetworkGone(err)) this.#network.invalidate();
        if (!retry || attempt >= 3) {
          throw new InstanceError(
            id,
            { reason: "StartFailed", message: `container failed to start: ${dockerMessage(err)}` },
            { cause: err },
          );
        }
      }
    }
    const t3 = performance.now();
    const port = t.port;
    const containerId = t.containerId;
    await this.#checkAlive(t); // learns the pid, for probing inside the container's netns
    const target = this.#target(t);
    try {
      await this.#waitReady(t, target, t3);
    } catch (err) {
      if (t.state !== "stopping") await this.#discard(t);
      throw err;
    }
    t.state = "ready";
    this.#schedulePeriodic(t, target);
    const t4 = performance.now();
    const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
    return {
      instanceId: id,
      containerId,
      host: t.host,
      port,
      protocol: t.protocol,
      image,
      timings: {
        imageMs: ms(t0, t1),
        createMs: ms(t1, t2),
        startMs: ms(t2, t3),
        readyMs: ms(t3, t4),
        totalMs: ms(t0, t4),
      },
    };
  }

  // ---- standbys -------------------------------------------------------------

  /** Claims a standby of exactly this spec (the newest), or undefined. */
  #takeStandby(spec: InstanceSpec): Standby | undefined {
    if (this.#standbys.size === 0) return undefined;
    const key = standbyKey(spec);
    let found: Standby | undefined;
    for (const s of this.#standbys.values()) {
      if (s.key === key && (!found || s.pausedAt > found.pausedAt)) found = s;
    }
    if (!found) return undefined;
    this.#standbys.delete(found.containerId);
    clearTimeout(found.timer);
    return found;
  }

  /**
   * Unpause a standby as instance `spec.instanceId`: same container, netns and
   * published port; readiness is probed again before it counts as started.
   * Undefined (standby removed) when it cannot serve: the caller creates a
   * container instead.
   */
  async #resume(spec: InstanceSpec, s: Standby): Promise<StartedInstance | undefined> {
    const id = spec.instanceId;
    const t0 = performance.now();
    const [resolved, opened] = await Promise.allSettled([
      this.#images.resolve(id, spec.container.image),
      this.#events.open(),
    ]);
    if (resolved.status === "rejected" || opened.status === "rejected") {
      await this.#dropStandby(s, "image or events unavailable");
      return undefined;
    }
    const image = resolved.value;
    if (image.id !== s.imageId) {
      // The tag moved since the pause: what runs must be what the spec resolves to now.
      await this.#dropStandby(s, `image ${spec.container.image} now resolves to another image`);
      return undefined;
    }
    const t1 = performance.now();
    const t = this.#track(
      spec,
      s.containerId,
      { host: s.host, port: s.port, protocol: s.protocol },
      "starting",
    );
    t.imageId = s.imageId;
    if (s.pid) t.pid = s.pid;
    const container = this.docker.getContainer(s.containerId);
    try {
      await container.unpause();
    } catch (err) {
      if (t.state === "stopping") {
        await t.stopping;
        this.#throwIfInterrupted(t);
      }
      await this.#discard(t);
      this.emit(
        "warning",
        new Error(`resuming standby ${s.containerId.slice(0, 12)}: ${dockerMessage(err)}`),
      );
      this.emit("standby", {
        change: "removed",
        containerId: s.containerId,
        reason: "ResumeFailed",
      });
      return undefined;
    }
    const t2 = performance.now();
    this.emit("standby", { change: "resumed", containerId: s.containerId });
    // The name carries the instance id (labels cannot change): adoption after a restart reads it.
    const renamed = container
      .rename({ name: this.#containerName(id) })
      .catch((err: unknown) =>
        this.emit("warning", new Error(`renaming resumed container: ${dockerMessage(err)}`)),
      );
    if (!t.pid) await this.#checkAlive(t);
    const target = this.#target(t);
    try {
      await this.#waitReady(t, target, t2, this.options.standby.resumeTimeoutMs, true);
    } catch (err) {
      await renamed;
      if (t.state === "stopping") throw err;
      // Ready when paused, not now (it died, or its readiness depends on more than
      // itself): a fresh container is the better bet than a failure.
      await this.#discard(t);
      this.emit(
        "warning",
        new Error(
          `standby ${s.containerId.slice(0, 12)} did not come ready after resuming: ${(err as Error).message}`,
        ),
      );
      return undefined;
    }
    await renamed;
    t.state = "ready";
    this.#schedulePeriodic(t, target);
    const t3 = performance.now();
    const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
    return {
      instanceId: id,
      containerId: s.containerId,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      image,
      resumed: true,
      timings: {
        imageMs: ms(t0, t1),
        createMs: 0,
        startMs: ms(t1, t2),
        readyMs: ms(t2, t3),
        totalMs: ms(t0, t3),
      },
    };
  }

  /** Whether a stopping instance may become a standby now (evicting the oldest when full). */
  async #mayPark(): Promise<boolean> {
    const o = this.options.standby;
    if (this.#closed || o.retentionMs === 0 || o.maxStandbys === 0) return false;
    if ((await memoryAvailable()) < o.minFreeMemoryBytes) return false;
    while (this.#standbys.size >= o.maxStandbys) {
      const oldest = this.#oldestStandby();
      if (!oldest) break;
      this.#standbys.delete(oldest.containerId);
      await this.#dropStandby(oldest, "MaxStandbys");
    }
    return true;
  }

  /** Pause a drained instance's container and keep it; false: stop it normally. */
  async #park(t: Tracked): Promise<boolean> {
    if (!t.imageId || !(await this.#mayPark())) return false;
    try {
      await this.docker.getContainer(t.containerId).pause();
    } catch (err) {
      this.emit(
        "warning",
        new Error(`pausing ${t.containerId.slice(0, 12)}: ${dockerMessage(err)}`),
      );
      return false;
    }
    if (t.failure) return false; // it died while we paused it: a normal stop cleans up
    // Untracked as an instance, but its port stays reserved: the container still publishes it.
    t.forgotten = true;
    if (this.#byId.get(t.spec.instanceId) === t) this.#byId.delete(t.spec.instanceId);
    this.#byContainer.delete(t.containerId);
    this.#addStandby({
      key: standbyKey(t.spec),
      containerId: t.containerId,
      imageId: t.imageId,
      namespace: t.spec.namespace,
      revision: t.spec.revision,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      pausedAt: Date.now(),
      ...(t.pid ? { pid: t.pid } : {}),
    });
    return true;
  }

  #addStandby(s: Standby): void {
    this.#ports.reserve(s.port);
    s.timer = setTimeout(() => {
      if (this.#standbys.get(s.containerId) !== s) return;
      this.#standbys.delete(s.containerId);
      void this.#dropStandby(s, "RetentionExpired");
    }, this.options.standby.retentionMs).unref();
    this.#standbys.set(s.containerId, s);
    this.emit("standby", { change: "paused", containerId: s.containerId });
  }

  #oldestStandby(): Standby | undefined {
    let oldest: Standby | undefined;
    for (const s of this.#standbys.values())
      if (!oldest || s.pausedAt < oldest.pausedAt) oldest = s;
    return oldest;
  }

  /** Remove a standby's container (already taken out of the map) and free its port. */
  async #dropStandby(s: Standby, reason: string): Promise<void> {
    clearTimeout(s.timer);
    this.#standbys.delete(s.containerId);
    await this.#remove(s.containerId);
    this.#ports.release(s.port);
    this.emit("standby", { change: "removed", containerId: s.containerId, reason });
  }

  /** A cold start while memory is tight gives the oldest standby's memory back. */
  #trimStandbysIfMemoryTight(): void {
    if (this.#standbys.size === 0) return;
    void memoryAvailable().then(async (free) => {
      if (free >= this.options.standby.minFreeMemoryBytes) return;
      const oldest = this.#oldestStandby();
      if (oldest) await this.#dropStandby(oldest, "MemoryPressure");
    });
  }

  /** The paused standbys this runtime holds. */
  standbys(): StandbyInfo[] {
    return [...this.#standbys.values()].map((s) => ({
      containerId: s.containerId,
      namespace: s.namespace,
      revision: s.revision,
      host: s.host,
      port: s.port,
      protocol: s.protocol,
      pausedAt: s.pausedAt,
    }));
  }

  /** Remove every standby, or those `which` picks (e.g. of a deleted revision). */
  async removeStandbys(which: (s: StandbyInfo) => boolean = () => true): Promise<void> {
    const picked = [...this.#standbys.values()].filter((s) => which(s));
    await Promise.all(picked.map((s) => this.#dropStandby(s, "Removed")));
  }

  #containerName(instanceId: string): string {
    return `${this.options.namePrefix}${this.options.clusterId}-${instanceId}`;
  }

  #target(t: Tracked): ProbeTarget {
    return probeTarget(
      t.spec.container.readinessProbe,
      {
        host: t.host,
        port: t.port,
        containerPort: declaredPort(t.spec.container),
        ...(t.pid ? { pid: t.pid } : {}),
      },
      this.options.probeSettleMs,
    );
  }

  async #create(spec: InstanceSpec, image: ResolvedImage, port: number): Promise<string> {
    const name = this.#containerName(spec.instanceId);
    const body = (network: string) =>
      buildCreateOptions(spec, {
        name,
        // The resolved ID, so that what runs is exactly what was checked (and reported).
        image: image.id,
        address: this.options.dataAddress,
        port,
        network,
        clusterId: this.options.clusterId,
        owner: this.options.owner,
        labelPrefix: this.options.labelPrefix,
        capAdd: this.options.capAdd,
        pidsLimit: this.options.pidsLimit,
        tmpfsSize: this.options.tmpfsSize,
        logMaxSize: this.options.logMaxSize,
      });
    const fail = (err: unknown) =>
      new InstanceError(
        spec.instanceId,
        dockerStatus(err) === 404 && !isNetworkGone(err)
          ? {
              reason: "ImageNotFound",
              message: `image ${spec.container.image} (${image.id}) vanished before the container was created`,
            }
          : {
              reason: "StartFailed",
              message: `docker could not create the container: ${dockerMessage(err)}`,
            },
        { cause: err },
      );
    let networkRetried = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.docker.createContainer(body(await this.#network.ensure()))).id;
      } catch (err) {
        if (isNetworkGone(err) && !networkRetried) {
          networkRetried = true;
          this.#network.invalidate();
          attempt--;
          continue;
        }
        if (dockerStatus(err) !== 409 || attempt > 0) throw fail(err);
        // A container of that name exists: a dead leftover is removed, a live one is someone's instance.
        const old = await this.docker
          .getContainer(name)
          .inspect()
          .catch(() => undefined);
        if (old?.State.Running) {
          throw new AlreadyExistsError(
            `container ${name} is already running; adopt() it or stop instance ${spec.instanceId} first`,
            { kind: "Instance", name: spec.instanceId },
          );
        }
        await this.#remove(name);
        // The exit handler of the previous run may be removing it right now (our
        // removal then answers 409 at once): wait until the name is free.
        await this.#gone(name);
      }
    }
  }

  /** Resolves once no container of this name or id exists (bounded: the create then fails). */
  async #gone(idOrName: string, timeoutMs = 10_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      try {
        await this.docker.getContainer(idOrName).inspect();
      } catch (err) {
        if (dockerStatus(err) === 404) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #track(
    spec: InstanceSpec,
    containerId: string,
    endpoint: Endpoint,
    state: InstanceState,
  ): Tracked {
    let interrupt!: () => void;
    const interrupted = new Promise<void>((resolve) => {
      interrupt = resolve;
    });
    const t: Tracked = {
      ...endpoint,
      spec,
      containerId,
      state,
      dying: false,
      forgotten: false,
      oomSeen: false,
      interrupted,
      interrupt,
    };
    this.#byId.set(spec.instanceId, t);
    this.#byContainer.set(containerId, t);
    this.#ports.reserve(endpoint.port);
    const pending = this.#pendingStops.get(spec.instanceId);
    if (pending) {
      this.#pendingStops.delete(spec.instanceId);
      t.stopping = this.#stop(t, pending.options).finally(pending.done);
    }
    return t;
  }

  /** Untrack and free the port (idempotent). */
  #forget(t: Tracked): void {
    if (t.forgotten) return;
    t.forgotten = true;
    clearTimeout(t.probeTimer);
    if (this.#byId.get(t.spec.instanceId) === t) this.#byId.delete(t.spec.instanceId);
    this.#byContainer.delete(t.containerId);
    this.#ports.release(t.port);
    t.interrupt();
  }

  async #discard(t: Tracked): Promise<void> {
    this.#forget(t);
    await this.#remove(t.containerId);
  }

  async #remove(idOrName: string): Promise<void> {
    try {
      await this.docker.getContainer(idOrName).remove({ force: true });
    } catch (err) {
      const status = dockerStatus(err);
      // 404: gone already; 409: a removal is already in progress.
      if (status !== 404 && status !== 409) {
        this.emit("warning", new Error(`removing container ${idOrName}: ${dockerMessage(err)}`));
      }
    }
  }

  /** Probe every probeIntervalMs until ready; throws on exit, stop() or the startup deadline. */
  async #waitReady(
    t: Tracked,
    target: ProbeTarget,
    startedAt: number,
    limitMs = this.options.startupTimeoutMs,
    /** A resumed standby started long ago: its initialDelaySeconds is over. */
    resumed = false,
  ): Promise<void> {
    const probe = t.spec.container.readinessProbe;
    const deadline = startedAt + limitMs;
    const timeoutMs = probe?.timeoutSeconds
      ? probe.timeoutSeconds * 1000
      : this.options.probeTimeoutMs;
    const needed = probe?.successThreshold ?? 1;
    if (probe?.initialDelaySeconds && !resumed)
      await this.#pause(t, probe.initialDelaySeconds * 1000);
    let successes = 0;
    let lastCheck = performance.now();
    for (;;) {
      this.#throwIfInterrupted(t);
      const left = deadline - performance.now();
      const ok = await probeOnce(target, Math.max(1, Math.min(timeoutMs, left)));
      this.#throwIfInterrupted(t);
      successes = ok ? successes + 1 : 0;
      if (successes >= needed) return;
      const now = performance.now();
      if (now >= deadline) {
        const logs = await tailLogs(this.docker, t.containerId, this.options.logTailLines);
        throw new InstanceError(t.spec.instanceId, {
          reason: "ReadinessTimeout",
          message:
            `container did not become ready within ${limitMs / 1000}s: ` +
            `${describeTarget(target)} never succeeded (does the app listen on 0.0.0.0:$PORT? ` +
            "127.0.0.1 inside the container cannot be reached from outside it)" +
            logSuffix(logs),
          logs,
        });
      }
      // Belt and braces next to the events stream: look at the container now and then.
      if (now - lastCheck >= 250) {
        lastCheck = now;
        await this.#checkAlive(t);
        continue;
      }
      await this.#pause(t, this.options.probeIntervalMs);
    }
  }

  #throwIfInterrupted(t: Tracked): void {
    // A stop explains the exit it causes (ExitCode137 after its SIGKILL): say Stopped.
    if (t.state === "stopping") {
      throw new InstanceError(t.spec.instanceId, {
        reason: "Stopped",
        message: "instance was stopped before it became ready",
      });
    }
    if (t.failure) throw new InstanceError(t.spec.instanceId, t.failure);
  }

  async #pause(t: Tracked, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
      t.interrupted,
    ]);
    clearTimeout(timer);
  }

  async #checkAlive(t: Tracked): Promise<void> {
    try {
      const info = await this.docker.getContainer(t.containerId).inspect();
      if (info.State.Running && info.State.Pid && !t.pid && this.options.probeNetns) {
        t.pid = await ownPid(info.State.Pid, t.containerId);
      }
      if (
        !info.State.Running &&
        info.State.FinishedAt &&
        !info.State.FinishedAt.startsWith("0001")
      ) {
        await this.#onDie(t.containerId, info.State.ExitCode);
      }
    } catch (err) {
      if (dockerStatus(err) === 404) await this.#onDie(t.containerId, undefined);
    }
  }

  async #recheckAll(): Promise<void> {
    await Promise.all([...this.#byContainer.values()].map((t) => this.#checkAlive(t))).catch(
      (err: Error) => this.emit("warning", err),
    );
  }

  /** A container of ours died: describe why, then report it (or hand it to start()/stop()). */
  async #onDie(containerId: string, exitCodeHint: number | undefined): Promise<void> {
    const standby = this.#standbys.get(containerId);
    if (standby) {
      // Killed while paused (by hand, or the OOM killer): nothing to report, nothing to keep.
      await this.#dropStandby(standby, "Exited");
      return;
    }
    const t = this.#byContainer.get(containerId);
    if (!t || t.dying || t.failure) return;
    t.dying = true;
    const failure = await this.#describeExit(containerId, t.spec, exitCodeHint, t.oomSeen);
    t.failure = failure;
    t.interrupt();
    // start() and stop() clean up after themselves; only a running instance's exit is news.
    if (t.state === "starting" || t.state === "stopping") return;
    this.#forget(t);
    this.emit("exit", {
      instanceId: t.spec.instanceId,
      containerId,
      namespace: t.spec.namespace,
      revision: t.spec.revision,
      ...failure,
    });
    if (this.options.removeExited) await this.#remove(containerId);
  }

  async #describeExit(
    containerId: string,
    spec: InstanceSpec,
    exitCodeHint: number | undefined,
    oomSeen: boolean,
  ): Promise<InstanceFailure> {
    const [info, logs] = await Promise.all([
      this.docker
        .getContainer(containerId)
        .inspect()
        .catch(() => undefined),
      tailLogs(this.docker, containerId, this.options.logTailLines),
    ]);
    const exitCode = info?.State.ExitCode ?? exitCodeHint ?? -1;
    const oomKilled = info?.State.OOMKilled === true || (oomSeen && exitCode === 137);
    if (oomKilled) {
      const limit = spec.container.resources?.limits?.memory;
      return {
        reason: "OOMKilled",
        message:
          `container was OOMKilled: it went over its memory limit` +
          `${limit ? ` of ${limit}` : ""} and was killed (exit code ${exitCode}); ` +
          "raise resources.limits.memory or lower its usage" +
          logSuffix(logs),
        exitCode,
        oomKilled: true,
        logs,
      };
    }
    const dockerError = info?.State.Error ? ` (${info.State.Error})` : "";
    return {
      reason: `ExitCode${exitCode}`,
      message: `container exited with code ${exitCode}${dockerError}${logSuffix(logs)}`,
      exitCode,
      oomKilled: false,
      logs,
    };
  }

  #schedulePeriodic(t: Tracked, target: ProbeTarget): void {
    const probe = t.spec.container.readinessProbe;
    const period = probe?.periodSeconds
      ? probe.periodSeconds * 1000
      : this.options.readyProbePeriodMs;
    const timeoutMs = probe?.timeoutSeconds
      ? probe.timeoutSeconds * 1000
      : this.options.probeTimeoutMs;
    const failureThreshold = probe?.failureThreshold ?? 3;
    const successThreshold = probe?.successThreshold ?? 1;
    let failures = 0;
    let successes = 0;
    const live = () => !t.forgotten && (t.state === "ready" || t.state === "unready");
    const tick = async () => {
      if (!live()) return;
      const { ok, detail } = await probeCheck(target, timeoutMs);
      if (!live()) return;
      if (ok) {
        failures = 0;
        successes++;
        if (t.state === "unready" && successes >= successThreshold) {
          t.state = "ready";
          this.#emitReadiness(t, true, `${describeTarget(target)} succeeds again`);
        }
      } else {
        successes = 0;
        failures++;
        if (t.state === "ready" && failures >= failureThreshold) {
          t.state = "unready";
          this.#emitReadiness(
            t,
            false,
            `${describeTarget(target)} failed ${failures} times in a row (last: ${detail})`,
          );
        }
      }
      t.probeTimer = setTimeout(tick, period).unref();
    };
    t.probeTimer = setTimeout(tick, period).unref();
  }

  #emitReadiness(t: Tracked, ready: boolean, message: string): void {
    this.emit("readiness", {
      instanceId: t.spec.instanceId,
      revision: t.spec.revision,
      ready,
      message,
    });
  }

  /**
   * Stop an instance: the caller has already withdrawn its endpoint. Waits for
   * `drained` (or `drainMs`), bounded by the revision's timeoutSeconds, then
   * docker stop (SIGTERM, grace, SIGKILL) and remove. Idempotent; an instance
   * this runtime does not track is still stopped if a container of this owner
   * carries its id.
   */
  stop(instanceId: string, options: StopOptions = {}): Promise<void> {
    const t = this.#byId.get(instanceId);
    if (t) {
      t.stopping ??= this.#stop(t, options);
      return t.stopping;
    }
    if (this.#claimed.has(instanceId)) {
      // start() is between claiming the id and tracking its container: the
      // stop happens as soon as it is tracked (or start() fails first).
      let pending = this.#pendingStops.get(instanceId);
      const settled = new Promise<void>((resolve) => {
        const previous = pending?.done;
        pending = {
          options,
          done: () => {
            previous?.();
            resolve();
          },
        };
      });
      if (pending) this.#pendingStops.set(instanceId, pending);
      return settled;
    }
    return this.#stopUntracked(instanceId, options);
  }

  async #stop(t: Tracked, options: StopOptions): Promise<void> {
    const was = t.state;
    t.state = "stopping";
    clearTimeout(t.probeTimer);
    t.interrupt();
    if (was !== "starting" && !t.failure) {
      let timer: NodeJS.Timeout | undefined;
      const drain = options.drained
        ? Promise.resolve(options.drained).then(
            () => undefined,
            () => undefined,
          )
        : new Promise<void>((resolve) => {
            timer = setTimeout(resolve, options.drainMs ?? 0);
          });
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        drain,
        new Promise<void>((resolve) => {
          bound = setTimeout(resolve, t.spec.timeoutSeconds * 1000);
        }),
      ]);
      clearTimeout(timer);
      clearTimeout(bound);
      if (options.standby && was === "ready" && !t.failure && (await this.#park(t))) return;
    }
    const grace = options.graceSeconds ?? this.options.stopGraceSeconds ?? t.spec.timeoutSeconds;
    await this.#stopContainer(t.containerId, grace);
    this.#forget(t);
    await this.#remove(t.containerId);
  }

  async #stopContainer(containerId: string, graceSeconds: number): Promise<void> {
    try {
      await this.docker.getContainer(containerId).stop({ t: graceSeconds });
    } catch (err) {
      const status = dockerStatus(err);
      if (status !== 304 && status !== 404) {
        this.emit("warning", new Error(`stopping container ${containerId}: ${dockerMessage(err)}`));
      }
    }
  }

  async #stopUntracked(instanceId: string, options: StopOptions): Promise<void> {
    const found = (await this.#list()).filter(
      (c) => !this.#standbys.has(c.Id) && this.#instanceIdOf(c) === instanceId,
    );
    await Promise.all(
      found.map(async (c) => {
        let grace = options.graceSeconds ?? this.options.stopGraceSeconds;
        if (grace === undefined) grace = this.#specFromLabels(c.Labels)?.timeoutSeconds ?? 10;
        await this.#stopContainer(c.Id, grace);
        await this.#remove(c.Id);
      }),
    );
  }

  #list(extraLabels: string[] = []): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({
      all: true,
      filters: {
        label: [
          `${this.#keys.managed}=true`,
          `${this.#keys.cluster}=${this.options.clusterId}`,
          `${this.#keys.owner}=${this.options.owner}`,
          ...extraLabels,
        ],
      },
    });
  }

  /**
   * Other agents' containers of this cluster, counted by owner (agent id):
   * what orphan reaping looks at. Another cluster's containers are never listed.
   */
  async otherOwners(): Promise<Map<string, number>> {
    const found = await this.docker.listContainers({
      all: true,
      filters: {
        label: [`${this.#keys.managed}=true`, `${this.#keys.cluster}=${this.options.clusterId}`],
      },
    });
    const owners = new Map<string, number>();
    for (const c of found) {
      const owner = c.Labels[this.#keys.owner];
      // The cluster label is checked again: the filter is the engine's, the rule is ours.
      if (!owner || owner === this.options.owner) continue;
      if (c.Labels[this.#keys.cluster] !== this.options.clusterId) continue;
      owners.set(owner, (owners.get(owner) ?? 0) + 1);
    }
    return owners;
  }

  /**
   * Force-remove every container of this cluster owned by agent `owner` (a
   * dead agent: nothing manages them). Never this runtime's own. Resolves to
   * the number removed.
   */
  async removeOwnedBy(owner: string): Promise<number> {
    if (owner === this.options.owner) {
      throw new Error(`refusing to reap this runtime's own containers (owner ${owner})`);
    }
    const found = await this.docker.listContainers({
      all: true,
      filters: {
        label: [
          `${this.#keys.managed}=true`,
          `${this.#keys.cluster}=${this.options.clusterId}`,
          `${this.#keys.owner}=${owner}`,
        ],
      },
    });
    const mine = found.filter(
      (c) =>
        c.Labels[this.#keys.cluster] === this.options.clusterId &&
        c.Labels[this.#keys.owner] === owner,
    );
    await Promise.all(mine.map((c) => this.#remove(c.Id)));
    return mine.length;
  }

  /**
   * The instance a container runs now: its name says so (a resumed standby is
   * renamed; labels cannot change), else its label.
   */
  #instanceIdOf(c: Docker.ContainerInfo): string | undefined {
    const prefix = `/${this.#containerName("")}`;
    const name = c.Names?.find((n) => n.startsWith(prefix));
    if (name) return name.slice(prefix.length);
    return c.Labels[this.#keys.instance];
  }

  #specFromLabels(labels: Record<string, string>): InstanceSpec | undefined {
    const raw = labels[this.#keys.spec];
    if (!raw) return undefined;
    try {
      const parsed = InstanceSpecSchema.safeParse(JSON.parse(raw));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * After an agent restart: take over this owner's containers. Running ones are
   * tracked again (ports reserved, exits watched, readiness probed) and
   * returned with their specs and endpoints; dead ones are reported (and removed).
   * Attach the "exit" listener first: an adopted instance that dies during
   * adopt() is reported as an exit event, not in the result.
   */
  async adopt(): Promise<AdoptResult> {
    if (this.#closed) throw new Error("ContainerRuntime is closed");
    await this.#events.open(); // subscribe first so that no exit falls between list and track
    const result: AdoptResult = { running: [], exited: [] };
    for (const c of await this.#list()) {
      if (this.#byContainer.has(c.Id) || this.#standbys.has(c.Id)) continue;
      const labelled = this.#specFromLabels(c.Labels);
      const current = this.#instanceIdOf(c);
      const spec =
        labelled && current && current !== labelled.instanceId
          ? InstanceSpecSchema.safeParse({ ...labelled, instanceId: current }).data
          : labelled;
      // The endpoint is the port Docker actually publishes (the labels say what was asked).
      const published = spec
        ? c.Ports?.find((p) => p.PrivatePort === declaredPort(spec.container) && p.PublicPort)
        : undefined;
      const host = c.Labels[this.#keys.address] ?? published?.IP;
      const port = published?.PublicPort ?? Number(c.Labels[this.#keys.port]);
      if (!spec || !host || !Number.isInteger(port)) {
        this.emit(
          "warning",
          new Error(`container ${c.Id.slice(0, 12)} has unreadable Skiff labels; left alone`),
        );
        continue;
      }
      if (this.#byId.has(spec.instanceId)) {
        this.emit(
          "warning",
          new Error(
            `container ${c.Id.slice(0, 12)} duplicates tracked instance ${spec.instanceId}; left alone`,
          ),
        );
        continue;
      }
      if (c.State === "paused") {
        await this.#adoptStandby(c, spec, { host, port, protocol: protocolOf(spec.container) });
        continue;
      }
      if (c.State !== "running") {
        const failure: InstanceFailure =
          c.State === "created"
            ? {
                reason: "StartFailed",
                message:
                  "container was created but never started (the agent stopped while starting it)",
              }
            : await this.#describeExit(c.Id, spec, undefined, false);
        result.exited.push({
          instanceId: spec.instanceId,
          containerId: c.Id,
          namespace: spec.namespace,
          revision: spec.revision,
          ...failure,
        });
        if (this.options.removeExited) await this.#remove(c.Id);
        continue;
      }
      const t = this.#track(
        spec,
        c.Id,
        { host, port, protocol: protocolOf(spec.container) },
        "ready",
      );
      t.imageId = c.ImageID;
      await this.#checkAlive(t); // learns the pid for netns probes
      if (t.forgotten) continue; // it died meanwhile: reported as an exit event
      const target = this.#target(t);
      const ready = await probeOnce(target, this.options.probeTimeoutMs);
      if (t.forgotten) continue; // it died meanwhile: reported as an exit event
      if (!ready) t.state = "unready";
      this.#schedulePeriodic(t, target);
      result.running.push({
        instanceId: spec.instanceId,
        containerId: c.Id,
        host,
        port,
        protocol: t.protocol,
        spec,
        imageId: c.ImageID,
        ready,
      });
    }
    return result;
  }

  /**
   * A paused container of a previous run is a standby again, with a fresh
   * retention (its pause time is not recorded), or removed when standbys are
   * off or full. Never left behind untracked.
   */
  async #adoptStandby(
    c: Docker.ContainerInfo,
    spec: InstanceSpec,
    endpoint: Endpoint,
  ): Promise<void> {
    const o = this.options.standby;
    if (o.retentionMs === 0 || this.#standbys.size >= o.maxStandbys) {
      await this.#remove(c.Id);
      return;
    }
    const info = await this.docker
      .getContainer(c.Id)
      .inspect()
      .catch(() => undefined);
    const pid =
      info?.State.Pid && this.options.probeNetns ? await ownPid(info.State.Pid, c.Id) : undefined;
    this.#addStandby({
      key: standbyKey(spec),
      containerId: c.Id,
      imageId: c.ImageID,
      namespace: spec.namespace,
      revision: spec.revision,
      ...endpoint,
      pausedAt: Date.now(),
      ...(pid ? { pid } : {}),
    });
  }

  /** The instances this runtime tracks now. */
  list(): InstanceInfo[] {
    return [...this.#byId.values()].map((t) => this.#info(t));
  }

  get(instanceId: string): InstanceInfo | undefined {
    const t = this.#byId.get(instanceId);
    return t && this.#info(t);
  }

  #info(t: Tracked): InstanceInfo {
    return {
      instanceId: t.spec.instanceId,
      containerId: t.containerId,
      state: t.state,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      namespace: t.spec.namespace,
      revision: t.spec.revision,
    };
  }

  /** The cluster's bridge network name. */
  get networkName(): string {
    return this.#network.name;
  }

  /**
   * Stop watching and probing. Containers keep running (a new runtime can
   * adopt them); the bridge is removed only if no container is attached.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#events.close();
    // Standbys stay paused for the next run to adopt (or remove).
    for (const s of this.#standbys.values()) clearTimeout(s.timer);
    for (const t of this.#byId.values()) {
      clearTimeout(t.probeTimer);
      t.interrupt();
    }
    if (this.options.removeNetworkOnClose && this.#networkUsed) {
      await this.#network.removeIfUnused();
    }
  }
}

/**
 * The pid, if this process sees the engine's processes (same host, same pid
 * namespace): its cgroup path names the container. Otherwise undefined, and
 * probes go through the published port.
 */
async function ownPid(pid: number, containerId: string): Promise<number | undefined> {
  try {
    const cgroup = await readFile(`/proc/${pid}/cgroup`, "utf8");
    return cgroup.includes(containerId) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function logSuffix(logs: string[]): string {
  return logs.length ? `; last log lines:\n${logs.join("\n")}` : "; it wrote no logs";
}
