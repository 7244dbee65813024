/**
 * What one request to a worker revision costs workerd, and where: the same
 * hello module served (a) by a workerd process with a static one-worker
 * config (the floor: no router, no loader), (b) by a bare hop: a static
 * worker that only hands each request as is to the module's isolate through
 * workerd's WorkerLoader (what any router in front of a loaded isolate pays:
 * a second request context, the Request and Response objects in both
 * isolates), and (c) through the agent's pool (the router worker checks the
 * gateway secret and the revision header, drops the two internal headers,
 * then calls the revision's isolate), with and without in-flight tracking.
 * Each runs alone under autocannon -c16 (a 1 s warm-up, then `--seconds`),
 * straight to workerd on 127.0.0.1 (no gateway); the figure is workerd's CPU
 * (utime + stime from /proc) per request.
 *
 *   node bench/isolate-request-cost.ts [--seconds 4] [--trials 2]
 *
 * Writes its block of BENCHMARKS.md. Context for zero-burst's throughput row
 * (worker revision against the same app as a container).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GATEWAY_AUTH_HEADER, WorkerdPool } from "../agent/isolate/index.ts";
import { prepareStaticWorkerd } from "./static-workerd.ts";
import { figureTable, writeBenchmarkBlock } from "./stats.ts";

interface AutocannonResult {
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
}
type Autocannon = (
  options: Record<string, unknown>,
  done: (err: Error | null, result: AutocannonResult) => void,
) => unknown;
// autocannon ships no types; this is the part of its API used here.
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "4" }, trials: { type: "string", default: "2" } },
});
const SECONDS = Number(values.seconds);
const TRIALS = Number(values.trials);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HELLO = 'export default { fetch() { return new Response("Hello World!\\n"); } };';
const loadBefore = loadavg()[0] ?? 0;

/** utime + stime of the processes, in ms (clock ticks of 10 ms). */
function cpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited
    }
  }
  return ticks * 10;
}

interface Run {
  rps: number;
  cpuUs: number;
  failed: number;
}

function cannon(url: string, headers: Record<string, string>, duration: number) {
  return new Promise<AutocannonResult>((resolve, reject) => {
    autocannon({ url, headers, connections: 16, duration }, (err, r) =>
      err ? reject(err) : resolve(r),
    );
  });
}

async function measure(url: string, headers: Record<string, string>, pids: () => number[]) {
  await cannon(url, headers, 1);
  const before = cpuMs(pids());
  const r = await cannon(url, headers, SECONDS);
  const cpu = cpuMs(pids()) - before;
  return {
    rps: r.requests.average,
    cpuUs: (cpu * 1000) / Math.max(1, r.requests.total),
    failed: r.non2xx + r.errors,
  };
}

async function staticWorker(): Promise<Run> {
  const workerd = await prepareStaticWorkerd(HELLO);
  let child: ChildProcess | undefined;
  try {
    const started = await workerd.spawn();
    child = started.child;
    const pid = child.pid as number;
    return await measure(`http://127.0.0.1:${started.port}/`, {}, () => [pid]);
  } finally {
    child?.kill("SIGKILL");
    if (child) await once(child, "exit");
    await workerd.remove();
  }
}

