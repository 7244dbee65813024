/**
 * Issue 12's figures from zero and under load, against a private `skiff up`
 * WITH containers (Docker), everything through its gateway on 127.0.0.1:
 *
 * (a) 100 worker services and 25 container services at zero (initial-scale 0;
 *     each was warmed once at deploy, scaler/warmup.ts, so the agent holds
 *     the workers' isolates and the containers, paused, as standbys),
 *     all hit at once: p50/p95/max per kind and failures; then, in the same
 *     run, the same burst again while they are warm (the ratio is the cold
 *     cost). Knative's published figure for 100 at once is ~22 s p95.
 * (b) Throughput of a warm worker revision beside the same hello app as a
 *     container revision (closed loop, autocannon, Host header).
 * (c) KPA step: 0 -> 100 concurrent clients on a container revision with
 *     target 10 (each request sleeps 100 ms): when its ready endpoints (the
 *     fleet's endpoint table, what gateways route to) reach 1, 5 and 10.
 * (e) The containers' baseline: as many `docker run -d -p 127.0.0.1:P:8080`
 *     of the same image at once as the burst has container services, each
 *     to its first answer (Docker's own throughput on this host).
 * (d) One worker revision from zero at a time, warm agent (its namespace's
 *     workerd processes run for another revision): request to response over
 *     a keep-alive connection, beside warm requests to that other revision.
 *
 *   node bench/zero-burst.ts [--duration 8] [--trials 2] [--step-seconds 20]
 *
 * Writes its block of BENCHMARKS.md. Every load is bounded in time and count.
 */
import type { EventEmitter } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { createRequire } from "node:module";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import Docker from "dockerode";
import { buildCli } from "../scripts/build-cli.ts";
import { fleetKeys } from "../src/fleet/keys.ts";
import { connectRedis } from "../src/redis/connect.ts";
import { helloImage } from "../test/support/images.ts";
import { dockerRuns } from "./docker-runs.ts";
import { allReady, startSkiffUp } from "./skiff-up.ts";
import { figureTable, type Summary, summarize, writeBenchmarkBlock } from "./stats.ts";

interface AutocannonResult {
  requests: { average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (
  options: Record<string, unknown>,
  done: (err: Error | null, result: AutocannonResult) => void,
) => EventEmitter & { stop(): void };
// autocannon ships no types; this is the part of its API used here.
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "8" },
    trials: { type: "string", default: "2" },
    "step-seconds": { type: "string", default: "20" },
    sandboxes: { type: "string", default: "8" },
  },
});
const DURATION_S = Number(values.duration);
const TRIALS = Number(values.trials);
const STEP_MS = Number(values["step-seconds"]) * 1000;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKERS = 100;
const CONTAINERS = 25;
const STEP_CLIENTS = 100;
const STEP_SLEEP_MS = 100;
const STEP_TARGET = 10;
const STEP_MAX_REQUESTS = 100_000;
const TPUT_MAX_REQUESTS = 2_000_000;
const BURST_TIMEOUT_MS = 30_000;
const KNATIVE_P95_MS = 22_000;
const UP_LOG = join(tmpdir(), "skiff-bench-zero-burst-up.log");
const PANIC_WINDOW_MS = 6_000;
/** The agent's network sandboxes (agent.containerSandboxes.count; 8 by default, as here). */
const SANDBOXES = Number(values.sandboxes);
const ONE_BY_ONE = 20;
/** What limits the one-by-one figure, from profiling (BENCHMARKS.md has the breakdown). */
const ONE_BY_ONE_LIMIT =
  "the wake's hops (gateway -> Redis -> agent, the claim, the standby's resume in workerd, the endpoint back through Redis: ~3 ms on a quiet host) and the resumed isolate's first request, with every component and the client on 2 cores; see the breakdown below the table";

const HELLO_WORKER = 'export default { fetch: () => new Response("Hello World!\\n") };';

function service(
  ns: string,
  name: string,
  kind: "worker" | "container",
  image: string,
  annotations: Record<string, string>,
): string {
  const notes = Object.entries(annotations)
    .map(([k, v]) => `\n        ${k}: "${v}"`)
    .join("");
  const spec =
    kind === "worker"
      ? `worker:\n        source: |\n          ${HELLO_WORKER}`
      : `containers:\n        - image: ${image}`;
  return `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  template:
    metadata:
      annotations:${notes || " {}"}
    spec:
      ${spec}
`;
}

