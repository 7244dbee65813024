/**
 * WorkerdPool: the isolate runtime of a Skiff node agent.
 *
 * Long-lived workerd processes run the router worker (router.js), which loads
 * revisions on demand through workerd's workerLoader: a new revision answers
 * in milliseconds, without restarting anything. workerd is no sandbox for
 * untrusted code on its own (cloudflare/workerd#49), so:
 * - every namespace gets processes of its own (`processes` of them; its
 *   revisions are sharded across them by rendezvous hashing), started when its
 *   first revision is registered and stopped when its last one goes. Revisions
 *   of different namespaces never share a process;
 * - a namespace's processes run as its own unprivileged uid (when the agent is
 *   root) inside its own cgroup with CPU, memory and pids limits (sandbox.*),
 *   so a tenant's workers can exhaust only their own share;
 * - the router only answers requests carrying the cluster's gateway secret
 *   (GATEWAY_AUTH_HEADER), and only for its own namespace's revisions; the
 *   code server only gives a process its own namespace's bundles.
 *
 * Open-source workerd enforces no CPU limit, so the pool probes every process
 * on a private control socket. A probe unanswered for `watchdog.stallMs` while
 * the process kept burning CPU is a stall (a worker spinning); one that did not
 * get the CPU is starved by the host and left alone. On a stall, the process is
 * killed and respawned on the SAME listening socket (the agent holds it, so
 * endpoints stay valid and new connections wait in the backlog), and the
 * revisions whose requests were running are moved into processes of their own
 * (quarantine): repeat stalls hit only them. A revision that stalls its own
 * process `quarantine.refuseAfter` times is refused (503 with a message) for a
 * back-off period that doubles with each further stall.
 *
 * It also restarts a process that exits (heap abort, cgroup OOM kill), with
 * backoff when it keeps dying young, and recycles a process that loaded
 * `maxLoaderEntries` revisions or grew past `maxRssMb`: a fresh process starts
 * on the same socket, then the old one drains (SIGTERM: workerd stops
 * accepting and finishes what it has) and exits.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { NotFoundError, UnavailableError } from "../../src/errors.ts";
import { Cgroup, type CgroupLayout, detectCgroups, removeEmptyDir } from "./cgroup.ts";
import { type CodeServer, startCodeServer } from "./code-server.ts";
import { writeRouterConfig } from "./config.ts";
import { type ListenHandle, openListeningSockets } from "./listen.ts";
import { type IsolateMetrics, isolateMetrics } from "./metrics.ts";
import {
  parseOrThrow,
  REVISION_HEADER,
  type RevisionCodeInput,
  RevisionCodeSchema,
  revisionKeySchema,
  type WorkerdPoolOptions,
  type WorkerdPoolOptionsInput,
  WorkerdPoolOptionsSchema,
} from "./options.ts";
import { type LoadResult, WorkerdProcess } from "./process.ts";
import { CodeRegistry } from "./registry.ts";
import { rendezvousSlot } from "./shard.ts";

/** Where a gateway sends a revision's requests. */
export interface IsolateEndpoint {
  host: string;
  port: number;
  /**
   * Set this header (and drop any client-supplied copy) on every request. The
   * gateway also adds GATEWAY_AUTH_HEADER with the cluster secret.
   */
  header: { name: string; value: string };
  /** The process slot that owns the revision. */
  slot: string;
}

export type IsolateEventType = "stall" | "exit" | "recycle" | "hang";

/** A process was killed, died or was replaced. */
export interface IsolateEvent {
  type: IsolateEventType;
  slot: string;
  namespace: string;
  pid: number | undefined;
  /** Readable, fit for a Revision status message. */
  reason: string;
  /** The revisions at fault (stall: whose requests were running), most recently busy first. */
  revisions: string[];
  /** stall: revisions refused until this time (ms since epoch) after repeated stalls. */
  refusedUntil?: number;
  at: Date;
}

/** A process is listening (first start, replacement, or a revision's own process). */
export interface SpawnEvent {
  slot: string;
  namespace: string;
  pid: number | undefined;
  /** Spawn to both sockets listening. */
  ms: number;
  cause: "start" | "quarantine" | IsolateEventType;
}

export interface LogEvent {
  slot: string;
  pid: number | undefined;
  stream: "stdout" | "stderr";
  line: string;
}

/** A worker's console line ("{ns}/{rev}" of this pool, checked against the process's namespace). */
export interface WorkerLogEvent {
  revision: string;
  stream: "stdout" | "stderr";
  text: string;
}

export interface WorkerdPoolEvents {
  stall: [IsolateEvent];
  exit: [IsolateEvent];
  hang: [IsolateEvent];
  recycle: [IsolateEvent];
  spawn: [SpawnEvent];
  log: [LogEvent];
  workerLog: [WorkerLogEvent];
  /** Something went wrong that the pool worked around (nothing was lost). */
  warning: [{ message: string }];
}

export interface SlotStats {
  slot: string;
  namespace: string;
  /** Set for a process of its own given to one revision (quarantine). */
  revision: string | undefined;
  port: number;
  pid: number | undefined;
  generation: number;
  loaderEntries: number;
  draining: number;
}

/** What sandbox the pool could set up on this host. */
export interface SandboxInfo {
  /** Namespaces run as their own uid. */
  uids: boolean;
  /** cgroup version in use, or undefined for none. */
  cgroups: 1 | 2 | undefined;
  /** What is missing and why (empty when fully sandboxed). */
  notes: string[];
}

