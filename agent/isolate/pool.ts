/**
 * WorkerdPool: the isolate runtime of a Skiff node agent.
 *
 * N long-lived workerd processes (one per core by default) each run the router
 * worker (router.js), which loads revisions on demand through workerd's
 * workerLoader: a new revision answers in milliseconds, without restarting
 * anything. Revisions are sharded across processes by rendezvous hashing, so a
 * revision's isolate is warm in exactly one process; `endpointFor()` says where
 * and with which header a gateway reaches it.
 *
 * Open-source workerd enforces no CPU limit and aborts the whole process when
 * an isolate runs out of heap, and its loader never evicts. So the pool:
 * - probes every process on a private control socket and kills a process whose
 *   probe stays unanswered for `watchdog.stallMs` (runaway CPU), respawning it
 *   on the SAME listening socket (the agent holds it), so endpoints stay valid
 *   and new connections wait in the backlog meanwhile;
 * - restarts a process that exits (e.g. heap abort), with backoff when it keeps
 *   dying young;
 * - recycles a process once it loaded `maxLoaderEntries` revisions: a fresh
 *   process starts on the same socket, then the old one drains (SIGTERM makes
 *   workerd stop accepting and finish what it has) and exits.
 * Each such event is emitted with a readable reason and, best effort, the
 * revisions that had requests in flight.
 *
 * The revision travels in the `x-skiff-revision` request header
 * (REVISION_HEADER). The router trusts it, so the gateway must drop any copy a
 * client sent and the serving address must only be reachable by gateways.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { UnavailableError } from "../../src/errors.ts";
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
import { WorkerdProcess } from "./process.ts";
import { CodeRegistry } from "./registry.ts";
import { rendezvousSlot } from "./shard.ts";

/** Where a gateway sends a revision's requests. */
export interface IsolateEndpoint {
  host: string;
  port: number;
  /** Set this header (and drop any client-supplied copy) on every request. */
  header: { name: string; value: string };
  /** The process slot that owns the revision. */
  slot: number;
}

export type IsolateEventType = "stall" | "exit" | "recycle";

/** A process was killed, died or was replaced. */
export interface IsolateEvent {
  type: IsolateEventType;
  slot: number;
  pid: number | undefined;
  /** Readable, fit for a Revision status message. */
  reason: string;
  /** Revisions with requests in flight at the time, most recently busy first (best effort). */
  revisions: string[];
  at: Date;
}

/** A process is listening (first start or replacement). */
export interface SpawnEvent {
  slot: number;
  pid: number | undefined;
  /** Spawn to both sockets listening. */
  ms: number;
  cause: "start" | IsolateEventType;
}

export interface LogEvent {
  slot: number;
  pid: number | undefined;
  stream: "stdout" | "stderr";
  line: string;
}

export interface WorkerdPoolEvents {
  stall: [IsolateEvent];
  exit: [IsolateEvent];
  recycle: [IsolateEvent];
  spawn: [SpawnEvent];
  log: [LogEvent];
}

export interface SlotStats {
  slot: number;
  port: number;
  pid: number | undefined;
  generation: number;
  loaderEntries: number;
  draining: number;
}

interface Slot {
  index: number;
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

function defaultWorkerdPath(): string {
  return createRequire(import.meta.url).resolve("workerd/bin/workerd");
}

export class WorkerdPool extends EventEmitter<WorkerdPoolEvents> {
  /** The header carrying the revision key. */
  static readonly revisionHeader = REVISION_HEADER;

  readonly options: WorkerdPoolOptions;
  readonly #registry = new CodeRegistry();
  readonly #metrics: IsolateMetrics | undefined;
  readonly #binary: string;
  readonly #token = randomBytes(16).toString("hex");
  /** Every process not yet reaped, by id: the code server attributes loads with it. */
  readonly #processes = new Map<string, WorkerdProcess>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #slots: Slot[] = [];
  #state: State = "new";
  #stateDir = "";
  #ownsStateDir = false;
  #configPath = "";
  #codeServer: CodeServer | undefined;
  readonly #exitHook = () => {
    for (const p of this.#processes.values()) if (p.alive) p.child.kill("SIGKILL");
  };