const loadBefore = loadavg()[0] ?? 0;
const stages: Record<string, number> = {};
const stage = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    stages[name] = Math.round(performance.now() - t0);
    console.log(`stage ${name}: ${stages[name]} ms`);
  }
};

await buildCli();
const image = await stage("image", () => helloImage());
const up = await stage("up", () =>
  startSkiffUp({
    label: "zero-burst",
    containers: true,
    logLevel: "info",
    config: {
      // The grace: the served-once revisions of (d) reach zero soon after their 6 s window.
      autoscaler: { allowZeroInitialScale: true, scaleToZeroGracePeriod: "1s" },
      // 100 isolates and 25+ containers on one 2-core host: room for them in
      // the agent's accounting (idle instances cost no CPU).
      agent: {
        capacity: { cpuMillis: 40_000, maxInstances: 2_500 },
        isolateProcesses: 4,
        isolateSandbox: { memoryMb: 8_192 },
        // Room for the 26 containers' paused standbys (their warm-ups' and the
        // step's; 16 by default); the host has far more than the 1 GiB floor.
        containerStandby: { maxStandbys: 32 },
        containerSandboxes: { count: SANDBOXES },
      },
    },
  }),
);
const redis = connectRedis(
  `redis://:${readFileSync(join(up.stateDir, "redis.password"), "utf8").trim()}@127.0.0.1:${readFileSync(join(up.stateDir, "redis.port"), "utf8").trim()}`,
);
const keys = fleetKeys("skiff:");
const docker = new Docker();
const endpoints = (ns: string, svc: string) => redis.hlen(keys.endpoints(ns, `${svc}-00001`));
const hostOf = (ns: string, svc: string) => `${svc}.${ns}.localhost`;

interface Hit {
  ms: number;
  ok: boolean;
  status: number | string;
  /** The start of the body of an answer that is not 200 (what the gateway said). */
  said?: string;
}

/** One request on a fresh connection through the gateway. */
function hit(host: string, path = "/", agent: Agent | false = false): Promise<Hit> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: up.ports.gateway,
        path,
        headers: { host },
        agent,
        timeout: BURST_TIMEOUT_MS,
      },
      (res) => {
        let said = "";
        res.on("data", (d) => {
          if (res.statusCode !== 200 && said.length < 200) said += d;
        });
        res.once("end", () =>
          resolve({
            ms: performance.now() - t0,
            ok: res.statusCode === 200,
            status: res.statusCode ?? 0,
            ...(said ? { said: said.slice(0, 200) } : {}),
          }),
        );
      },
    );
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", (e) => resolve({ ms: performance.now() - t0, ok: false, status: e.message }));
    req.end();
  });
}

type Kind = "workers" | "containers";

interface Burst {
  workers: Summary;
  containers: Summary;
  failed: Record<Kind, { n: number; statuses: string[]; said: string[] }>;
  /**
   * From the burst to the readyAt of each revision's endpoint, read from the
   * endpoint table at the burst's end (an instance restarted meanwhile counts
   * from its restart); `none`: revisions without one by then.
   */
  instanceReady: Record<Kind, Summary & { none: number }>;
}

/** ms from `sinceEpoch` to the first endpoint of each revision; undefined where it has none. */
async function readySince(ns: string, names: string[], sinceEpoch: number) {
  return Promise.all(
    names.map(async (svc) => {
      const all = Object.values(await redis.hgetall(keys.endpoints(ns, `${svc}-00001`)));
      if (all.length === 0) return undefined;
      return (
        Math.min(...all.map((j) => (JSON.parse(j) as { readyAt: number }).readyAt)) - sinceEpoch
      );
    }),
  );
}

const epochs: Record<string, number> = {};

/** up's log lines (JSON) between two epochs. */
function logLines(from: number, to: number): Record<string, unknown>[] {
  return up
    .output()
    .split("\n")
    .flatMap((line) => {
      if (!line.startsWith("{")) return [];
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        const t = Number(o.time);
        return t >= from && t <= to ? [o] : [];
      } catch {
        return [];
      }
    });
}