/** One namespace's processes. */
interface Group {
  namespace: string;
  /** Its processes' secret toward the code server and on their control sockets. */
  token: string;
  uid: number | undefined;
  cgroup: Cgroup | undefined;
  oomKills: number;
  slots: Slot[];
  /** Revisions with a process of their own. */
  isolated: Map<string, Slot>;
  /** Revisions whose own process is being set up (refused by the shared ones already). */
  moving: Set<string>;
  /** Stalls of a revision in its own process. */
  stalls: Map<string, number>;
  /** Revision -> refused until (ms since epoch). */
  refused: Map<string, { until: number; message: string }>;
  ready: Promise<void>;
  idleTimer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

interface Slot {
  id: string;
  group: Group;
  /** Set when the slot is one revision's own process. */
  revision: string | undefined;
  port: number;
  handle: ListenHandle;
  current: WorkerdProcess | undefined;
  generation: number;
  recycling: boolean;
  draining: Set<WorkerdProcess>;
  /** Processes in a row that died young; drives the respawn backoff. */
  youngDeaths: number;
}

type State = "new" | "starting" | "running" | "stopping" | "stopped";

/** How long a process must live for its death not to count toward backoff. */
const YOUNG_MS = 1_000;
const START_TIMEOUT_MS = 15_000;
/** Revisions moved away from a shared process are refused there (they answer elsewhere). */
const MOVED_MS = 24 * 3600_000;
/** RSS is read every this many probes. */
const RSS_EVERY = 20;

function defaultWorkerdPath(): string {
  return createRequire(import.meta.url).resolve("workerd/bin/workerd");
}

function namespaceOf(key: string): string {
  return key.slice(0, key.indexOf("/"));
}

export class WorkerdPool extends EventEmitter<WorkerdPoolEvents> {
  /** The header carrying the revision key. */
  static readonly revisionHeader = REVISION_HEADER;

  readonly options: WorkerdPoolOptions;
  /** What gateways must send in GATEWAY_AUTH_HEADER. */
  readonly gatewaySecret: string;
  readonly #registry = new CodeRegistry();
  readonly #metrics: IsolateMetrics | undefined;
  readonly #binary: string;
  readonly #poolId = randomBytes(4).toString("hex");
  /** Every process not yet reaped, by id: the code server attributes loads with it. */
  readonly #processes = new Map<string, { p: WorkerdProcess; slot: Slot }>();
  readonly #groups = new Map<string, Group>();
  readonly #tokens = new Map<string, string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #state: State = "new";
  #stateDir = "";
  #ownsStateDir = false;
  /** Where workerd reads its config and runs: the state dir, or a temp dir when the namespaces' uids cannot reach that. */
  #runDir = "";
  #configPath = "";
  #codeServer: CodeServer | undefined;
  #sandbox: SandboxInfo = { uids: false, cgroups: undefined, notes: [] };
  /** Listening sockets opened ahead (a helper process per batch is slow): a new namespace takes them. */
  #spareSockets: { port: number; handle: ListenHandle }[] = [];
  #refilling: Promise<void> | undefined;
  #cgroupLayout: CgroupLayout | undefined;
  readonly #exitHook = () => {
    for (const { p } of this.#processes.values()) if (p.alive) p.child.kill("SIGKILL");
  };

  constructor(options: WorkerdPoolOptionsInput = {}) {
    super();
    this.options = parseOrThrow(WorkerdPoolOptionsSchema, options, {
      kind: "WorkerdPoolOptions",
      name: "options",
    });
    this.gatewaySecret = this.options.gatewaySecret ?? randomBytes(24).toString("hex");
    this.#binary = this.options.workerdPath ?? defaultWorkerdPath();
    this.#metrics = this.options.metrics ? isolateMetrics(this.options.metrics) : undefined;
  }

  get running(): boolean {
    return this.#state === "running";
  }

  /** The sandbox this host allows (known after start). */
  get sandbox(): SandboxInfo {
    return this.#sandbox;
  }