  constructor(options: WorkerdPoolOptionsInput = {}) {
    super();
    this.options = parseOrThrow(WorkerdPoolOptionsSchema, options, {
      kind: "WorkerdPoolOptions",
      name: "options",
    });
    this.#binary = this.options.workerdPath ?? defaultWorkerdPath();
    this.#metrics = this.options.metrics ? isolateMetrics(this.options.metrics) : undefined;
  }

  get running(): boolean {
    return this.#state === "running";
  }

  /** Start every process; resolves when all of them listen. */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`WorkerdPool cannot start: it is ${this.#state}`);
    this.#state = "starting";
    try {
      await this.#prepareStateDir();
      this.#codeServer = await startCodeServer({
        registry: this.#registry,
        token: this.#token,
        onLoad: (id, revision) => this.#onLoad(id, revision),
      });
      this.#configPath = await writeRouterConfig(this.#stateDir, {
        codePort: this.#codeServer.port,
        maxHeapMb: this.options.maxHeapMb,
        trackInFlight: this.options.trackInFlight,
      });
      const { processes, basePort, host } = this.options;
      const ports = Array.from({ length: processes }, (_, i) =>
        basePort === 0 ? 0 : basePort + i,
      );
      const sockets = await openListeningSockets(host, ports);
      this.#slots = sockets.map((socket, index) => ({
        index,
        port: socket.port,
        handle: socket.handle,
        current: undefined,
        generation: 0,
        recycling: false,
        draining: new Set(),
        youngDeaths: 0,
      }));
      process.on("exit", this.#exitHook);
      this.#state = "running";
      const started = await Promise.allSettled(
        this.#slots.map((slot) => this.#spawn(slot, "start")),
      );
      const failed = started.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      started.forEach((r, i) => {
        const slot = this.#slots[i];
        if (slot && r.status === "fulfilled") slot.current = r.value;
      });
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Kill every process (after a short drain), close sockets, remove state. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "stopping") return;
    this.#state = "stopping";
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const all = [...this.#processes.values()];
    for (const p of all) p.kill("SIGTERM", "pool stopped");
    const grace = setTimeout(() => {
      for (const p of all) p.kill("SIGKILL", "pool stopped");
    }, this.options.stopGraceMs);
    await Promise.all(all.map((p) => p.exited));
    clearTimeout(grace);
    process.off("exit", this.#exitHook);
    for (const slot of this.#slots) slot.handle.close();
    await this.#codeServer?.close();
    if (this.#ownsStateDir) await rm(this.#stateDir, { recursive: true, force: true });
    else if (this.#stateDir) {
      for (const f of ["workerd.capnp", "router.js", "workerd.pids"]) {
        rmSync(join(this.#stateDir, f), { force: true });
      }
    }
    this.#state = "stopped";
  }

  /**
   * Make a revision's code available to the routers. Idempotent for the same
   * code; different code under a key in use (or used before) is a ConflictError.
   */
  register(revisionKey: string, code: RevisionCodeInput): void {
    const key = this.#key(revisionKey);
    const parsed = parseOrThrow(RevisionCodeSchema, code, { kind: "Revision", name: key });
    this.#registry.register(key, parsed);
  }

  /** Stop serving a revision (its requests then get 404). Its isolate is freed when its process recycles. */
  unregister(revisionKey: string): boolean {
    const key = this.#key(revisionKey);
    if (!this.#registry.unregister(key)) return false;
    for (const p of this.#processes.values()) {
      if (p.alive && p.loaded.has(key)) p.forget(key).catch(() => {});
    }
    return true;
  }

  isRegistered(revisionKey: string): boolean {
    return this.#registry.has(revisionKey);
  }

  /** Where to send a revision's requests. Stable for the life of the pool. */
  endpointFor(revisionKey: string): IsolateEndpoint {
    const key = this.#key(revisionKey);
    if (this.#slots.length === 0) throw new UnavailableError("WorkerdPool is not started");
    const slot = this.#slots[rendezvousSlot(key, this.#slots.length)]!;
    return {
      host: this.options.host,
      port: slot.port,
      header: { name: REVISION_HEADER, value: key },
      slot: slot.index,
    };
  }

  stats(): SlotStats[] {
    return this.#slots.map((slot) => ({
      slot: slot.index,
      port: slot.port,
      pid: slot.current?.pid,
      generation: slot.generation,
      loaderEntries: slot.current?.loaded.size ?? 0,
      draining: slot.draining.size,
    }));
  }

  /** Pids of every workerd process of this pool still alive (current and draining). */
  pids(): number[] {
    return [...this.#processes.values()]
      .filter((p) => p.alive && p.pid !== undefined)
      .map((p) => p.pid as number);
  }

  #key(revisionKey: string): string {
    return parseOrThrow(revisionKeySchema, revisionKey, {
      kind: "Revision",
      name: String(revisionKey),
      field: "revisionKey",
    });
  }

  async #prepareStateDir(): Promise<void> {
    if (this.options.stateDir) {
      this.#stateDir = this.options.stateDir;
      await mkdir(this.#stateDir, { recursive: true });
      this.#killStale();
    } else {
      this.#stateDir = await mkdtemp(join(tmpdir(), "skiff-isolate-"));
      this.#ownsStateDir = true;
    }
  }

  /** Processes a previous agent left behind (it was SIGKILLed) would hold ports and memory. */
  #killStale(): void {
    const config = join(this.#stateDir, "workerd.capnp");
    let pids: number[] = [];
    try {
      pids = JSON.parse(readFileSync(join(this.#stateDir, "workerd.pids"), "utf8"));
    } catch {
      return;
    }
    for (const pid of pids) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (cmdline.includes(config)) process.kill(pid, "SIGKILL");
      } catch {
        // Gone already, or not ours to read.
      }
    }
  }

  #writePids(): void {
    if (this.#state === "stopped" || !this.#stateDir) return;
    try {
      writeFileSync(join(this.#stateDir, "workerd.pids"), JSON.stringify(this.pids()));
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

  /** Start a process on the slot's socket; resolves when it listens. Does not install it. */
  async #spawn(slot: Slot, cause: SpawnEvent["cause"]): Promise<WorkerdProcess> {
    const p = new WorkerdProcess({
      id: `${slot.index}.${++slot.generation}`,
      binary: this.#binary,
      configPath: this.#configPath,
      cwd: this.#stateDir,
      listenFd: slot.handle.fd,
      token: this.#token,
      onLog: (stream, line) => {
        if (this.listenerCount("log") > 0)
          this.emit("log", { slot: slot.index, pid: p.pid, stream, line });
      },
    });
    this.#processes.set(p.id, p);
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
      slot: slot.index,
      pid: p.pid,
      ms: performance.now() - p.startedAt,
      cause,
    });
    this.#metrics?.loaderEntries.set({ process: String(slot.index) }, 0);
    this.#watch(slot, p);
    return p;
  }

  /** Make `p` the slot's process unless someone else already replaced `expected`. */
  #install(slot: Slot, p: WorkerdProcess, expected: WorkerdProcess | undefined): boolean {
    if (this.#state !== "running" || !p.alive || slot.current !== expected) {
      p.kill("SIGTERM", "superseded");
      return false;
    }
    slot.current = p;
    return true;
  }

  /** Health probes on the control socket; an unanswered one past stallMs is a stall. */
  #watch(slot: Slot, p: WorkerdProcess): void {
    const { intervalMs, stallMs } = this.options.watchdog;
    const probe = () => {
      if (this.#state !== "running" || !p.alive || p.killReason) return;
      const started = performance.now();
      p.probeStartedAt = started;
      const deadline = setTimeout(() => {
        // An answer may already sit in the socket while our own loop lagged:
        // let the poll phase run before deciding.
        setImmediate(() => {
          if (p.probeStartedAt === started) this.#onStall(slot, p);
        });
      }, stallMs);
      p.probe().then(
        () => {
          clearTimeout(deadline);
          if (p.probeStartedAt === started) p.probeStartedAt = undefined;
          if (this.#state === "running" && p.alive && !p.killReason) this.#later(intervalMs, probe);
        },
        () => {
          // Connection lost: usually the process is dying (handled in #onExit).
          clearTimeout(deadline);
          if (p.probeStartedAt === started) p.probeStartedAt = undefined;
          if (this.#state === "running" && p.alive && !p.killReason) this.#later(intervalMs, probe);
        },
      );
    };
    probe();
  }

  #onStall(slot: Slot, p: WorkerdProcess): void {
    if (this.#state !== "running" || !p.alive || p.killReason) return;
    const revisions = p.inFlight();
    const { stallMs } = this.options.watchdog;
    p.kill("SIGKILL", "stall");
    this.#metrics?.restarts.inc({ reason: "stall" });
    this.emit("stall", {
      type: "stall",
      slot: slot.index,
      pid: p.pid,
      reason: `worker exceeded CPU: its workerd process was unresponsive for more than ${stallMs} ms and was restarted${
        revisions.length > 0 ? ` (requests in flight for ${revisions.join(", ")})` : ""
      }`,
      revisions,
      at: new Date(),
    });
    if (slot.current === p) {
      slot.current = undefined;
      void this.#respawn(slot, "stall");
    }
  }

  #onExit(slot: Slot, p: WorkerdProcess): void {
    this.#processes.delete(p.id);
    slot.draining.delete(p);
    this.#writePids();
    if (this.#state !== "running" || p.killReason) return;
    const lived = performance.now() - p.startedAt;
    slot.youngDeaths = lived < YOUNG_MS ? slot.youngDeaths + 1 : 0;
    const revisions = p.inFlight();
    this.#metrics?.restarts.inc({ reason: "exit" });
    this.emit("exit", {
      type: "exit",
      slot: slot.index,
      pid: p.pid,
      reason: `${p.exitReason()}; process restarted`,
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
    if (this.#state !== "running" || slot.current !== undefined) return;
    try {
      const p = await this.#spawn(slot, cause);
      this.#install(slot, p, undefined);
    } catch {
      // Its exit was reported by #onExit, which also counted it toward backoff; try again.
      if (this.#state === "running" && slot.current === undefined) {
        slot.youngDeaths = Math.max(slot.youngDeaths, 2);
        void this.#respawn(slot, cause);
      }
    }
  }

  /** A router fetched a revision's code: one more loader entry in that process. */
  #onLoad(processId: string, revision: string): void {
    const p = this.#processes.get(processId);
    if (!p || p.loaded.has(revision)) return;
    p.loaded.add(revision);
    this.#metrics?.coldStarts.inc();
    const slot = this.#slots[Number(processId.split(".")[0])];
    if (!slot || slot.current !== p) return;
    this.#metrics?.loaderEntries.set({ process: String(slot.index) }, p.loaded.size);
    if (p.loaded.size >= this.options.maxLoaderEntries) void this.#recycle(slot);
  }

  /** Replace the slot's process with a fresh one on the same socket, then drain the old one. */
  async #recycle(slot: Slot): Promise<void> {
    const old = slot.current;
    if (slot.recycling || !old || this.#state !== "running") return;
    slot.recycling = true;
    try {
      const next = await this.#spawn(slot, "recycle");
      // If the old one died meanwhile (current is undefined), `next` stands in
      // for the replacement still starting, which then backs off by itself.
      if (!this.#install(slot, next, slot.current === undefined ? undefined : old)) return;
      const entries = old.loaded.size;
      this.#metrics?.restarts.inc({ reason: "recycle" });
      this.emit("recycle", {
        type: "recycle",
        slot: slot.index,
        pid: old.pid,
        reason: `workerd process reached ${entries} loaded revisions (limit ${this.options.maxLoaderEntries}) and was replaced by a fresh one`,
        revisions: old.inFlight(),
        at: new Date(),
      });
      // SIGTERM: workerd stops accepting, finishes in-flight requests, exits.
      if (old.alive) {
        old.kill("SIGTERM", "recycle");
        slot.draining.add(old);
        this.#later(this.options.drainTimeoutMs, () => old.kill("SIGKILL", "recycle"));
      }
    } catch {
      // The fresh process failed to start; the old one keeps serving. A later load retries.
    } finally {
      slot.recycling = false;
    }
  }
}
