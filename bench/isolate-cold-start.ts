/**
 * Isolate cold start, measured: `node bench/isolate-cold-start.ts`
 *
 * - cold: a revision never seen before, request to first response (headers)
 *   through the pool (router fetches code from the agent, loader builds an
 *   isolate), over an already-open keep-alive connection;
 * - warm: the same revision again;
 * - raw floor: a fresh workerd process with a static one-worker config, from
 *   spawn to first response (what a process-per-revision design would pay);
 * - watchdog: runaway loop to stall event, to replacement listening, to the
 *   first answer of another revision of that process;
 * - recycle: replacement process start while the old one drains.
 *
 * Writes bench/RESULTS-isolate.md. Everything runs on 127.0.0.1.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { promisify } from "node:util";
import { Pool, request } from "undici";
import { GATEWAY_AUTH_HEADER, WorkerdPool } from "../agent/isolate/index.ts";
import { prepareStaticWorkerd } from "./static-workerd.ts";
import { type Summary, summarize } from "./stats.ts";

const N_COLD = 50;
const N_COLD_BIG = 20;
const N_WARM = 500;
const N_RAW = 20;
const N_STALL = 5;
const N_NAMESPACE = 10;
const THROUGHPUT_S = 4;

const ms = (v: number) => v.toFixed(2);
const row = (name: string, s: Summary) =>
  `| ${name} | ${s.n} | ${ms(s.p50)} | ${ms(s.p95)} | ${ms(s.min)} | ${ms(s.max)} |`;

const helloCode = (i: number) =>
  `export default { fetch(req, env) { return new Response("hello " + env.NAME + " ${i}"); } };`;

/** A ~200 KB bundle: roughly a worker with a framework and some dependencies bundled in. */
function bigCode(i: number): string {
  const filler = Array.from(
    { length: 2_000 },
    (_, k) =>
      `export function helper${k}(x) { return (x * ${k} + ${i}) % 97 + "${"x".repeat(40)}"; }`,
  ).join("\n");
  return `${filler}\nexport default { fetch() { return new Response(helper7(${i})); } };`;
}

/** The gateway secret of the pool under test (gateways send it on every isolate request). */
let secret = "";

async function timeRequest(
  dispatcher: Pool,
  header: { name: string; value: string },
): Promise<number> {
  const t0 = performance.now();
  const res = await request(`http://127.0.0.1/`, {
    dispatcher,
    headers: { [header.name]: header.value, [GATEWAY_AUTH_HEADER]: secret },
  });
  const t = performance.now() - t0;
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`unexpected ${res.statusCode}: ${body}`);
  return t;
}