/** What the log says about the control plane during a stage. */
function troubles(from: number, to: number) {
  const lines = logLines(from, to);
  const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
  return {
    stalledRestarts: count("worker stalled its workerd process"),
    lostLeader: count("no longer the leader"),
  };
}

async function burst(): Promise<Burst> {
  const epoch = Date.now();
  const w = Array.from({ length: WORKERS }, (_, i) => hit(hostOf("zw", `w-${i}`)));
  const c = Array.from({ length: CONTAINERS }, (_, i) => hit(hostOf("zc", `c-${i}`)));
  const [wr, cr] = await Promise.all([Promise.all(w), Promise.all(c)]);
  const wNames = Array.from({ length: WORKERS }, (_, i) => `w-${i}`);
  const cNames = Array.from({ length: CONTAINERS }, (_, i) => `c-${i}`);
  const wReady = await readySince("zw", wNames, epoch);
  const cReady = await readySince("zc", cNames, epoch);
  const sorted = cReady.flatMap((x) => (x === undefined ? [] : [x])).sort((a, b) => a - b);
  console.log(JSON.stringify({ containerEndpointsMs: sorted }));
  const ready = (xs: (number | undefined)[]) => ({
    ...summarize(xs.filter((x): x is number => x !== undefined)),
    none: xs.filter((x) => x === undefined).length,
  });
  const failed = (rs: Hit[]) => {
    const bad = rs.filter((r) => !r.ok);
    return {
      n: bad.length,
      statuses: [...new Set(bad.map((r) => String(r.status)))],
      said: [...new Set(bad.flatMap((r) => (r.said ? [`${r.status} ${r.said}`] : [])))].slice(0, 4),
    };
  };
  return {
    workers: summarize(wr.map((r) => r.ms)),
    containers: summarize(cr.map((r) => r.ms)),
    failed: { workers: failed(wr), containers: failed(cr) },
    instanceReady: { workers: ready(wReady), containers: ready(cReady) },
  };
}

async function throughput(host: string): Promise<{ rps: number; errors: number; non2xx: number }> {
  const run = (duration: number) =>
    new Promise<AutocannonResult>((resolve, reject) => {
      let n = 0;
      const inst = autocannon(
        {
          url: `http://127.0.0.1:${up.ports.gateway}/`,
          headers: { host },
          connections: 50,
          duration,
        },
        (err, result) => (err ? reject(err) : resolve(result)),
      );
      inst.on("response", () => {
        if (++n >= TPUT_MAX_REQUESTS) inst.stop();
      });
    });
  await run(2); // warm-up: connections, instance, JIT
  const r = await run(DURATION_S);
  return { rps: r.requests.average, errors: r.errors + r.timeouts, non2xx: r.non2xx };
}

interface Step {
  at: Record<number, number | undefined>;
  /** [ms since the step, ready endpoints] at each change. */
  changes: [number, number][];
  maxReady: number;
  sent: number;
  failed: number;
  statuses: string[];
}

