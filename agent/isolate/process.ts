/**
 * One workerd process of the pool: spawning it on the pool's listening
 * descriptor (as its namespace's uid, in its namespace's cgroup, in a process
 * group of its own so that a terminal's Ctrl-C reaches the agent, which stops
 * it gracefully, and not workerd directly), learning its control port,
 * probing its health, following which revisions have requests in flight (from
 * the router's stdout lines), reading its CPU time and memory from /proc, and
 * turning its death into a readable reason.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { Client, Pool } from "undici";
import { UnavailableError } from "../../src/errors.ts";
import type { Cgroup } from "./cgroup.ts";
import { SOCKET_CONTROL, SOCKET_HTTP } from "./config.ts";

/** Connections for probes and resumes (which do not wait behind loads) per workerd process. */
const QUICK_CONNECTIONS = 8;

/** Kernel clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux port Node runs on). */
const TICKS_PER_SECOND = 100;

/** What the router answers when asked to load a revision without running it. */
export interface LoadResult {
  ok: boolean;
  kind: "loaded" | "resumed" | "module-error" | "code-unavailable" | "unknown-revision" | "refused";
  message: string;
  position?: string;
}

export interface WorkerdProcessOptions {
  /** `<slot>.<generation>`, sent by the router when it fetches code. */
  id: string;
  binary: string;
  configPath: string;
  /** Working directory (the pool's state dir: nothing else of the host's). */
  cwd: string;
  /** The pool's listening socket for this slot. */
  listenFd: number;
  token: string;
  /** The only namespace this process serves. */
  namespace: string;
  /** Requests must carry it (GATEWAY_AUTH_HEADER). */
  gatewaySecret: string;
  /** Revisions its router answers 503 for, with the message, until then (ms since epoch). */
  refused?: Record<string, { until: number; message: string }>;
  /** Run as this uid/gid (the agent must be root); the agent's own when unset. */
  uid?: number;
  /** Joined right after spawn, before workerd reads its config or loads any worker. */
  cgroup?: Cgroup;
  onLog?: (stream: "stdout" | "stderr", line: string) => void;
  /** A worker's console line, marked with its revision by the router (unchecked: any in the process). */
  onWorkerLog?: (revision: string, stream: "stdout" | "stderr", text: string) => void;
  /** A request was refused for lack of the gateway secret. */
  onForbidden?: () => void;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const STDERR_TAIL = 30;
const MAX_LINE = 64 * 1024;

/** What the router puts before a worker's console line: "\u001eskiff:{ns}/{rev}\u001f" (router.js CONSOLE_SOURCE). */
export const WORKER_LOG_MARK = "\u001eskiff:";

/** util-linux's setpriv, where present (Debian's util-linux is essential). */
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

/**
 * Run workerd through `setpriv --pdeathsig KILL`: it dies with the agent that
 * started it, even when that agent is SIGKILLed and no agent ever runs on
 * this host again (its own process group keeps it out of the agent's
 * signals otherwise). A restarted agent kills the processes it finds anyway,
 * so nothing of value outlives the agent. A binary that cannot be run is
 * spawned as is, so that the error names it.
 */
function withParentDeathSignal(binary: string, args: string[]): [string, string[]] {
  if (SETPRIV === undefined) return [binary, args];
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    return [binary, args];
  }
  return [SETPRIV, ["--pdeathsig", "KILL", "--", binary, ...args]];
}

/** Split a stream into lines without unbounded buffering. */
function onLines(stream: NodeJS.ReadableStream | null, each: (line: string) => void): void {
  if (!stream) return;
  let partial = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const text = partial + chunk;
    const lines = text.split("\n");
    partial = lines.pop() ?? "";
    if (partial.length > MAX_LINE) partial = partial.slice(-MAX_LINE);
    for (const line of lines) each(line);
  });
  stream.on("end", () => {
    if (partial) each(partial);
    partial = "";
  });
}