  /** Start the code server; namespaces get their processes when their first revision registers. */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`WorkerdPool cannot start: it is ${this.#state}`);
    this.#state = "starting";
    try {
      await this.#prepareStateDir();
      this.#setUpSandbox();
      this.#codeServer = await startCodeServer({
        registry: this.#registry,
        namespaceOf: (token) => this.#tokens.get(token),
        onLoad: (id, revision) => this.#onLoad(id, revision),
      });
      this.#configPath = await writeRouterConfig(this.#runDir, {
        codePort: this.#codeServer.port,
        maxHeapMb: this.options.maxHeapMb,
        trackInFlight: this.options.trackInFlight,
      });
      process.on("exit", this.#exitHook);
      this.#state = "running";
      this.#writePids();
      this.#refillSockets();
      await this.#refilling;
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stop every process (SIGTERM: in-flight requests finish, then SIGKILL after stopGraceMs), close sockets, remove state. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "stopping") return;
    this.#state = "stopping";
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const all = [...this.#processes.values()].map((e) => e.p);
    for (const p of all) p.kill("SIGTERM", "pool stopped");
    const grace = setTimeout(() => {
      for (const p of all) p.kill("SIGKILL", "pool stopped");
    }, this.options.stopGraceMs);
    await Promise.all(all.map((p) => p.exited));
    clearTimeout(grace);
    process.off("exit", this.#exitHook);
    for (const group of this.#groups.values()) this.#closeGroup(group);
    this.#groups.clear();
    await this.#refilling;
    for (const spare of this.#spareSockets.splice(0)) spare.handle.close();
    if (this.#cgroupLayout) {
      removeEmptyDir(this.#cgroupLayout, [this.options.sandbox.cgroupParent, this.#poolId]);
    }
    await this.#codeServer?.close();
    if (this.#runDir && this.#runDir !== this.#stateDir) {
      await rm(this.#runDir, { recursive: true, force: true });
    }
    if (this.#ownsStateDir) await rm(this.#stateDir, { recursive: true, force: true });
    else if (this.#stateDir) {
      for (const f of ["workerd.capnp", "router.js", "workerd.pids"]) {
        rmSync(join(this.#stateDir, f), { force: true });
      }
    }
    this.#state = "stopped";
  }

  /**
   * Make a revision's code available, starting its namespace's processes if
   * needed. Idempotent for the same code; different code under a key in use
   * (or used before) is a ConflictError.
   */
  async register(revisionKey: string, code: RevisionCodeInput): Promise<void> {
    const key = this.#key(revisionKey);
    const parsed = parseOrThrow(RevisionCodeSchema, code, { kind: "Revision", name: key });
    if (this.#state !== "running") throw new UnavailableError("WorkerdPool is not running");
    this.#registry.register(key, parsed);
    const group = this.#group(namespaceOf(key));
    await group.ready;
  }

  /** Stop serving a revision (its requests then get 404). Its isolate is freed when its process recycles. */
  unregister(revisionKey: string): boolean {
    const key = this.#key(revisionKey);
    if (!this.#registry.unregister(key)) return false;
    for (const { p } of this.#processes.values()) {
      if (p.alive && p.loaded.has(key)) p.forget(key).catch(() => {});
    }
    const group = this.#groups.get(namespaceOf(key));
    if (group) {
      const own = group.isolated.get(key);
      if (own) {
        group.isolated.delete(key);
        this.#retireSlot(own);
      }
      if (!this.#registry.hasNamespace(group.namespace)) this.#idle(group);
    }
    return true;
  }

  /**
   * Stop answering a revision's requests but keep its code registered and its
   * isolate loaded: a later load() brings it back at once (an isolate
   * standby). Resolves once every process that loaded it was told.
   */
  async park(revisionKey: string): Promise<void> {
    const key = this.#key(revisionKey);
    if (!this.#registry.has(key)) return;
    const told = [...this.#processes.values()]
      .filter(({ p }) => p.alive && p.loaded.has(key))
      .map(({ p }) => p.park(key).catch(() => {}));
    await Promise.all(told);
  }

  isRegistered(revisionKey: string): boolean {
    return this.#registry.has(revisionKey);
  }

  /**
   * Load a registered revision's isolate in its process without calling its
   * handler: its module is evaluated, so a top-level throw shows here (with
   * the message and position) instead of as a 500 on its first request.
   */
  async load(revisionKey: string): Promise<LoadResult> {
    const key = this.#key(revisionKey);
    await this.#slotFor(key).group.ready;
    for (let attempt = 0; ; attempt++) {
      // Resolved each time: a stall may move the revision to a process of its own.
      const p = this.moving(key) ? undefined : this.#slotFor(key).current;
      try {
        if (!p) throw new UnavailableError(`the workerd process of ${key} is restarting`);
        const result = await p.load(key);
        // Refused as moved (not by a refusal of ours): its own process is coming.
        if (result.kind === "refused" && this.refusedUntil(key) === undefined) {
          throw new UnavailableError(`revision ${key} is moving to a process of its own`);
        }
        return result;
      } catch (err) {
        // Its process may be restarting (a neighbour stalled it): try again shortly.
        if (attempt >= 20 || this.#state !== "running") throw err;
        await sleep(100);
      }
    }
  }

  /** Where to send a revision's requests. Stable while the revision keeps its process. */
  endpointFor(revisionKey: string): IsolateEndpoint {
    const key = this.#key(revisionKey);
    const slot = this.#slotFor(key);
    return {
      host: this.options.host,
      port: slot.port,
      header: { name: REVISION_HEADER, value: key },
      slot: slot.id,
    };
  }

  /** Whether a slot has a process listening (false while it restarts). */
  slotUp(slotId: string): boolean {
    for (const group of this.#groups.values()) {
      for (const slot of [...group.slots, ...group.isolated.values()]) {
        if (slot.id === slotId) return slot.current !== undefined;
      }
    }
    return false;
  }

  /** A revision is being moved to a process of its own (its endpoint is about to change). */
  moving(revisionKey: string): boolean {
    return this.#groups.get(namespaceOf(revisionKey))?.moving.has(revisionKey) ?? false;
  }

  /** Until when (ms since epoch) a revision is refused after repeated stalls; undefined when it is not. */
  refusedUntil(revisionKey: string): number | undefined {
    const group = this.#groups.get(namespaceOf(revisionKey));
    const until = group?.refused.get(revisionKey)?.until;
    return until !== undefined && until > Date.now() ? until : undefined;
  }

  stats(): SlotStats[] {
    const out: SlotStats[] = [];
    for (const group of this.#groups.values()) {
      for (const slot of [...group.slots, ...group.isolated.values()]) {
        out.push({
          slot: slot.id,
          namespace: group.namespace,
          revision: slot.revision,
          port: slot.port,
          pid: slot.current?.pid,
          generation: slot.generation,
          loaderEntries: slot.current?.loaded.size ?? 0,
          draining: slot.draining.size,
        });
      }
    }
    return out;
  }

  /** Pids of every workerd process of this pool still alive (current and draining). */
  pids(): number[] {
    return [...this.#processes.values()]
      .filter(({ p }) => p.alive && p.pid !== undefined)
      .map(({ p }) => p.pid as number);
  }

  /** The cgroup of a namespace (tests read its limits), when the pool has one. */
  cgroupOf(namespace: string): Cgroup | undefined {
    return this.#groups.get(namespace)?.cgroup;
  }

  #key(revisionKey: string): string {
    return parseOrThrow(revisionKeySchema, revisionKey, {
      kind: "Revision",
      name: String(revisionKey),
      field: "revisionKey",
    });
  }

  #slotFor(key: string): Slot {
    if (this.#state !== "running") throw new UnavailableError("WorkerdPool is not running");
    const group = this.#groups.get(namespaceOf(key));
    if (!group || group.slots.length === 0) {
      throw new NotFoundError(
        `namespace ${namespaceOf(key)} has no workerd processes on this node: register one of its revisions first`,
        { kind: "Revision", name: key },
      );
    }
    return (
      group.isolated.get(key) ?? (group.slots[rendezvousSlot(key, group.slots.length)] as Slot)
    );
  }

  // ---- sandbox ---------------------------------------------------------------

  #setUpSandbox(): void {
    const { mode, cgroupRoot, cgroupParent } = this.options.sandbox;
    if (mode === "off") {
      this.#sandbox = {
        uids: false,
        cgroups: undefined,
        notes: ["sandbox turned off (sandbox.mode)"],
      };
      return;
    }
    const notes: string[] = [];
    const root = process.getuid?.() === 0;
    if (!root) {
      notes.push(
        "the agent does not run as root: every namespace's workerd runs as the agent's own user",
      );
    }
    const layout = detectCgroups(cgroupRoot);
    let cgroups: 1 | 2 | undefined;
    if (!layout) {
      notes.push(`no usable cgroup memory, cpu and pids controllers at ${cgroupRoot}`);
    } else {
      try {
        for (const mount of Object.values(layout.mounts)) {
          mkdirSync(join(mount, cgroupParent, this.#poolId), { recursive: true });
        }
        // Try the whole set-up once (controllers enabled on the way down, limits
        // written), so that a host that cannot give it is known now, not at a
        // namespace's first revision.
        const { memoryMb, cpuMillis, pids } = this.options.sandbox;
        const probe = new Cgroup(layout, [cgroupParent, this.#poolId, "probe"], {
          memoryBytes: memoryMb * 2 ** 20,
          cpuMillis,
          pids,
        });
        probe.create();
        probe.remove();
        this.#cgroupLayout = layout;
        cgroups = layout.version;
        this.#writePids();
      } catch (err) {
        removeEmptyDir(layout, [cgroupParent, this.#poolId]);
        notes.push(
          `cannot create cgroups under ${cgroupRoot} (${(err as Error).message}): namespaces run without CPU, memory and pids limits`,
        );
      }
    }
    if (mode === "required" && notes.length > 0) {
      throw new UnavailableError(`the isolate sandbox is required but ${notes.join("; ")}`);
    }
    this.#sandbox = { uids: root, cgroups, notes };
  }

  #allocateUid(): number | undefined {
    if (!this.#sandbox.uids) return undefined;
    const { uidMin, uidMax } = this.options.sandbox;
    const used = new Set([...this.#groups.values()].map((g) => g.uid));
    for (let uid = uidMin; uid <= uidMax; uid++) if (!used.has(uid)) return uid;
    throw new UnavailableError(
      `no free uid left in sandbox.uidMin..uidMax (${uidMin}-${uidMax}) for another namespace; widen the range`,
    );
  }

  // ---- namespaces --------------------------------------------------------------

  /** The namespace's processes, started (or their start in progress). */
  #group(namespace: string): Group {
    let group = this.#groups.get(namespace);
    if (group && !group.stopped) {
      clearTimeout(group.idleTimer);
      group.idleTimer = undefined;
      return group;
    }
    const token = randomBytes(16).toString("hex");
    group = {
      namespace,
      token,
      uid: this.#allocateUid(),
      cgroup: undefined,
      oomKills: 0,
      slots: [],
      isolated: new Map(),
      moving: new Set(),
      stalls: new Map(),
      refused: new Map(),
      ready: Promise.resolve(),
      idleTimer: undefined,
      stopped: false,
    };
    this.#groups.set(namespace, group);
    this.#tokens.set(token, namespace);
    const g = group;
    group.ready = this.#startGroup(g).catch((err: unknown) => {
      this.#stopGroup(g);
      throw err;
    });
    group.ready.catch(() => {});
    return group;
  }

  async #startGroup(group: Group): Promise<void> {
    const layout = this.#cgroupLayout;
    if (layout) {
      const { memoryMb, cpuMillis, pids, cgroupParent } = this.options.sandbox;
      // A suffix per start: a namespace started again while its previous processes
      // still exit never shares (or has removed under it) the old group.
      const name = `ns-${group.namespace}-${randomBytes(3).toString("hex")}`;
      const cgroup = new Cgroup(layout, [cgroupParent, this.#poolId, name], {
        memoryBytes: memoryMb * 1024 * 1024,
        cpuMillis,
        pids,
      });
      cgroup.create();
      group.cgroup = cgroup;
      group.oomKills = cgroup.oomKills();
    }
    const sockets = await this.#takeSockets(this.options.processes);
    if (group.stopped) {
      for (const s of sockets) s.handle.close();
      throw new UnavailableError(`namespace ${group.namespace} was stopped while starting`);
    }
    group.slots = sockets.map((socket, index) =>
      this.#newSlot(group, `${group.namespace}/${index}`, undefined, socket),
    );
    const started = await Promise.allSettled(group.slots.map((slot) => this.#spawn(slot, "start")));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    started.forEach((r, i) => {
      const slot = group.slots[i];
      if (slot && r.status === "fulfilled") this.#install(slot, r.value, undefined);
    });
  }

  #newSlot(
    group: Group,
    id: string,
    revision: string | undefined,
    socket: { port: number; handle: ListenHandle },
  ): Slot {
    return {
      id,
      group,
      revision,
      port: socket.port,
      handle: socket.handle,
      current: undefined,
      generation: 0,
      recycling: false,
      draining: new Set(),
      youngDeaths: 0,
    };
  }

  /** `n` listening sockets on an ephemeral port each, from the spares when there are enough. */
  async #takeSockets(n: number): Promise<{ port: number; handle: ListenHandle }[]> {
    const taken = this.#spareSockets.splice(0, n);
    if (taken.length < n) {
      const more = await openListeningSockets(
        this.options.host,
        Array.from({ length: n - taken.length }, () => 0),
      );
      taken.push(...more);
    }
    this.#refillSockets();
    return taken;
  }

  /** Keep one namespace's worth of sockets (plus one for a quarantine) open ahead. */
  #refillSockets(): void {
    const want = this.options.processes + 1 - this.#spareSockets.length;
    if (this.#refilling || want <= 0 || this.#state !== "running") return;
    this.#refilling = openListeningSockets(
      this.options.host,
      Array.from({ length: want }, () => 0),
    )
      .then((sockets) => {
        if (this.#state === "running") this.#spareSockets.push(...sockets);
        else for (const s of sockets) s.handle.close();
      })
      .catch(() => {
        // Sockets are then opened on demand.
      })
      .finally(() => {
        this.#refilling = undefined;
      });
  }

  /** The namespace's last revision went: stop its processes after `namespaceIdleMs`. */
  #idle(group: Group): void {
    clearTimeout(group.idleTimer);
    group.idleTimer = setTimeout(() => {
      if (this.#registry.hasNamespace(group.namespace) || this.#state !== "running") return;
      this.#stopGroup(group);
    }, this.options.namespaceIdleMs);
    group.idleTimer.unref();
  }

  /** Drain and stop the group's processes, then free its sockets, cgroup and token. */
  #stopGroup(group: Group): void {
    if (group.stopped) return;
    group.stopped = true;
    clearTimeout(group.idleTimer);
    if (this.#groups.get(group.namespace) === group) this.#groups.delete(group.namespace);
    const slots = [...group.slots, ...group.isolated.values()];
    const procs = [...this.#processes.values()]
      .filter((e) => e.slot.group === group)
      .map((e) => e.p);
    for (const p of procs) p.kill("SIGTERM", "namespace idle");
    const kill = setTimeout(() => {
      for (const p of procs) p.kill("SIGKILL", "namespace idle");
    }, this.options.stopGraceMs);
    void Promise.all(procs.map((p) => p.exited)).then(() => {
      clearTimeout(kill);
      for (const slot of slots) slot.handle.close();
      this.#closeGroup(group);
    });
  }

  #closeGroup(group: Group): void {
    group.stopped = true;
    this.#tokens.delete(group.token);
    for (const slot of [...group.slots, ...group.isolated.values()]) {
      try {
        slot.handle.close();
      } catch {
        // Closed already.
      }
    }
    group.cgroup?.remove();
  }

  /** A revision's own process is no longer needed. */
  #retireSlot(slot: Slot): void {
    const procs = [...this.#processes.values()].filter((e) => e.slot === slot).map((e) => e.p);
    slot.current = undefined;
    for (const p of procs) p.kill("SIGTERM", "retired");
    void Promise.all(procs.map((p) => p.exited)).then(() => slot.handle.close());
  }

  // ---- state dir -----------------------------------------------------------------

  async #prepareStateDir(): Promise<void> {
    if (this.options.stateDir) {
      this.#stateDir = this.options.stateDir;
      await mkdir(this.#stateDir, { recursive: true });
      await this.#killStale();
    } else {
      this.#stateDir = await mkdtemp(join(tmpdir(), "skiff-isolate-"));
      this.#ownsStateDir = true;
    }
    // The namespaces' uids read the config from here (and run in it); they can list nothing.
    chmodSync(this.#stateDir, 0o711);
    // A state dir under a private folder (a home, a mkdtemp) is out of their
    // reach whatever its own mode: workerd would not even open its config.
    this.#runDir = traversableByOthers(this.#stateDir)
      ? this.#stateDir
      : await mkdtemp(join(tmpdir(), "skiff-workerd-"));
    chmodSync(this.#runDir, 0o711);
  }

  /**
   * Processes a previous agent left behind (it was SIGKILLed) would hold ports
   * and memory; their cgroups would stay behind empty.
   */
  async #killStale(): Promise<void> {
    let left: { pids: number[]; cgroups: string[]; runDir?: string };
    try {
      const parsed = JSON.parse(readFileSync(join(this.#stateDir, "workerd.pids"), "utf8"));
      left = Array.isArray(parsed) ? { pids: parsed, cgroups: [] } : parsed;
    } catch {
      return;
    }
    // Its processes were started with the config in its run dir (maybe a temp dir of its own).
    const runDir = typeof left.runDir === "string" ? left.runDir : this.#stateDir;
    const config = join(runDir, "workerd.capnp");
    if (runDir !== this.#stateDir && /\/skiff-workerd-[^/]+$/.test(runDir)) {
      await rm(runDir, { recursive: true, force: true });
    }
    const killed: number[] = [];
    for (const pid of left.pids ?? []) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (cmdline.includes(config)) {
          process.kill(pid, "SIGKILL");
          killed.push(pid);
        }
      } catch {
        // Gone already, or not ours to read.
      }
    }
    const cgroups = (left.cgroups ?? []).filter((dir) =>
      dir.includes(`/${this.options.sandbox.cgroupParent}/`),
    );
    if (cgroups.length === 0) return;
    // A group can only be removed once its processes are gone.
    for (let i = 0; i < 40 && killed.some((pid) => existsSync(`/proc/${pid}`)); i++)
      await sleep(25);
    for (const dir of cgroups) {
      try {
        rmdirSync(dir);
      } catch {
        // Still busy or gone.
      }
    }
  }

  #writePids(): void {
    if (this.#state === "stopped" || !this.#stateDir) return;
    // Groups first, then the pool's own directories: removed in this order after a crash.
    const poolDirs = this.#cgroupLayout
      ? Object.values(this.#cgroupLayout.mounts).map((m) =>
          join(m, this.options.sandbox.cgroupParent, this.#poolId),
        )
      : [];
    const cgroups = [
      ...[...this.#groups.values()].flatMap((g) => Object.values(g.cgroup?.dirs ?? {})),
      ...poolDirs,
    ];
    try {
      writeFileSync(
        join(this.#stateDir, "workerd.pids"),
        JSON.stringify({ pids: this.pids(), cgroups, runDir: this.#runDir }),
        { mode: 0o600 },
      );
    } catch {
      // Best effort: only used to clean up after a crash of the agent.
    }
  }

  #later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  // ---- processes -----------------------------------------------------------------

  /** Revisions the slot's router refuses: after repeated stalls, or moved to a process of their own. */
  #refusals(slot: Slot): Record<string, { until: number; message: string }> {
    const out: Record<string, { until: number; message: string }> = {};
    const now = Date.now();
    for (const [rev, r] of slot.group.refused) if (r.until > now) out[rev] = r;
    if (slot.revision === undefined) {
      for (const rev of [...slot.group.isolated.keys(), ...slot.group.moving]) {
        out[rev] ??= {
          until: now + MOVED_MS,
          message: `revision ${rev} now runs in a workerd process of its own after stalling this one; it is reached through its new endpoint`,
        };
      }
    }
    return out;
  }

  /** Start a process on the slot's socket; resolves when it listens. Does not install it. */
  async #spawn(slot: Slot, cause: SpawnEvent["cause"]): Promise<WorkerdProcess> {
    const group = slot.group;
    const p = new WorkerdProcess({
      id: `${slot.id}.${++slot.generation}`,
      binary: this.#binary,
      configPath: this.#configPath,
      cwd: this.#runDir,
      listenFd: slot.handle.fd,
      token: group.token,
      namespace: group.namespace,
      gatewaySecret: this.gatewaySecret,
      refused: this.#refusals(slot),
      ...(group.uid !== undefined ? { uid: group.uid } : {}),
      ...(group.cgroup ? { cgroup: group.cgroup } : {}),
      onLog: (stream, line) => {
        if (this.listenerCount("log") > 0)
          this.emit("log", { slot: slot.id, pid: p.pid, stream, line });
      },
      onWorkerLog: (revision, stream, text) => {
        // A process serves one namespace: a mark naming another one is forged.
        if (!revision.startsWith(`${group.namespace}/`) || this.listenerCount("workerLog") === 0) {
          return;
        }
        this.emit("workerLog", { revision, stream, text });
      },
      onForbidden: () => this.#metrics?.forbidden.inc(),
    });
    this.#processes.set(p.id, { p, slot });
    this.#writePids();
    void p.exited.then(() => this.#onExit(slot, p));
    const timeout = setTimeout(
      () => p.kill("SIGKILL", `did not listen within ${START_TIMEOUT_MS} ms`),
      START_TIMEOUT_MS,
    );
    try {
      await p.ready;
    } finally {
      clearTimeout(timeout);
    }
    this.emit("spawn", {
      slot: slot.id,
      namespace: group.namespace,
      pid: p.pid,
      ms: performance.now() - p.startedAt,
      cause,
    });
    this.#metrics?.loaderEntries.set({ process: slot.id }, 0);
    this.#watch(slot, p);
    return p;
  }

  /** Make `p` the slot's process unless someone else already replaced `expected`. */
  #install(slot: Slot, p: WorkerdProcess, expected: WorkerdProcess | undefined): boolean {
    if (this.#state !== "running" || slot.group.stopped || !p.alive || slot.current !== expected) {
      p.kill("SIGTERM", "superseded");
      return false;
    }
    slot.current = p;
    return true;
  }

  #live(p: WorkerdProcess): boolean {
    return this.#state === "running" && p.alive && !p.killReason;
  }

  /**
   * Health probes on the control socket. An unanswered probe is a stall only
   * once the process burned `stallMs * cpuRatio` of CPU on it (scaled down when
   * its cgroup grants less than a core) and gave no sign of progress (its
   * router's lines, its workers' request starts and ends) for `stallMs`; a
   * process that did not get the CPU, or kept serving other requests
   * meanwhile (a backlog), is starved by the host, not stalled, and is left
   * alone (up to `hangMs`), unless it burned `backlogCpuMs` since the
   * router's last line (which no worker can forge).
   */
  #watch(slot: Slot, p: WorkerdProcess): void {
    const { intervalMs, stallMs, cpuRatio, hangMs, loadCpuMs, backlogCpuMs } =
      this.options.watchdog;
    const share = slot.group.cgroup ? Math.min(1, this.options.sandbox.cpuMillis / 1000) : 1;
    const cpuNeeded = stallMs * cpuRatio * share;
    let probes = 0;
    const probe = () => {
      if (!this.#live(p)) return;
      if (++probes % RSS_EVERY === 0) this.#checkRss(slot, p);
      const started = performance.now();
      p.probeStartedAt = started;
      p.probeCpuMs = p.cpuMs() ?? 0;
      let timer: NodeJS.Timeout | undefined;
      let starved = false;
      const check = () => {
        // An answer may already sit in the socket while our own loop lagged:
        // let the poll phase run before deciding.
        setImmediate(() => {
          if (p.probeStartedAt !== started || !this.#live(p)) return;
          const now = performance.now();
          const wall = now - started;
          // The CPU clock at a sign of progress during the probe (or at its start).
          const since = (at: number | undefined, cpuAt: number | undefined) =>
            at !== undefined && at > started && cpuAt !== undefined
              ? Math.max(p.probeCpuMs, cpuAt)
              : p.probeCpuMs;
          const from = since(p.progressAt, p.progressCpuMs);
          const cpuNow = p.cpuMs() ?? from;
          // CPU burnt since the last sign of progress (or the probe's start):
          // one task holding the thread, not a backlog of short ones.
          const cpu = cpuNow - from;
          // The same since the router's last line: a whole burst of requests.
          const backlogCpu = cpuNow - since(p.routerProgressAt, p.routerProgressCpuMs);
          // Requests kept running within the window: the probe waits its turn
          // behind a backlog (a starved host or a throttled cgroup, or a burst
          // that workerd runs without I/O), no request holds the thread. A
          // spinner's last line ages out within stallMs.
          const progressing = p.progressAt !== undefined && now - p.progressAt < stallMs;
          // Creating isolates is the platform's startup work: a larger budget,
          // an amount of work (a smaller CPU share makes it slower, not smaller).
          const budget = p.loading.size > 0 ? Math.max(cpuNeeded, loadCpuMs) : cpuNeeded;
          const backlogBudget = Math.max(budget, backlogCpuMs);
          if (cpu >= budget && !progressing) this.#onStall(slot, p, wall, cpu, `${stallMs} ms`);
          else if (backlogCpu >= backlogBudget) {
            this.#onStall(slot, p, wall, backlogCpu, `${backlogBudget} ms of a backlog`);
          } else if (wall >= hangMs) this.#onHang(slot, p, wall);
          else {
            if (!starved) this.#metrics?.starved.inc();
            starved = true;
            timer = setTimeout(check, Math.max(10, Math.min(intervalMs, stallMs / 3)));
          }
        });
      };
      timer = setTimeout(check, stallMs);
      const next = () => {
        clearTimeout(timer);
        if (p.probeStartedAt === started) p.probeStartedAt = undefined;
        if (this.#live(p)) this.#later(intervalMs, probe);
      };
      // A rejection: connection lost, usually the process is dying (handled in #onExit).
      p.probe().then(next, next);
    };
    probe();
  }

  #checkRss(slot: Slot, p: WorkerdProcess): void {
    const rss = p.rssBytes();
    const limit = this.#maxRssBytes();
    if (rss === undefined || rss <= limit || slot.current !== p) return;
    void this.#recycle(
      slot,
      "rss",
      `workerd process grew to ${Math.round(rss / 2 ** 20)} MB resident (limit ${Math.round(limit / 2 ** 20)} MB, maxRssMb) and was replaced by a fresh one`,
    );
  }

  #maxRssBytes(): number {
    if (this.options.maxRssMb !== undefined) return this.options.maxRssMb * 2 ** 20;
    const { memoryMb } = this.options.sandbox;
    return Math.floor((memoryMb * 2 ** 20 * 0.75) / this.options.processes);
  }

  #onStall(slot: Slot, p: WorkerdProcess, wallMs: number, cpuMs: number, limit: string): void {
    if (!this.#live(p)) return;
    const group = slot.group;
    const running = p.inFlight();
    p.stalled = true;
    p.kill("SIGKILL", "stall");
    this.#metrics?.restarts.inc({ reason: "stall" });
    const stallMs = this.options.watchdog.stallMs;
    const measured = `unresponsive for ${Math.round(wallMs)} ms while using ${Math.round(cpuMs)} ms of CPU (limit ${limit})`;
    let revisions: string[];
    let refusedUntil: number | undefined;
    let reason: string;
    if (slot.revision !== undefined) {
      // Its own process: the culprit is known exactly.
      const rev = slot.revision;
      revisions = [rev];
      const stalls = (group.stalls.get(rev) ?? 0) + 1;
      group.stalls.set(rev, stalls);
      const { refuseAfter, refuseMs, maxRefuseMs } = this.options.quarantine;
      if (stalls >= refuseAfter) {
        const ms = Math.min(maxRefuseMs, refuseMs * 2 ** (stalls - refuseAfter));
        refusedUntil = Date.now() + ms;
        group.refused.set(rev, {
          until: refusedUntil,
          message: `revision ${rev} is refused for ${Math.round(ms / 1000)} s: its worker stalled its workerd process ${stalls} times (a request ran longer than ${stallMs} ms of CPU)`,
        });
        reason = `worker exceeded CPU: its own workerd process was ${measured}; stalled ${stalls} times, refused for ${Math.round(ms / 1000)} s`;
      } else {
        reason = `worker exceeded CPU: its own workerd process was ${measured}; restarted`;
      }
    } else {
      // A shared process: the revisions whose requests were running are the
      // suspects; each moves to a process of its own, so that a repeat stall
      // names the culprit exactly and never hits the others again.
      // Unknown (tracking off): every revision it loaded is a suspect, none is refused.
      const known = running.length > 0;
      revisions = known ? running : [...p.loaded].filter((r) => !group.isolated.has(r));
      const room = Math.max(0, this.options.quarantine.maxProcesses - group.isolated.size);
      const moving = revisions.filter((r) => this.#registry.has(r)).slice(0, room);
      const refusing = known ? revisions.filter((r) => !moving.includes(r)) : [];
      // Count it toward refusal only when the suspects are known.
      if (known)
        for (const rev of revisions) group.stalls.set(rev, (group.stalls.get(rev) ?? 0) + 1);
      for (const rev of moving) void this.#isolate(group, rev);
      for (const rev of refusing) {
        refusedUntil = Date.now() + this.options.quarantine.refuseMs;
        group.refused.set(rev, {
          until: refusedUntil,
          message: `revision ${rev} is refused for ${Math.round(this.options.quarantine.refuseMs / 1000)} s: it was running when its workerd process stalled and no process is left to isolate it`,
        });
      }
      reason = `worker exceeded CPU: its workerd process was ${measured} and was restarted${
        revisions.length > 0 ? ` (requests running for ${revisions.join(", ")})` : ""
      }${moving.length > 0 ? `; ${moving.join(", ")} now run in processes of their own` : ""}`;
    }
    this.emit("stall", {
      type: "stall",
      slot: slot.id,
      namespace: group.namespace,
      pid: p.pid,
      reason,
      revisions,
      ...(refusedUntil !== undefined ? { refusedUntil } : {}),
      at: new Date(),
    });
    if (slot.current === p) {
      slot.current = undefined;
      void this.#respawn(slot, "stall");
    }
  }

  /** Unresponsive without using CPU for hangMs: restart, blame nobody. */
  #onHang(slot: Slot, p: WorkerdProcess, wallMs: number): void {
    if (!this.#live(p)) return;
    p.kill("SIGKILL", "hang");
    this.#metrics?.restarts.inc({ reason: "hang" });
    this.emit("hang", {
      type: "hang",
      slot: slot.id,
      namespace: slot.group.namespace,
      pid: p.pid,
      reason: `workerd process was unresponsive for ${Math.round(wallMs)} ms without using CPU and was restarted`,
      revisions: [],
      at: new Date(),
    });
    if (slot.current === p) {
      slot.current = undefined;
      void this.#respawn(slot, "hang");
    }
  }

  /** Give a revision a process of its own in its namespace. */
  async #isolate(group: Group, rev: string): Promise<void> {
    if (group.isolated.has(rev) || group.moving.has(rev) || group.stopped) return;
    group.moving.add(rev);
    let socket: { port: number; handle: ListenHandle } | undefined;
    try {
      [socket] = await this.#takeSockets(1);
    } catch (err) {
      // No socket (descriptors exhausted, helper killed): the revision stays in
      // the shared processes, where a repeat stall counts toward refusing it.
      // Never an unhandled rejection: that would take the whole agent down.
      this.emit("warning", {
        message: `could not give ${rev} a process of its own: ${(err as Error).message}`,
      });
      return;
    } finally {
      group.moving.delete(rev);
    }
    if (!socket) return;
    if (group.stopped || this.#state !== "running" || !this.#registry.has(rev)) {
      socket.handle.close();
      return;
    }
    const slot = this.#newSlot(
      group,
      `${group.namespace}/own:${rev.slice(group.namespace.length + 1)}`,
      rev,
      socket,
    );
    group.isolated.set(rev, slot);
    try {
      const p = await this.#spawn(slot, "quarantine");
      this.#install(slot, p, undefined);
      // The shared processes already refuse it (moved); the spawn event republishes it here.
    } catch {
      if (slot.current === undefined) void this.#respawn(slot, "exit");
    }
  }

  #onExit(slot: Slot, p: WorkerdProcess): void {
    this.#processes.delete(p.id);
    slot.draining.delete(p);
    this.#writePids();
    if (this.#state !== "running" || p.killReason || slot.group.stopped) return;
    const lived = performance.now() - p.startedAt;
    slot.youngDeaths = lived < YOUNG_MS ? slot.youngDeaths + 1 : 0;
    const revisions = p.inFlight();
    const group = slot.group;
    let reason = p.exitReason();
    const kills = group.cgroup?.oomKills() ?? 0;
    if (kills > group.oomKills) {
      group.oomKills = kills;
      reason = `namespace ${group.namespace} reached its memory limit (${this.options.sandbox.memoryMb} MB, sandbox.memoryMb): the kernel killed its workerd process`;
    }
    this.#metrics?.restarts.inc({ reason: "exit" });
    this.emit("exit", {
      type: "exit",
      slot: slot.id,
      namespace: group.namespace,
      pid: p.pid,
      reason: `${reason}; process restarted`,
      revisions,
      at: new Date(),
    });
    if (slot.current === p) {
      slot.current = undefined;
      void this.#respawn(slot, "exit");
    }
  }

  async #respawn(slot: Slot, cause: IsolateEventType): Promise<void> {
    const backoff = slot.youngDeaths < 2 ? 0 : Math.min(5_000, 50 * 2 ** slot.youngDeaths);
    if (backoff > 0) await sleep(backoff);
    if (this.#state !== "running" || slot.current !== undefined || slot.group.stopped) return;
    if (slot.revision !== undefined && slot.group.isolated.get(slot.revision) !== slot) return;
    try {
      const p = await this.#spawn(slot, cause);
      this.#install(slot, p, undefined);
    } catch {
      // Its exit was reported by #onExit, which also counted it toward backoff; try again.
      if (this.#state === "running" && slot.current === undefined && !slot.group.stopped) {
        slot.youngDeaths = Math.max(slot.youngDeaths, 2);
        void this.#respawn(slot, cause);
      }
    }
  }

  /** A router fetched a revision's code: one more loader entry in that process. */
  #onLoad(processId: string, revision: string): void {
    const entry = this.#processes.get(processId);
    if (!entry || entry.p.loaded.has(revision)) return;
    const { p, slot } = entry;
    p.loaded.add(revision);
    this.#metrics?.coldStarts.inc();
    if (slot.current !== p) return;
    this.#metrics?.loaderEntries.set({ process: slot.id }, p.loaded.size);
    if (p.loaded.size >= this.options.maxLoaderEntries) {
      void this.#recycle(
        slot,
        "recycle",
        `workerd process reached ${p.loaded.size} loaded revisions (limit ${this.options.maxLoaderEntries}) and was replaced by a fresh one`,
      );
    }
  }

  /** Replace the slot's process with a fresh one on the same socket, then drain the old one. */
  async #recycle(slot: Slot, why: "recycle" | "rss", reason: string): Promise<void> {
    const old = slot.current;
    if (slot.recycling || !old || this.#state !== "running" || slot.group.stopped) return;
    slot.recycling = true;
    try {
      const next = await this.#spawn(slot, "recycle");
      // If the old one died meanwhile (current is undefined), `next` stands in
      // for the replacement still starting, which then backs off by itself.
      if (!this.#install(slot, next, slot.current === undefined ? undefined : old)) return;
      this.#metrics?.restarts.inc({ reason: why });
      const revisions = old.inFlight();
      // Both processes accept on the shared socket during the hand-over; the
      // old one tells gateways to stop reusing connections to it, from before
      // the recycle is announced.
      const handover = this.options.recycleHandoverMs;
      if (old.alive) slot.draining.add(old);
      if (old.alive && handover > 0) await old.drainAt(Date.now() + handover).catch(() => {});
      this.emit("recycle", {
        type: "recycle",
        slot: slot.id,
        namespace: slot.group.namespace,
        pid: old.pid,
        reason,
        revisions,
        at: new Date(),
      });
      if (!old.alive) return;
      // SIGTERM: workerd stops accepting, finishes in-flight requests, exits.
      this.#later(handover, () => {
        old.kill("SIGTERM", "recycle");
        this.#later(this.options.drainTimeoutMs, () => old.kill("SIGKILL", "recycle"));
      });
    } catch {
      // The fresh process failed to start; the old one keeps serving. A later load retries.
    } finally {
      slot.recycling = false;
    }
  }
}

/** Every folder from the root down to `dir` lets other users pass (o+x). */
function traversableByOthers(dir: string): boolean {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}