/** A static worker that hands every request as is to HELLO's isolate, through the loader. */
async function bareHop(): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), "skiff-bench-bare-hop-"));
  const binary = createRequire(import.meta.url).resolve("workerd/bin/workerd");
  const code = {
    compatibilityDate: "2025-09-01",
    mainModule: "worker.js",
    modules: { "worker.js": HELLO },
  };
  await writeFile(
    join(dir, "hop.js"),
    `const code = () => (${JSON.stringify({ ...code, globalOutbound: null })});
export default { fetch(request, env) { return env.LOADER.get("hello", code).getEntrypoint().fetch(request); } };
`,
  );
  await writeFile(
    join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "hop", worker = (modules = [(name = "hop.js", esModule = embed "hop.js")], compatibilityDate = "2025-09-01", bindings = [(name = "LOADER", workerLoader = ())])) ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "hop") ],
);
`,
  );
  const child = spawn(
    binary,
    ["serve", "--experimental", join(dir, "config.capnp"), "--control-fd", "3"],
    {
      stdio: ["ignore", "ignore", "inherit", "pipe"],
      cwd: dir,
      env: {},
    },
  );
  try {
    const [chunk] = (await once(child.stdio[3] as NodeJS.ReadableStream, "data")) as [Buffer];
    const port = (JSON.parse(chunk.toString().split("\n")[0] ?? "{}") as { port: number }).port;
    const pid = child.pid as number;
    return await measure(`http://127.0.0.1:${port}/`, {}, () => [pid]);
  } finally {
    child.kill("SIGKILL");
    await once(child, "exit").catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

async function throughPool(trackInFlight: boolean): Promise<Run> {
  const pool = new WorkerdPool({ processes: 1, trackInFlight });
  await pool.start();
  try {
    await pool.register("bench/hello", { code: HELLO, env: {} });
    const loaded = await pool.load("bench/hello");
    if (!loaded.ok) throw new Error(`the hello revision did not load: ${loaded.message}`);
    const ep = pool.endpointFor("bench/hello");
    const headers = {
      [ep.header.name]: ep.header.value,
      [GATEWAY_AUTH_HEADER]: pool.gatewaySecret,
    };
    return await measure(`http://127.0.0.1:${ep.port}/`, headers, () => pool.pids());
  } finally {
    await pool.stop();
  }
}

const runs = {
  static: [] as Run[],
  hop: [] as Run[],
  tracked: [] as Run[],
  untracked: [] as Run[],
};
for (let t = 0; t < TRIALS; t++) {
  runs.static.push(await staticWorker());
  runs.hop.push(await bareHop());
  runs.tracked.push(await throughPool(true));
  runs.untracked.push(await throughPool(false));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const of = (rs: Run[]) => ({
  rps: median(rs.map((r) => r.rps)),
  cpuUs: median(rs.map((r) => r.cpuUs)),
  failed: rs.reduce((n, r) => n + r.failed, 0),
});
const s = of(runs.static);
const hop = of(runs.hop);
const tracked = of(runs.tracked);
const untracked = of(runs.untracked);
console.log(JSON.stringify({ runs }));

const us = (v: number) => `${Math.round(v)} µs`;
const rows = [
  {
    figure:
      "workerd CPU per request of a worker revision (hello, autocannon -c16 straight to workerd)",
    baseline: `the same module in a static one-worker workerd: ${us(s.cpuUs)} (${Math.round(s.rps)} req/s)`,
    skiff: `through the pool's router and loader: ${us(tracked.cpuUs)} (${Math.round(tracked.rps)} req/s); without in-flight tracking ${us(untracked.cpuUs)} (${Math.round(untracked.rps)} req/s); a bare hop through the loader (no checks, no tracking): ${us(hop.cpuUs)} (${Math.round(hop.rps)} req/s); ${tracked.failed + untracked.failed + hop.failed + s.failed} failed`,
    ratio: `${(tracked.cpuUs / s.cpuUs).toFixed(2)}x the static worker's CPU (${(tracked.cpuUs / hop.cpuUs).toFixed(2)}x the bare hop's)`,
    goal: "- (context for zero-burst's worker throughput row)",
    met: "context" as const,
    limit:
      "most of it is the hop itself (a second request context, Request and Response objects in both isolates, workerd's own work): what a per-namespace, dynamically loaded design costs over a static worker; the router's checks, header copy and tracking add the rest",
    trials: `${TRIALS} x ${SECONDS} s each, interleaved, median`,
  },
];
const body = `## Isolate request cost (\`node bench/isolate-request-cost.ts\`)

\`node bench/isolate-request-cost.ts [--seconds 4] [--trials 2]\` (part of \`npm run bench\`; about
${Math.round((TRIALS * 4 * (SECONDS + 2)) / 10) * 10} seconds).

${figureTable(rows)}

${new Date().toISOString().slice(0, 10)}, ${availableParallelism()} cores, load average ${loadBefore.toFixed(1)} at the start; workerd alone
on the machine's cores with autocannon (no gateway, no cgroup limit: \`new WorkerdPool\` without a sandbox).`;
await writeBenchmarkBlock(join(ROOT, "BENCHMARKS.md"), "isolate-request-cost", body);
console.log(body);