export class WorkerdProcess {
  readonly id: string;
  readonly child: ChildProcess;
  readonly startedAt = performance.now();
  /** Resolves once both sockets listen; rejects if the process dies first. */
  readonly ready: Promise<void>;
  readonly exited: Promise<ExitInfo>;
  /** Revisions this process fetched code for (= its loader entries). */
  readonly loaded = new Set<string>();
  /** Revision -> when it last became busy; present while it has requests in flight. */
  readonly busy = new Map<string, number>();
  /** Revision -> loads in progress (isolate creation and module evaluation). */
  readonly loading = new Map<string, number>();
  readonly stderrTail: string[] = [];
  controlPort: number | undefined;
  exitInfo: ExitInfo | undefined;
  /** Why the pool killed it (stall, recycle, stop); undefined for a crash. */
  killReason: string | undefined;
  /** When the router or a worker last said JS ran (a line of progress, with in-flight tracking on). */
  progressAt: number | undefined;
  /** The process's CPU time (ms) at about progressAt (sampled at most every 10 ms). */
  progressCpuMs: number | undefined;
  /**
   * When the router itself last said JS ran: its lines carry the token, which
   * no worker can read, so unlike a worker's they cannot be forged.
   */
  routerProgressAt: number | undefined;
  /** The process's CPU time (ms) at about routerProgressAt. */
  routerProgressCpuMs: number | undefined;
  #progressSampledAt = Number.NEGATIVE_INFINITY;
  /** A probe started at this time has not answered yet. */
  probeStartedAt: number | undefined;
  /** The process's CPU time (ms) when that probe started. */
  probeCpuMs = 0;
  /** Why it could not be put into its cgroup. */
  joinError: string | undefined;
  /** A stall was detected in it (its death is no crash). */
  stalled = false;
  readonly namespace: string;
  /**
   * Control requests in order, one at a time: a park is seen before a later
   * load, and cold loads (isolate creation and module evaluation) run one
   * after another, so each one's start and end are signs of progress to the
   * watchdog, as their CPU adds up on a throttled share.
   */
  #client: Client | undefined;
  /**
   * Probes and resumes of standbys: answered at once by the router, they
   * must not queue behind cold loads (a wake of many standbys at once, a
   * module whose top level awaits I/O).
   */
  #quick: Pool | undefined;
  /** Revisions this agent parked here (a scheduling hint; the router decides what a load does). */
  readonly #parked = new Set<string>();
  readonly #token: string;
  /**
   * The line a worker's isolate writes when one of its requests starts or
   * settles (router.js PROBE_SOURCE): random per process, held in a module
   * of the isolate that the worker cannot read (the token never enters a
   * worker's isolate). It can still make the wrapper write it; see
   * routerProgressAt.
   */
  readonly #progressLine = randomBytes(16).toString("hex");