async function poolBench() {
  const pool = new WorkerdPool({ processes: 2, maxLoaderEntries: 10_000 });
  // Every stall the watchdog reports; more than N_STALL means false positives.
  let stallEvents = 0;
  pool.on("stall", () => {
    stallEvents++;
  });
  secret = pool.gatewaySecret;
  const t0 = performance.now();
  await pool.start();
  const startMs = performance.now() - t0;
  // One keep-alive pool per process port: connection set-up is not part of a cold start.
  const dispatchers = new Map<number, Pool>();
  const dispatcherFor = (port: number) => {
    let d = dispatchers.get(port);
    if (!d) {
      d = new Pool(`http://127.0.0.1:${port}`, { connections: 4 });
      dispatchers.set(port, d);
    }
    return d;
  };
  // A namespace's processes start with its first revision: register to first answer.
  const namespaceStart: number[] = [];
  for (let i = 0; i < N_NAMESPACE; i++) {
    const key = `bench-ns-${i}/first`;
    const t = performance.now();
    await pool.register(key, { code: helloCode(i), env: { NAME: "ns" } });
    const ep = pool.endpointFor(key);
    await timeRequest(dispatcherFor(ep.port), ep.header);
    namespaceStart.push(performance.now() - t);
  }

  // Warm connections to both processes.
  for (let i = 0; i < 4; i++) {
    const key = `bench/prewarm-${i}`;
    await pool.register(key, { code: helloCode(i), env: { NAME: "w" } });
    const ep = pool.endpointFor(key);
    await timeRequest(dispatcherFor(ep.port), ep.header);
  }

  const cold: number[] = [];
  for (let i = 0; i < N_COLD; i++) {
    const key = `bench/cold-${i}`;
    await pool.register(key, { code: helloCode(i), env: { NAME: "cold" } });
    const ep = pool.endpointFor(key);
    cold.push(await timeRequest(dispatcherFor(ep.port), ep.header));
  }

  // What the agent does before publishing an instance: load() (module evaluated), then the first request is warm.
  const coldLoaded: number[] = [];
  for (let i = 0; i < N_COLD; i++) {
    const key = `bench/loaded-${i}`;
    const t = performance.now();
    await pool.register(key, { code: helloCode(i), env: { NAME: "cold" } });
    const loaded = await pool.load(key);
    if (!loaded.ok) throw new Error(`load failed: ${loaded.message}`);
    const ep = pool.endpointFor(key);
    await timeRequest(dispatcherFor(ep.port), ep.header);
    coldLoaded.push(performance.now() - t);
  }

  const coldBig: number[] = [];
  const bigBytes = Buffer.byteLength(bigCode(0));
  for (let i = 0; i < N_COLD_BIG; i++) {
    const key = `bench/big-${i}`;
    await pool.register(key, { code: bigCode(i) });
    const ep = pool.endpointFor(key);
    coldBig.push(await timeRequest(dispatcherFor(ep.port), ep.header));
  }

  const warmKey = "bench/cold-0";
  const warmEp = pool.endpointFor(warmKey);
  const warm: number[] = [];
  for (let i = 0; i < N_WARM; i++)
    warm.push(await timeRequest(dispatcherFor(warmEp.port), warmEp.header));

  // Watchdog: loop -> stall event -> replacement listening -> bystander answers.
  const detect: number[] = [];
  const respawn: number[] = [];
  const recovered: number[] = [];
  let retries = 0;
  for (let i = 0; i < N_STALL; i++) {
    const looper = `bench/loop-${i}`;
    await pool.register(looper, { code: "export default { fetch() { for (;;) {} } };" });
    const slot = pool.endpointFor(looper).slot;
    let bystander = "";
    for (let k = 0; ; k++) {
      bystander = `bench/bystander-${i}-${k}`;
      if (pool.endpointFor(bystander).slot === slot) break;
    }
    await pool.register(bystander, { code: helloCode(i), env: { NAME: "b" } });
    const ep = pool.endpointFor(looper);
    const stalled = new Promise<void>((resolve) => {
      const on = (e: { revisions: string[] }) => {
        if (e.revisions.includes(looper)) {
          pool.off("stall", on);
          resolve();
        }
      };
      pool.on("stall", on);
    });
    const spawned = new Promise<void>((resolve) => {
      const on = (e: { cause: string; slot: string }) => {
        if (e.cause === "stall" && e.slot === slot) {
          pool.off("spawn", on);
          resolve();
        }
      };
      pool.on("spawn", on);
    });
    const t = performance.now();
    const loopReq = request(`http://127.0.0.1:${ep.port}/`, {
      headers: { [ep.header.name]: ep.header.value, [GATEWAY_AUTH_HEADER]: secret },
    }).catch(() => undefined);
    await stalled;
    detect.push(performance.now() - t);
    await spawned;
    respawn.push(performance.now() - t);
    const bep = pool.endpointFor(bystander);
    // As a gateway would: a request lost with a connection is retried once.
    const fresh = new Pool(`http://127.0.0.1:${bep.port}`);
    try {
      await timeRequest(fresh, bep.header);
    } catch {
      retries++;
      await timeRequest(fresh, bep.header);
    }
    recovered.push(performance.now() - t);
    await fresh.close();
    await loopReq;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  for (const d of dispatchers.values()) await d.close();
  await pool.stop();

  // Recycle: spawn of the replacement, with requests flowing meanwhile.
  const recyclePool = new WorkerdPool({ processes: 1, maxLoaderEntries: 5 });
  const recycleSpawn: number[] = [];
  recyclePool.on("spawn", (e) => {
    if (e.cause === "recycle") recycleSpawn.push(e.ms);
  });
  secret = recyclePool.gatewaySecret;
  await recyclePool.start();
  await recyclePool.register("bench/recycle-first", { code: helloCode(0), env: { NAME: "r" } });
  const rp = new Pool(`http://127.0.0.1:${recyclePool.stats()[0]!.port}`, { connections: 4 });
  let failed = 0;
  let answered = 0;
  for (let i = 0; i < 100; i++) {
    const key = `bench/recycle-${i}`;
    await recyclePool.register(key, { code: helloCode(i), env: { NAME: "r" } });
    const header = recyclePool.endpointFor(key).header;
    const results = await Promise.allSettled([timeRequest(rp, header), timeRequest(rp, header)]);
    for (const r of results) r.status === "fulfilled" ? answered++ : failed++;
  }
  await rp.close();
  await recyclePool.stop();

  return {
    startMs,
    namespaceStart: summarize(namespaceStart),
    coldLoaded: summarize(coldLoaded),
    cold: summarize(cold),
    coldBig: summarize(coldBig),
    bigBytes,
    warm: summarize(warm),
    detect: summarize(detect),
    respawn: summarize(respawn),
    recovered: summarize(recovered),
    recycleSpawn: summarize(recycleSpawn),
    recycleTraffic: { answered, failed },
    stallEvents,
    retries,
  };
}

/**
 * Warm throughput of one revision in a one-process pool, measured by autocannon
 * in its own process (asynchronously: the code service lives in this event loop).
 */
async function throughput(trackInFlight: boolean) {
  const pool = new WorkerdPool({ processes: 1, trackInFlight });
  await pool.start();
  try {
    await pool.register("bench/tput", { code: helloCode(0), env: { NAME: "t" } });
    const ep = pool.endpointFor("bench/tput");
    const bin = new URL("../node_modules/.bin/autocannon", import.meta.url).pathname;
    const { stdout } = await promisify(execFile)(
      bin,
      [
        "-c",
        "16",
        "-d",
        String(THROUGHPUT_S),
        "-j",
        "-H",
        `${ep.header.name}=${ep.header.value}`,
        "-H",
        `${GATEWAY_AUTH_HEADER}=${pool.gatewaySecret}`,
        `http://127.0.0.1:${ep.port}/`,
      ],
      { encoding: "utf8" },
    );
    const result = JSON.parse(stdout) as {
      requests: { average: number };
      latency: { p50: number; p99: number };
      non2xx: number;
      errors: number;
    };
    return result;
  } finally {
    await pool.stop();
  }
}

/** A fresh workerd with a static config, spawn -> listening -> first response. */
async function rawFloor() {
  const workerd = await prepareStaticWorkerd(helloCode(0).replace("env.NAME", '"raw"'));
  const listening: number[] = [];
  const total: number[] = [];
  try {
    for (let i = 0; i < N_RAW; i++) {
      const t0 = performance.now();
      const { child, port } = await workerd.spawn();
      listening.push(performance.now() - t0);
      const res = await request(`http://127.0.0.1:${port}/`);
      await res.body.text();
      total.push(performance.now() - t0);
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  } finally {
    await workerd.remove();
  }
  return { listening: summarize(listening), total: summarize(total) };
}

async function workerdVersion(): Promise<string> {
  const binary = createRequire(import.meta.url).resolve("workerd/bin/workerd");
  const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await once(child, "exit");
  return out.trim();
}

const loadBefore = loadavg()[0] ?? 0;
const pool = await poolBench();
const raw = await rawFloor();
const tputTracked = await throughput(true);
const tputUntracked = await throughput(false);
const version = await workerdVersion();
const cpu = cpus()[0]?.model ?? "unknown CPU";
const date = new Date().toISOString().slice(0, 10);

const header = "| measurement | n | p50 ms | p95 ms | min ms | max ms |\n|---|---|---|---|---|---|";
const report = `# Isolate cold start (workerd pool)

Measured ${date} by \`node bench/isolate-cold-start.ts\` on ${availableParallelism()} cores (${cpu}),
${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.versions.node}, ${version}. The machine is
shared with other work (1-minute load average ${loadBefore.toFixed(1)} when the run started), so treat
tails (p95, max) as upper bounds. Client and server share the cores.

Pool: 2 workerd processes, each running the router worker; revisions are loaded on demand through
the workerLoader binding (code fetched from the agent over loopback). Times are request sent to
response headers received, over an open keep-alive connection.

${header}
${row("cold: new revision, first request (hello world)", pool.cold)}
${row("cold: new revision, register + load() + first request (the agent's path)", pool.coldLoaded)}
${row("new namespace: register (its workerd process starts) to first response", pool.namespaceStart)}
${row(`cold: new revision, ${Math.round(pool.bigBytes / 1024)} KB bundle`, pool.coldBig)}
${row("warm: same revision again", pool.warm)}
${row("raw floor: fresh workerd process, spawn to listening", raw.listening)}
${row("raw floor: fresh workerd process, spawn to first response", raw.total)}
${row("stall: looping request sent to stall event (defaults 50/150 ms)", pool.detect)}
${row("stall: to replacement process listening", pool.respawn)}
${row("stall: to first answer of another revision of that process", pool.recovered)}
${row("recycle: replacement process spawn to listening", pool.recycleSpawn)}

- Pool start (2 processes, sockets, code service): ${ms(pool.startMs)} ms.
- Stall events seen during the whole pool run: ${pool.stallEvents} for ${N_STALL} looping requests
  (more means false positives of the 150 ms default under this machine's load); requests to the
  other revision after a stall that had to be retried once: ${pool.retries}.
- Warm throughput, one revision, one workerd process, autocannon -c 16 for ${THROUGHPUT_S} s (autocannon
  shares the 2 cores, so this is a floor, not the capacity of a dedicated core):
  ${Math.round(tputTracked.requests.average)} req/s (p50 ${tputTracked.latency.p50} ms, p99 ${tputTracked.latency.p99} ms,
  ${tputTracked.non2xx + tputTracked.errors} errors) with in-flight tracking for stall attribution;
  ${Math.round(tputUntracked.requests.average)} req/s without it (\`trackInFlight: false\`). Compare these two only
  over several runs: on this shared machine the run-to-run noise is larger than the cost of the
  tracking (one stdout line per busy/idle edge of a revision).
- Recycle under traffic (maxLoaderEntries 5, 100 revisions, 2 concurrent requests each over 4
  keep-alive connections): ${pool.recycleTraffic.answered} answered, ${pool.recycleTraffic.failed} failed.
  A failure here is the keep-alive race of HTTP/1.1: the draining process closes an idle
  connection while the client reuses it; no byte of a response was sent, so the gateway can
  retry it safely. workerd drops a worker's \`Connection: close\`, so the router cannot retire
  connections gracefully before the hand-over.

## Reading

- A new revision costs a few ms on top of a warm request instead of a process start: the isolate
  is built inside an already running workerd. The raw floor is what one process per revision
  would pay at best (config parse, V8 start, socket), before any code of the worker runs.
- The watchdog is the only CPU limit open-source workerd has: a loop blocks every revision of its
  process until the stall is detected (probe interval + stall threshold) and the process is
  replaced on the same socket; connections opened meanwhile wait in the backlog and are served by
  the replacement. Requests that were in flight on the stalled process fail and must be retried.
`;

const out = new URL("./RESULTS-isolate.md", import.meta.url);
await writeFile(out, report);
console.log(report);
