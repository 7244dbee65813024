/**
 * The gateway's cost per request, in one run, against the same backend:
 *
 *   direct          autocannon -> backend
 *   gateway         autocannon -> skiff gateway -> backend
 *   gateway cc=100  the same with containerConcurrency 100 (a Redis slot per request)
 *   nginx           autocannon -> nginx (keep-alive reverse proxy) -> backend
 *   node floor      autocannon -> the least a Node proxy does (node:http server,
 *                   undici dispatch, nothing else) -> backend: what the gateway's
 *                   own logic costs on top of Node's HTTP work
 *
 * The backend is a plain Node http server answering "Hello Skiff!\n" over
 * keep-alive; backend, gateway and nginx each run in their own process (one
 * nginx worker, one Node process, so the proxies compete on equal terms).
 * autocannon runs in this process with a fixed number of connections for a
 * fixed duration. Everything listens on 127.0.0.1. Results go to
 * BENCHMARKS.md (section "Gateway proxy") by hand, as ratios to direct.
 *
 *   node bench/gateway-proxy.ts [--duration 10] [--connections 50]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { publishRouting } from "../src/control/routing.ts";
import { createFleet } from "../src/fleet/fleet.ts";
import { connectRedis } from "../src/redis/connect.ts";
import { freePort, startRedisServer } from "../src/redis/server.ts";
import { floorProxySource } from "./floor-proxy.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "50" },
    warmup: { type: "string", default: "2" },
    /** Write a V8 CPU profile of the gateway process into this folder. */
    profile: { type: "string" },
  },
});
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const WARMUP = Number(values.warmup);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const PREFIX = "bench:";
const HOST = "hello.default.localhost";

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;
// autocannon ships no types; this is the part of its API used here.
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

/** Run a Node ES module given as text in its own process; resolves with its first stdout line. */
async function nodeProcess(
  source: string,
  flags: string[] = [],
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, [...flags, "--input-type=module", "-e", source], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [chunk] = (await once(child.stdout as NonNullable<ChildProcess["stdout"]>, "data")) as [
    Buffer,
  ];
  return { child, line: String(chunk).split("\n")[0] as string };
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(3_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

const BACKEND = `
import { createServer } from "node:http";
const body = "Hello Skiff!\\n";
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
`;

function gatewaySource(redisUrl: string, port: number): string {
  const server = JSON.stringify(`${ROOT}/gateway/server.ts`);
  return `
import { startGateway } from ${server};
import { pino } from "pino";
const gw = await startGateway({
  redisUrl: ${JSON.stringify(redisUrl)}, redisPrefix: ${JSON.stringify(PREFIX)},
  port: ${port}, adminPort: 0, logger: pino({ level: "warn" }, pino.destination(2)),
});
console.log(gw.url);
process.once("SIGTERM", () => gw.close(1000).then(() => process.exit(0)));
`;
}

async function startNginx(
  backendPort: number,
): Promise<{ child: ChildProcess; port: number; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "skiff-bench-nginx-"));
  const port = await freePort();
  const conf = `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`;
  await writeFile(join(dir, "nginx.conf"), conf);
  const child = spawn(
    "nginx",
    ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")],
    {
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  for (let i = 0; i < 200; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { host: HOST } });
      await res.arrayBuffer();
      if (res.ok) return { child, port, dir };
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error("nginx exited at start (see its error log)");
    await sleep(25);
  }
  throw new Error("nginx did not answer");
}

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function measure(name: string, url: string): Promise<Row> {
  const run = (duration: number) =>
    autocannon({ url, connections: CONNECTIONS, duration, headers: { host: HOST } });
  if (WARMUP > 0) await run(WARMUP);
  const r = await run(DURATION);
  const row = {
    name,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
  };
  console.log(
    `${name.padEnd(16)} ${row.rps.toFixed(0).padStart(7)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  errors ${row.errors}`,
  );
  return row;
}

const redisServer = await startRedisServer();
const children: ChildProcess[] = [];
let nginxDir: string | undefined;
try {
  const backend = await nodeProcess(BACKEND);
  children.push(backend.child);
  const backendPort = Number(backend.line);

  // Play the agent and the scaler: an agent, an endpoint, routing tables.
  const redis = connectRedis(redisServer.url);
  const fleet = createFleet({ redis, prefix: PREFIX });
  await fleet.registerAgent(
    {
      id: "bench-agent",
      address: "127.0.0.1",
      runtimes: ["container"],
      capacity: { cpuMillis: 2000, memoryBytes: 2 ** 31, maxInstances: 10 },
      labels: {},
      startedAt: new Date().toISOString(),
      heartbeatAt: Date.now(),
      version: "bench",
    },
    3_600_000,
  );
  for (const [revision, cc] of [
    ["hello-00001", 0],
    ["hello-00002", 100],
  ] as const) {
    await fleet.publishEndpoint("default", revision, {
      instanceId: `${revision}-a`,
      agentId: "bench-agent",
      runtime: "container",
      host: "127.0.0.1",
      port: backendPort,
      protocol: "http1",
      containerConcurrency: cc,
      readyAt: Date.now(),
    });
  }
  const route = (revision: string, cc: number) =>
    publishRouting(redis, PREFIX, {
      namespace: "default",
      route: "hello",
      hosts: {
        [HOST]: {
          namespace: "default",
          service: "hello",
          targets: [{ revision, percent: 100, containerConcurrency: cc, timeoutSeconds: 30 }],
        },
      },
    });
  await route("hello-00001", 0);

  const gatewayPort = await freePort();
  const gateway = await nodeProcess(
    gatewaySource(redisServer.url, gatewayPort),
    values.profile ? ["--cpu-prof", `--cpu-prof-dir=${values.profile}`] : [],
  );
  children.push(gateway.child);
  const nginx = await startNginx(backendPort);
  children.push(nginx.child);
  nginxDir = nginx.dir;

  const started = new Date();
  const load = loadavg()[0]?.toFixed(2);
  const rows: Row[] = [];
  rows.push(await measure("direct", `http://127.0.0.1:${backendPort}/`));
  rows.push(await measure("gateway", `${gateway.line}/`));
  await route("hello-00002", 100);
  await sleep(200);
  rows.push(await measure("gateway cc=100", `${gateway.line}/`));
  rows.push(await measure("nginx", `http://127.0.0.1:${nginx.port}/`));
  const floor = await nodeProcess(floorProxySource(backendPort));
  children.push(floor.child);
  rows.push(await measure("node floor", `${floor.line}/`));

  const direct = rows[0] as Row;
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  console.log(
    `\n${started.toISOString().slice(0, 10)}, ${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
      `Node ${process.versions.node}, load average at start ${load}; ` +
      `autocannon -c ${CONNECTIONS} -d ${DURATION} (after ${WARMUP} s warm-up), one process each\n`,
  );
  console.log(
    "| path | req/s | p50 ms | p99 ms | req/s vs direct | p50 vs direct | p99 vs direct | errors |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${(r.rps / direct.rps).toFixed(2)} | ` +
        `${(r.p50 / Math.max(direct.p50, 0.001)).toFixed(2)} | ${(r.p99 / Math.max(direct.p99, 0.001)).toFixed(2)} | ${r.errors} |`,
    );
  }
  await fleet.close();
  redis.disconnect();
} finally {
  for (const c of children.reverse()) await stop(c);
  if (nginxDir) await rm(nginxDir, { recursive: true, force: true });
  await redisServer.stop();
}