  constructor(options: WorkerdProcessOptions) {
    this.id = options.id;
    this.namespace = options.namespace;
    this.#token = options.token;
    const args = [
      "serve",
      "--experimental",
      options.configPath,
      "--socket-fd",
      `${SOCKET_HTTP}=3`,
      "--control-fd",
      "4",
    ];
    const [command, argv] = withParentDeathSignal(options.binary, args);
    this.child = spawn(command, argv, {
      stdio: ["ignore", "pipe", "pipe", options.listenFd, "pipe"],
      cwd: options.cwd,
      // Only what the config reads: the agent's own environment stays out.
      env: {
        SKIFF_TOKEN: options.token,
        SKIFF_PROCESS: options.id,
        SKIFF_NAMESPACE: options.namespace,
        SKIFF_GATEWAY_SECRET: options.gatewaySecret,
        SKIFF_PROGRESS: this.#progressLine,
        // Set before it serves anything: no request reaches a refused revision meanwhile.
        SKIFF_REFUSED: JSON.stringify(options.refused ?? {}),
      },
      // Its own process group: a terminal's SIGINT goes to the agent, which drains.
      detached: true,
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
    });
    if (options.cgroup && this.child.pid !== undefined) {
      // The child is still starting up (exec, dynamic loading); nothing of any
      // worker has run. A failure leaves it outside its limits: kill it.
      try {
        options.cgroup.join(this.child.pid);
      } catch (err) {
        this.joinError = (err as Error).message;
        this.child.kill("SIGKILL");
      }
    }
    this.exited = new Promise((resolve) => {
      // "close", not "exit": stderr (the abort message) has been read by then.
      this.child.once("close", (code, signal) => {
        this.exitInfo = { code, signal };
        this.#client?.destroy().catch(() => {});
        this.#quick?.destroy().catch(() => {});
        resolve(this.exitInfo);
      });
    });
    const prefix = `${options.token} `;
    onLines(this.child.stdout, (line) => {
      if (line === this.#progressLine) this.#progress(false);
      else if (line === `${options.token} f`) options.onForbidden?.();
      else if (line.startsWith(prefix)) this.#track(line.slice(prefix.length));
      else this.#output(options, "stdout", line);
    });
    onLines(this.child.stderr, (line) => {
      this.stderrTail.push(line.length > 500 ? line.slice(0, 500) : line);
      if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
      this.#output(options, "stderr", line);
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const listening = new Set<string>();
      onLines(this.child.stdio[4] as NodeJS.ReadableStream | null, (line) => {
        let event: { event?: string; socket?: string; port?: number };
        try {
          event = JSON.parse(line);
        } catch {
          return;
        }
        if (event.event !== "listen" || !event.socket) return;
        if (event.socket === SOCKET_CONTROL) this.controlPort = event.port;
        listening.add(event.socket);
        if (listening.has(SOCKET_HTTP) && listening.has(SOCKET_CONTROL)) resolve();
      });
      this.child.once("error", (err) =>
        reject(
          new UnavailableError(
            `cannot run workerd at ${options.binary} (option workerdPath): ${err.message}`,
          ),
        ),
      );
      void this.exited.then(() =>
        reject(new UnavailableError(`workerd exited before listening: ${this.exitReason()}`)),
      );
    });
    // Callers may never await ready (e.g. when it is killed first).
    this.ready.catch(() => {});
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** `b <rev>` when a revision gets its first request in flight, `i <rev>` when its last one ends. */
  #track(message: string): void {
    this.#progress(true);
    if (message === "p") return;
    const revision = message.slice(2);
    if (message.startsWith("b ")) this.busy.set(revision, Date.now());
    else if (message.startsWith("i ")) this.busy.delete(revision);
    else if (message.startsWith("s "))
      this.loading.set(revision, (this.loading.get(revision) ?? 0) + 1);
    else if (message.startsWith("e ")) {
      const n = (this.loading.get(revision) ?? 1) - 1;
      if (n > 0) this.loading.set(revision, n);
      else this.loading.delete(revision);
    }
  }

  /**
   * JS ran in the router (a beat, a request or a load starting or ending) or
   * a worker's request started or settled: the thread is not held. The CPU
   * clock read here is what the watchdog counts a stall's CPU from, so a
   * process working through a backlog (short tasks, each a sign of progress:
   * on a starved host, or a burst that workerd runs back to back without
   * I/O) never adds up to one.
   */
  #progress(fromRouter: boolean): void {
    const now = performance.now();
    this.progressAt = now;
    if (now - this.#progressSampledAt >= 10) {
      this.#progressSampledAt = now;
      this.progressCpuMs = this.cpuMs();
    }
    if (fromRouter) {
      this.routerProgressAt = now;
      this.routerProgressCpuMs = this.progressCpuMs;
    }
  }

