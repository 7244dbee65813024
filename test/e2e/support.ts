/**
 * End-to-end helpers: every Skiff part runs as the real `skiff` command in its
 * own process group (so that cleanup can stop a process and whatever it
 * started, even after a failed assertion), plus a bounded closed-loop load
 * generator that keeps every status and body, and Redis / Docker read-outs.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import Docker from "dockerode";
import type { Redis } from "ioredis";
import { Agent as HttpAgent, request } from "undici";
import { parseRoutingEntry, type RoutingEntry, routingKeys } from "../../src/control/routing.ts";
import { fleetKeys } from "../../src/fleet/keys.ts";
import type { Endpoint } from "../../src/fleet/types.ts";
import { CLI, watchOutput } from "../support/cli.ts";
import { containersOf } from "../support/containers.ts";
import { inNetns } from "../support/netns.ts";
import { waitFor } from "../support/wait.ts";

// ---------------------------------------------------------------- processes

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  output(): string;
  /** The first match of `pattern` in the output so far or to come. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  readonly exited: Promise<number | null>;
  alive(): boolean;
  /** SIGKILL to the whole process group (the process and everything it started). */
  killGroup(): void;
  /** SIGTERM, wait up to graceMs for the exit, then SIGKILL the group. Resolves to the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

const running = new Set<Proc>();

/** `skiff ...args` as a child process in its own process group (inside `netns` when given). */
export function spawnSkiff(
  name: string,
  args: string[],
  env: Record<string, string> = {},
  netns?: string,
): Proc {
  const [command, argv] = inNetns(netns, [process.execPath, CLI, ...args]);
  const child = spawn(command, argv, {
    env: { ...process.env, SKIFF_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const watched = watchOutput(child, { name, defaultTimeoutMs: 30_000 });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  const killGroup = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {}
  };
  const proc: Proc = {
    name,
    child,
    output: watched.output,
    exited,
    alive,
    killGroup,
    waitFor: watched.waitFor,
    async stop(graceMs = 20_000) {
      if (alive()) {
        child.kill("SIGTERM");
        const code = await Promise.race([exited, sleep(graceMs).then(() => "timeout" as const)]);
        // Anything it started and left behind goes too.
        killGroup();
        if (code === "timeout") return exited;
        return code;
      }
      killGroup();
      return exited;
    },
  };
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

/** Stop every process spawned here that still runs (for afterAll, also after failures). */
export async function stopAllProcesses(graceMs = 20_000): Promise<void> {
  await Promise.all([...running].map((p) => p.stop(graceMs)));
}

/** The tail of every process's output, for a failed test's report. */
export function outputs(procs: Proc[], lines = 40): string {
  return procs
    .map((p) => `--- ${p.name} ---\n${p.output().split("\n").slice(-lines).join("\n")}`)
    .join("\n");
}

/**
 * A setup step that several tests build on, run by the first test that needs
 * it (the others reuse its result): each test calls the steps it depends on,
 * so that it passes alone (-t) as well as in order.
 */
export function step<T>(run: () => Promise<T>): () => Promise<T> {
  let done: Promise<T> | undefined;
  return () => {
    done ??= run();
    return done;
  };
}

/** `skiff api` arguments as the fleet tests run it: an ephemeral port, plain HTTP, this admin token; `flags` add to them. */
export function apiArgs(token: string, ...flags: string[]): string[] {
  return ["api", "--port", "0", "--no-tls", "--token", token, ...flags];
}

/**
 * `skiff agent` arguments as the fleet tests run it: on its own loopback
 * address, heartbeat every 250 ms with a record living `ttlMs`.
 */
export function agentArgs(id: string, address: string, ttlMs = 1_500): string[] {
  return [
    "agent",
    "--id",
    id,
    "--address",
    address,
    "--host",
    address,
    "--port",
    "0",
    "--heartbeat-interval",
    "250",
    "--heartbeat-ttl",
    String(ttlMs),
    "--resync-interval",
    "1000",
    "--isolate-processes",
    "1",
  ];
}

/**
 * `skiff gateway` arguments as the fleet tests run it: ephemeral ports, a
 * resync every second and agents checked every 250 ms (so a dead agent's
 * endpoints go quickly).
 */
export function gatewayArgs(id: string): string[] {
  return [
    "gateway",
    "--id",
    id,
    "--port",
    "0",
    "--admin-port",
    "0",
    "--resync-interval",
    "1000",
    "--agent-check-interval",
    "250",
  ];
}

/** The lease of a scaler run with scalerArgs: a dead leader's standby takes over within it. */
export const SCALER_LEASE_MS = 1_500;

/**
 * `skiff scaler` arguments as the fleet tests run it: an ephemeral admin port,
 * decisions every 500 ms and a short lease; `flags` add to them.
 */
export function scalerArgs(...flags: string[]): string[] {
  return [
    "scaler",
    "--port",
    "0",
    "--tick-interval",
    "500ms",
    "--lease",
    String(SCALER_LEASE_MS),
    ...flags,
  ];
}

/** Knative's shortest stable window and a 3 s scale-to-zero grace: a scale to zero a test can wait out. */
export const SHORT_WINDOWS = ["--stable-window", "6s", "--scale-to-zero-grace", "3s"];

export interface ScalerProc {
  proc: Proc;
  adminUrl: string;
}

/** The scaler whose /readyz says it leads. */
export async function leadingScaler<T extends ScalerProc>(scalers: T[]): Promise<T | undefined> {
  for (const s of scalers) {
    if (!s.proc.alive()) continue;
    const res = await fetch(`${s.adminUrl}/readyz`).catch(() => undefined);
    if (res && (await res.text()) === "ok (leader)") return s;
  }
  return undefined;
}

/** Autoscaler passes a scaler has made (its tick histogram's count). */
export async function scalerTicks(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return Number(
    /^skiff_scaler_tick_duration_seconds_count(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0,
  );
}

// ---------------------------------------------------------------- docker

const docker = new Docker();

/** Running containers of a revision that the given agents started. */
export async function runningContainers(agentIds: string[], revision: string): Promise<number> {
  let n = 0;
  for (const id of agentIds) {
    n += (await containersOf(id)).filter(
      (c) => c.State === "running" && c.Labels["skiff.revision"] === revision,
    ).length;
  }
  return n;
}

/** SIGKILL an agent's containers (what a host losing power does to them). */
export async function killContainers(agentId: string): Promise<number> {
  const list = (await containersOf(agentId)).filter((c) => c.State === "running");
  await Promise.all(list.map((c) => docker.getContainer(c.Id).kill({ signal: "SIGKILL" })));
  return list.length;
}

// ---------------------------------------------------------------- fleet read-outs

/** Ready instances of a revision by agent, counting only agents that are alive. */
export async function readyByAgent(
  redis: Redis,
  prefix: string,
  revision: string,
  namespace = "default",
): Promise<Record<string, number>> {
  const keys = fleetKeys(prefix);
  const all = await redis.hgetall(keys.endpoints(namespace, revision));
  const out: Record<string, number> = {};
  const alive = new Map<string, boolean>();
  for (const json of Object.values(all)) {
    const e = JSON.parse(json) as Endpoint;
    if (!alive.has(e.agentId))
      alive.set(e.agentId, (await redis.exists(keys.agent(e.agentId))) > 0);
    if (alive.get(e.agentId)) out[e.agentId] = (out[e.agentId] ?? 0) + 1;
  }
  return out;
}

/** The routing table entry published for a host (what the gateways serve by). */
export async function routingEntry(
  redis: Redis,
  prefix: string,
  host: string,
): Promise<RoutingEntry | undefined> {
  const json = await redis.hget(routingKeys(prefix).hosts, host);
  return json ? parseRoutingEntry(json) : undefined;
}

/**
 * Wait until the table for `host` sends everything to `revisions` (sorted
 * names), then a little longer for the gateways to apply it: `service create
 * / update` return once the Service is Ready, which can be a few ms before the
 * scaler has published the new table.
 */
export async function published(
  redis: Redis,
  prefix: string,
  host: string,
  revisions: string[],
): Promise<void> {
  await waitUntil(`${host} -> ${revisions.join(", ")} published`, async () => {
    const entry = await routingEntry(redis, prefix, host);
    const names = (entry?.targets ?? []).map((t) => t.revision).sort();
    return JSON.stringify(names) === JSON.stringify([...revisions].sort());
  });
  // Nothing a gateway exposes says it applied the table (it does on the pub/sub
  // message that follows the write): a short grace instead.
  await sleep(200);
}

export const total = (byAgent: Record<string, number>) =>
  Object.values(byAgent).reduce((a, b) => a + b, 0);

/** Poll until `check` returns something; e2e waits are longer and coarser by default. */
export function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  return waitFor(what, check, timeoutMs, everyMs);
}

// ---------------------------------------------------------------- traffic

const http = new HttpAgent({ connections: 64, keepAliveTimeout: 4_000 });

export interface Answer {
  status: number;
  body: string;
}

/** One GET through a gateway with the given Host. */
export async function hit(gatewayUrl: string, host: string, path = "/"): Promise<Answer> {
  const res = await request(`${gatewayUrl}${path}`, {
    headers: { host },
    dispatcher: http,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  return { status: res.statusCode, body: (await res.body.text()).trim() };
}

/** `n` GETs, at most `concurrency` at once; returns body -> count (non-200 as "HTTP {status}: body"). */
export async function tally(
  gatewayUrl: string,
  host: string,
  n: number,
  concurrency = 8,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const a = await hit(gatewayUrl, host);
        const key = a.status === 200 ? a.body : `HTTP ${a.status}: ${a.body}`;
        counts[key] = (counts[key] ?? 0) + 1;
      }
    }),
  );
  return counts;
}

export interface LoadResult {
  requests: number;
  ok: number;
  /** Non-2xx answers and errors, with what they said (first 20 kept). */
  failures: number;
  failureSamples: string[];
  /** First lines of 2xx bodies -> count. */
  bodies: Record<string, number>;
  durationMs: number;
}

export interface Load {
  /** Stop sending, wait for the requests in flight, and report. */
  stop(): Promise<LoadResult>;
  /** A snapshot of the result so far. */
  current(): LoadResult;
}

/** Wait until `load` has had `n` more answers (any status) than now: proof that traffic flowed on. */
export async function answered(load: Load, n: number, timeoutMs = 30_000): Promise<void> {
  const count = () => {
    const r = load.current();
    return r.ok + r.failures;
  };
  const from = count();
  await waitUntil(`${n} more answers`, () => count() >= from + n, timeoutMs, 20);
}

/**
 * A closed loop: `connections` workers, each sending its next GET when the
 * previous answered, spread over the gateways round-robin. Bounded by
 * `maxMs` even if nobody calls stop().
 */
export function startLoad(options: {
  gateways: string[];
  host: string;
  path?: string;
  connections: number;
  maxMs?: number;
}): Load {
  const { gateways, host, path = "/", connections, maxMs = 60_000 } = options;
  const started = Date.now();
  const deadline = started + maxMs;
  let stopped = false;
  const r: LoadResult = {
    requests: 0,
    ok: 0,
    failures: 0,
    failureSamples: [],
    bodies: {},
    durationMs: 0,
  };
  const fail = (what: string) => {
    r.failures++;
    if (r.failureSamples.length < 20) r.failureSamples.push(what);
  };
  const workers = Array.from({ length: connections }, async (_, i) => {
    const gateway = gateways[i % gateways.length]!;
    while (!stopped && Date.now() < deadline) {
      r.requests++;
      try {
        const a = await hit(gateway, host, path);
        if (a.status >= 200 && a.status < 300) {
          r.ok++;
          const line = a.body.split("\n")[0]!;
          r.bodies[line] = (r.bodies[line] ?? 0) + 1;
        } else fail(`HTTP ${a.status} via ${gateway}: ${a.body.slice(0, 200)}`);
      } catch (err) {
        fail(`error via ${gateway}: ${(err as Error).message}`);
      }
    }
  });
  const snapshot = () => ({
    ...r,
    failureSamples: [...r.failureSamples],
    bodies: { ...r.bodies },
    durationMs: Date.now() - started,
  });
  return {
    async stop() {
      stopped = true;
      await Promise.all(workers);
      return snapshot();
    },
    current: snapshot,
  };
}