/** 100 closed-loop clients from t0 until STEP_MS (or STEP_MAX_REQUESTS); ready endpoints every 100 ms. */
async function step(): Promise<Step> {
  const host = hostOf("step", "step");
  const agent = new Agent({ keepAlive: true, maxSockets: STEP_CLIENTS });
  const t0 = performance.now();
  const until = t0 + STEP_MS;
  let sent = 0;
  let failed = 0;
  const statuses = new Set<string>();
  const client = async () => {
    while (performance.now() < until && sent < STEP_MAX_REQUESTS) {
      sent++;
      const r = await hit(host, `/?sleep=${STEP_SLEEP_MS}`, agent);
      if (!r.ok) {
        failed++;
        statuses.add(String(r.status));
      }
    }
  };
  const at: Record<number, number | undefined> = { 1: undefined, 5: undefined, 10: undefined };
  let maxReady = 0;
  const changes: [number, number][] = [];
  const watch = (async () => {
    while (performance.now() < until) {
      const n = await endpoints("step", "step");
      const t = performance.now() - t0;
      if (n !== changes.at(-1)?.[1]) changes.push([Math.round(t), n]);
      for (const k of [1, 5, 10]) if (n >= k && at[k] === undefined) at[k] = t;
      maxReady = Math.max(maxReady, n);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await Promise.all([...Array.from({ length: STEP_CLIENTS }, client), watch]);
  agent.destroy();
  return { at, changes, maxReady, sent, failed, statuses: [...statuses] };
}

/** CONTAINERS `docker run`s of the hello image at once, each to its first answer; removed after. */
async function dockerRunBurst(): Promise<Summary & { failed: number }> {
  const { times, failed } = await dockerRuns(image, {
    count: CONTAINERS,
    bench: "zero-burst",
    timeoutMs: BURST_TIMEOUT_MS,
    tolerateFailures: true,
  });
  return { ...summarize(times), failed };
}

interface OneByOne {
  cold: Summary;
  warm: Summary;
  failed: number;
}

/**
 * Each of ONE_BY_ONE revisions at zero (services `{prefix}-{i}` of namespace
 * "one"), one after another, beside warm requests to a running one.
 */
async function oneByOne(prefix: string): Promise<OneByOne> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const cold: number[] = [];
  const warm: number[] = [];
  let failed = 0;
  for (let i = 0; i < 5; i++) await hit(hostOf("one", "warm"), "/", agent); // connection, JIT
  for (let i = 0; i < ONE_BY_ONE; i++) {
    const w = await hit(hostOf("one", "warm"), "/", agent);
    const c = await hit(hostOf("one", `${prefix}-${i}`), "/", agent);
    warm.push(w.ms);
    cold.push(c.ms);
    if (!w.ok || !c.ok) failed++;
  }
  agent.destroy();
  return { cold: summarize(cold), warm: summarize(warm), failed };
}

try {
  const docs: string[] = [];
  const zero = { "autoscaling.knative.dev/initial-scale": "0" };
  for (let i = 0; i < WORKERS; i++) docs.push(service("zw", `w-${i}`, "worker", image, zero));
  for (let i = 0; i < CONTAINERS; i++) docs.push(service("zc", `c-${i}`, "container", image, zero));
  docs.push(service("one", "warm", "worker", image, {}));
  // Served once, then scaled to zero (a 6 s window and the 1 s grace of this up's config)...
  const quick = { "autoscaling.knative.dev/window": "6s" };
  for (let i = 0; i < ONE_BY_ONE; i++) docs.push(service("one", `o-${i}`, "worker", image, quick));
  // ... and never served (initial-scale 0): warmed at deploy, not served.
  for (let i = 0; i < ONE_BY_ONE; i++) docs.push(service("one", `n-${i}`, "worker", image, zero));
  docs.push(service("tput", "worker", "worker", image, {}));
  docs.push(service("tput", "container", "container", image, {}));
  docs.push(
    service("step", "step", "container", image, {
      ...zero,
      "autoscaling.knative.dev/target": String(STEP_TARGET),
    }),
  );
  const file = join(up.home, "services.yaml");
  writeFileSync(file, docs.join("---\n"));
  await stage("apply", async () => {
    const applied = await up.cli(["apply", "-f", file]);
    if (applied.code !== 0) throw new Error(`apply failed:\n${applied.out}`);
  });
  await stage("ready", async () => {
    for (const [ns, n] of [
      ["zw", WORKERS],
      ["zc", CONTAINERS],
      ["one", 2 * ONE_BY_ONE + 1],
      ["tput", 2],
      ["step", 1],
    ] as const) {
      const r = await allReady(up.api, ns, n, performance.now(), 180_000);
      if (r.ms === undefined) throw new Error(`${ns}: ${r.ready}/${n} Ready after 180 s`);
    }
  });
  // At zero: no ready endpoint for any of them (initial-scale 0). Each ran one
  // warm-up instance (scaler/warmup.ts), stopped once ready: the agent keeps
  // the workers' isolates and the containers, paused, as standbys.
  const placedNow = () =>
    Promise.all([
      ...Array.from({ length: WORKERS }, (_, i) => endpoints("zw", `w-${i}`)),
      ...Array.from({ length: CONTAINERS }, (_, i) => endpoints("zc", `c-${i}`)),
      ...Array.from({ length: ONE_BY_ONE }, (_, i) => endpoints("one", `n-${i}`)),
      endpoints("step", "step"),
    ]);
  await stage("warm-ups", async () => {
    const deadline = performance.now() + 60_000;
    for (;;) {
      const notZero = (await placedNow()).filter((n) => n > 0).length;
      if (notZero === 0) break;
      if (performance.now() > deadline) {
        throw new Error(`${notZero} revisions not at zero 60 s after they were Ready`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  // The containers' standbys: paused once drained, listed on the agent's record.
  const containerStandbys = async () => {
    let n = 0;
    for (const id of await redis.zrange(keys.agents, "0", "-1")) {
      const record = JSON.parse((await redis.get(keys.agent(id))) ?? "{}");
      const held: string[] = record.standbys ?? [];
      n += held.filter((r) => r.startsWith("zc/") || r.startsWith("step/")).length;
    }
    return n;
  };
  await stage("container-standbys", async () => {
    const deadline = performance.now() + 60_000;
    while ((await containerStandbys()) < CONTAINERS + 1) {
      if (performance.now() > deadline) {
        throw new Error(`${await containerStandbys()} of ${CONTAINERS + 1} container standbys`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  // The agent's network sandboxes refilled after the warm-ups' starts (each a
  // docker start in the background): measured from a settled host, as in use.
  const readySandboxes = async () => {
    const owners = new Set(await redis.zrange(keys.agents, "0", "-1"));
    const all = (await docker.listContainers({ all: true })).filter((c) =>
      owners.has(c.Labels["skiff.owner"] ?? ""),
    );
    const bound = new Set(all.map((c) => c.Labels["skiff.sandbox"]).filter(Boolean));
    return all.filter(
      (c) => c.Labels["skiff.role"] === "sandbox" && c.State === "running" && !bound.has(c.Id),
    ).length;
  };
  await stage("sandboxes", async () => {
    const deadline = performance.now() + 60_000;
    while ((await readySandboxes()) < SANDBOXES) {
      if (performance.now() > deadline) {
        throw new Error(`${await readySandboxes()} of ${SANDBOXES} network sandboxes ready`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  // The revisions served once are at zero again once their endpoints are gone.
  await stage("one-to-zero", async () => {
    const deadline = performance.now() + 60_000;
    for (;;) {
      const left = await Promise.all(
        Array.from({ length: ONE_BY_ONE }, (_, i) => endpoints("one", `o-${i}`)),
      );
      if (left.every((n) => n === 0)) break;
      if (performance.now() > deadline) throw new Error("o-*: not at zero within 60 s");
      await new Promise((r) => setTimeout(r, 250));
    }
  });
  const one = await stage("one-by-one", () => oneByOne("o"));
  const first = await stage("one-by-one-first", () => oneByOne("n"));
  console.log(JSON.stringify({ one, first }));

  const dockerRuns = await stage("docker-run-burst", dockerRunBurst);
  console.log(JSON.stringify({ dockerRuns }));

  epochs.cold = Date.now();
  const cold = await stage("burst-cold", burst);
  epochs.warm = Date.now();
  const warm = await stage("burst-warm", burst);
  epochs.warmEnd = Date.now();
  const coldTroubles = troubles(epochs.cold, epochs.warm);
  const warmTroubles = troubles(epochs.warm, epochs.warmEnd);
  console.log(JSON.stringify({ coldTroubles, warmTroubles }));
  console.log(JSON.stringify({ cold, warm }));

  const tw: number[] = [];
  const tc: number[] = [];
  const tputErrors = { errors: 0, non2xx: 0 };
  await stage("throughput", async () => {
    for (let t = 0; t < TRIALS; t++) {
      for (const [host, into] of [
        [hostOf("tput", "worker"), tw],
        [hostOf("tput", "container"), tc],
      ] as const) {
        const r = await throughput(host);
        console.log(JSON.stringify({ host, ...r }));
        into.push(r.rps);
        tputErrors.errors += r.errors;
        tputErrors.non2xx += r.non2xx;
      }
    }
  });

  epochs.step = Date.now();
  const kpa = await stage("kpa-step", step);
  // The scaler's decisions for the step (its log): when it wanted 10 or more.
  const wanted = logLines(epochs.step, Date.now())
    .filter((l) => l.revision === "step/step-00001" && typeof l.to === "number")
    .map((l) => ({ ms: Number(l.time) - epochs.step!, to: Number(l.to) }));
  const desired10 = wanted.find((w) => w.to >= 10)?.ms;
  console.log(JSON.stringify({ wanted }));
  console.log(JSON.stringify({ kpa }));

  const ms = (v: number) =>
    v >= 1000
      ? `${(v / 1000).toFixed(2)} s`
      : v >= 10
        ? `${Math.round(v)} ms`
        : `${v.toFixed(1)} ms`;
  const dist = (s: Summary) => `p50 ${ms(s.p50)}, p95 ${ms(s.p95)}, max ${ms(s.max)}`;
  const burstRow = (kind: Kind, goalMs: number) => {
    const n = kind === "workers" ? WORKERS : CONTAINERS;
    const f = cold.failed[kind].n;
    const c = cold[kind];
    const met = c.p95 <= goalMs && f === 0;
    return {
      figure: `${n} ${kind === "workers" ? "worker" : "container"} services at zero, all hit at once with the ${kind === "workers" ? `${CONTAINERS} containers` : `${WORKERS} workers`} (through the gateway)`,
      baseline: `Knative (published) ~22 s p95 for 100; the same burst warm, same run: ${dist(warm[kind])}${kind === "containers" ? `; ${CONTAINERS} \`docker run -p\` of the image at once, same run: ${dist(dockerRuns)}${dockerRuns.failed > 0 ? ` (${dockerRuns.failed} no answer in ${BURST_TIMEOUT_MS / 1000} s)` : ""}` : ""}`,
      skiff: `${dist(c)}; ${f} of ${n} failed; instance ready (endpoint table) ${dist(cold.instanceReady[kind])}, ${cold.instanceReady[kind].none} with none`,
      ratio: `${(c.p95 / KNATIVE_P95_MS).toFixed(3)}x Knative p95; ${(c.p95 / warm[kind].p95).toFixed(1)}x warm p95${kind === "containers" ? `; ${(c.p95 / dockerRuns.p95).toFixed(2)}x docker run's p95` : ""}`,
      goal: `p95 <= ${goalMs / 1000} s; zero failures`,
      met,
      limit: met
        ? undefined
        : `${f > 0 ? `${f} failed (${cold.failed[kind].statuses.join(", ")}); ` : ""}instances ready late (endpoint p95 ${ms(cold.instanceReady[kind].p95)} after the burst); ${kind === "workers" ? `no isolate is built (each was warmed into a standby at deploy): the agent wakes 100 standbys, and their first requests share 4 workerd processes with the 25 container resumes on 2 cores; the stall watchdog restarted ${coldTroubles.stalledRestarts} workerd processes` : `no container is started (each was warmed into a paused standby at deploy): the agent resumes 25 (docker unpause, rename, readiness probe) beside the 100 worker wakes on 2 cores`}${coldTroubles.lostLeader > 0 ? `; the scaler lost its lease ${coldTroubles.lostLeader}x` : ""}`,
      trials: 1,
    };
  };
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const workerRps = mean(tw);
  const containerRps = mean(tc);
  const tputRatio = workerRps / containerRps;
  const t10 = kpa.at[10];
  const kpaMet = t10 !== undefined && t10 <= PANIC_WINDOW_MS && kpa.failed === 0;
  const oneMet = one.cold.p50 <= 10 && one.failed === 0 && first.failed === 0;
  const rows = [
    {
      figure:
        "worker revision from zero through the gateway, warm agent (one at a time, keep-alive connection)",
      baseline: `a warm request to a running worker revision of the same namespace, same connection: p50 ${ms(one.warm.p50)}`,
      skiff: `served before, then scaled to zero: p50 ${ms(one.cold.p50)}, p95 ${ms(one.cold.p95)}, max ${ms(one.cold.max)}; ${one.failed} of ${ONE_BY_ONE} failed. Never served (initial-scale 0, warmed into a standby at deploy): p50 ${ms(first.cold.p50)}, p95 ${ms(first.cold.p95)}; ${first.failed} failed`,
      ratio: `${(one.cold.p50 / one.warm.p50).toFixed(1)}x warm`,
      goal: "p50 <= 10 ms",
      met: oneMet,
      limit: oneMet ? undefined : ONE_BY_ONE_LIMIT,
      trials: ONE_BY_ONE,
    },
    burstRow("workers", 1_000),
    burstRow("containers", 5_000),
    {
      figure: "worker revision throughput through the gateway, warm (autocannon -c50, closed loop)",
      baseline: `the same hello app as a container revision: ${Math.round(containerRps)} req/s`,
      skiff: `${Math.round(workerRps)} req/s (${tputErrors.errors} errors, ${tputErrors.non2xx} non-2xx in all)`,
      ratio: `${tputRatio.toFixed(2)}x`,
      goal: ">= 0.8x",
      met: tputRatio >= 0.8 && tputErrors.errors === 0 && tputErrors.non2xx === 0,
      limit:
        tputRatio >= 0.8
          ? undefined
          : "workerd's CPU per request: through the router and loader 3-4x a static worker's (bench/isolate-request-cost.ts), and a namespace's processes share one core (sandbox.cpuMillis 1000); the container path is a native C server",
      trials: `${TRIALS} x ${DURATION_S} s each, interleaved, mean (worker ${tw.map(Math.round).join(", ")}; container ${tc.map(Math.round).join(", ")})`,
    },
    {
      figure: `KPA step: 0 -> ${STEP_CLIENTS} concurrent clients (each request sleeps ${STEP_SLEEP_MS} ms), container revision, target ${STEP_TARGET}`,
      baseline: `Knative's panic window ${PANIC_WINDOW_MS / 1000} s (desired ceil(${STEP_CLIENTS}/7) = ${Math.ceil(STEP_CLIENTS / 7)})`,
      skiff: `ready endpoints: 1 at ${kpa.at[1] === undefined ? "-" : ms(kpa.at[1])}, 5 at ${kpa.at[5] === undefined ? "-" : ms(kpa.at[5])}, 10 at ${t10 === undefined ? `never (max ${kpa.maxReady})` : ms(t10)}; max ${kpa.maxReady} in ${STEP_MS / 1000} s; ${kpa.failed} of ${kpa.sent} requests failed`,
      ratio: t10 === undefined ? "-" : `${(t10 / PANIC_WINDOW_MS).toFixed(2)}x the window`,
      goal: `10 ready within ${PANIC_WINDOW_MS / 1000} s; zero failed requests`,
      met: kpaMet,
      limit: kpaMet
        ? undefined
        : `${kpa.failed > 0 ? `failed requests (${kpa.statuses.join(", ")}); ` : ""}the scaler wanted >= 10 at ${desired10 === undefined ? "never" : ms(desired10)} (${wanted.map((w) => `${w.to} at ${ms(w.ms)}`).join(", ")}); its container instances came ready a few at a time after that (see below)`,
      trials: 1,
    },
  ];
  const body = `## From zero, throughput and the KPA step (\`node bench/zero-burst.ts\`)

\`node bench/zero-burst.ts [--duration 8] [--trials 2] [--step-seconds 20] [--sandboxes 8]\` (part of
\`npm run bench\`; about 4 minutes; needs Docker).

${figureTable(rows)}

${new Date().toISOString().slice(0, 10)}, ${availableParallelism()} cores, load average ${loadBefore.toFixed(1)} at the start
(the machine is shared with other engineers' test runs, so absolute times move with it);
one private \`skiff up\` with containers (Docker, the locally built hello image), its agent
sized for the ${WORKERS + CONTAINERS} revisions. Services at zero are created with
\`autoscaling.knative.dev/initial-scale: "0"\` (\`allowZeroInitialScale\`) and checked to have no
ready endpoint before the burst (each ran one warm-up instance at deploy, scaler/warmup.ts: the
agent holds the workers' isolates and the containers, paused, as standbys, at most 32 containers
here; a container with no standby joins one of the agent's ${SANDBOXES} network sandboxes (8 by default), waited for
before the stages, agent/container/sandboxes.ts, or else starts at \`docker run\`'s pace, the baseline); each burst request is on a fresh connection (timeout
${BURST_TIMEOUT_MS / 1000} s). Stages (ms): ${JSON.stringify(stages)}.`;
  await writeBenchmarkBlock(join(ROOT, "BENCHMARKS.md"), "zero-burst", body);
  console.log(body);
} finally {
  // up's log (info), for what limits a figure.
  writeFileSync(UP_LOG, up.output());
  console.log(`skiff up's log: ${UP_LOG}`);
  redis.disconnect();
  await up.stop();
}