  /** A line of output: a worker's console line (the router's mark), or workerd's own. */
  #output(options: WorkerdProcessOptions, stream: "stdout" | "stderr", line: string): void {
    if (line.startsWith(WORKER_LOG_MARK) && options.onWorkerLog) {
      const end = line.indexOf("\u001f", WORKER_LOG_MARK.length);
      if (end > 0) {
        const text = line.slice(end + 1);
        options.onWorkerLog(
          line.slice(WORKER_LOG_MARK.length, end),
          stream,
          text.startsWith(" ") ? text.slice(1) : text,
        );
        return;
      }
    }
    options.onLog?.(stream, line);
  }

  /** Revisions with requests in flight, most recently busy first. */
  inFlight(): string[] {
    return [...this.busy.entries()].sort((a, b) => b[1] - a[1]).map(([revision]) => revision);
  }

  #control(): Client {
    if (this.controlPort === undefined) throw new Error("workerd control port not known yet");
    this.#client ??= new Client(`http://127.0.0.1:${this.controlPort}`, {
      pipelining: 1,
      keepAliveTimeout: 10_000,
    });
    return this.#client;
  }

  /**
   * CPU time (user + system) of the process's main thread so far, in ms;
   * undefined once gone. The main thread runs the isolates' JavaScript; V8's
   * helper threads (concurrent GC, background compiles) are left out, so they
   * never count toward a stall.
   */
  cpuMs(): number | undefined {
    if (this.pid === undefined) return undefined;
    try {
      const stat = readFileSync(`/proc/${this.pid}/task/${this.pid}/stat`, "utf8");
      // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
    } catch {
      return undefined;
    }
  }

  /** Resident memory in bytes; undefined once gone. */
  rssBytes(): number | undefined {
    if (this.pid === undefined) return undefined;
    try {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      return match ? Number(match[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  #quickControl(): Pool {
    if (this.controlPort === undefined) throw new Error("workerd control port not known yet");
    this.#quick ??= new Pool(`http://127.0.0.1:${this.controlPort}`, {
      connections: QUICK_CONNECTIONS,
      pipelining: 1,
      keepAliveTimeout: 10_000,
    });
    return this.#quick;
  }

  async #post(path: string, quick = false): Promise<{ status: number; body: string }> {
    const response = await (quick ? this.#quickControl() : this.#control()).request({
      path,
      method: "POST",
      headers: { "x-skiff-token": this.#token },
    });
    return { status: response.statusCode, body: await response.body.text() };
  }

  /** One health request on the control socket; true when it answered 200. */
  async probe(): Promise<boolean> {
    const response = await this.#quickControl().request({
      path: "/health",
      method: "GET",
      headers: { "x-skiff-token": this.#token },
    });
    await response.body.dump();
    return response.statusCode === 200;
  }

  /** Tell the router to stop serving a revision but keep its isolate for a later load (a standby). */
  async park(revision: string): Promise<void> {
    await this.#post(`/park?revision=${encodeURIComponent(revision)}`);
    this.#parked.add(revision);
  }

  /** Tell the router to stop serving a revision it has loaded. */
  async forget(revision: string): Promise<void> {
    this.#parked.delete(revision);
    await this.#post(`/forget?revision=${encodeURIComponent(revision)}`);
  }

  /** Load a revision's isolate (its module is evaluated, its handler not called). */
  async load(revision: string): Promise<LoadResult> {
    // A standby's resume is a lookup in the router: not behind the cold loads.
    const resume = this.#parked.delete(revision);
    const { status, body } = await this.#post(
      `/load?revision=${encodeURIComponent(revision)}`,
      resume,
    );
    if (status !== 200)
      throw new UnavailableError(`workerd control answered ${status}: ${body.slice(0, 200)}`);
    return JSON.parse(body) as LoadResult;
  }

  /** Refuse a revision's requests with a 503 and `message` until `until` (ms since epoch). */
  async refuse(revision: string, until: number, message: string): Promise<void> {
    const query = new URLSearchParams({ revision, until: String(until), message });
    await this.#post(`/refuse?${query}`);
  }

  /** Mark every answer as coming from a process stopped at `until` (ms since epoch): a recycle's hand-over. */
  async drainAt(until: number): Promise<void> {
    await this.#post(`/drain?until=${until}`);
  }

  kill(signal: NodeJS.Signals, reason: string): void {
    this.killReason ??= reason;
    if (this.alive) this.child.kill(signal);
  }

  /** A readable account of why the process ended. */
  exitReason(): string {
    const info = this.exitInfo;
    if (!info) return "still running";
    if (this.joinError) return `workerd could not be put into its cgroup: ${this.joinError}`;
    const stderr = this.stderrTail.join("\n");
    if (/heap out of memory|Reached heap limit|OOM error/i.test(stderr)) {
      return "a worker exceeded its memory limit (JavaScript heap out of memory); workerd aborted";
    }
    if (info.signal) {
      const last = this.stderrTail.findLast((line) => /error|fatal|failed/i.test(line));
      return `workerd was killed by ${info.signal}${last ? `: ${last.trim()}` : ""}`;
    }
    const last = this.stderrTail.findLast((line) => line.trim() !== "");
    return `workerd exited with code ${info.code}${last ? `: ${last.trim()}` : ""}`;
  }
}
