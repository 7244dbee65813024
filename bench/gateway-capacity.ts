/**
 * Issue 12's gateway figures, each beside its baseline in the same run, with
 * `wrk` as the load generator (apt-get install -y wrk nginx-light):
 *
 * 1. Proxy capacity per core: wrk -c50 and a static nginx backend pinned
 *    together to core 0 (taskset), the proxy alone on core 1. Gateway req/s
 *    against nginx-as-proxy (one worker) measured the same way; also the
 *    gateway as it was before issue 12 (`--before REF`, extracted from git)
 *    and a bare node:http + undici proxy (Node's floor).
 * 2. Added latency at one connection: wrk -c1 p50 through each proxy minus
 *    wrk -c1 p50 straight to the backend.
 * 3. Gateway on N cores: `--workers 1` and `--workers 2` (the cluster of
 *    gateway/cluster.ts, sharing the port by SO_REUSEPORT), nothing pinned,
 *    beside nginx with 1 and 2 worker processes measured the same way.
 * 4. Redis commands per proxied request (containerConcurrency 0): INFO
 *    commandstats of the gateway's private redis-server around a wrk run.
 * 5. 10,000 services in the routing table: gateway RSS and wrk -c1 p50 against
 *    the same gateway with 10 services (every host requested once first).
 *
 * Everything listens on 127.0.0.1; every run is bounded (-d). The figure
 * table is rewritten in BENCHMARKS.md (block "gateway").
 *
 *   node bench/gateway-capacity.ts [--duration 5] [--trials 3] [--before REF] [--no-write]
 *
 * The parts live in bench/gateway-capacity/: the load runner (load.ts), the
 * backends and proxies it starts (backends.ts, on processes.ts), the routed
 * fleet (fleet.ts), the measurements (figures.ts) and the report (report.ts).
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { startRedisServer } from "../src/redis/server.ts";
import { startNginx } from "./gateway-capacity/backends.ts";
import {
  capacity,
  type Figures,
  manyServices,
  type RunContext,
  redisPerRequest,
  workerScaling,
} from "./gateway-capacity/figures.ts";
import { populate } from "./gateway-capacity/fleet.ts";
import { cleanUp } from "./gateway-capacity/processes.ts";
import { report } from "./gateway-capacity/report.ts";
import type { FigureRow } from "./stats.ts";

/** The gateway before issue 12's work (main when it was filed). */
const BEFORE_REF = "f13ff42";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "5" },
    trials: { type: "string", default: "3" },
    before: { type: "string", default: BEFORE_REF },
    "no-write": { type: "boolean", default: false },
    /** Run only these parts (comma-separated: capacity, redis, workers, services); implies --no-write. */
    only: { type: "string" },
    /** Also measure a gateway whose workers run with these V8 flags (comma-separated) in the capacity part. */
    "v8-flags": { type: "string" },
    /** Write a V8 CPU profile of the gateway (capacity runs) into this folder. */
    profile: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  process.stdout.write(
    "node bench/gateway-capacity.ts [--duration 5] [--trials 3] [--before REF] [--no-write]\n" +
      "  [--only capacity,redis,workers,services] [--v8-flags a,b] [--profile DIR]\n" +
      "Needs wrk and nginx (apt-get install -y wrk nginx-light); rewrites BENCHMARKS.md (block gateway).\n",
  );
  process.exit(0);
}
const ONLY = values.only ? new Set(values.only.split(",")) : undefined;
/** The parts in the order they run, by their --only names. */
const PARTS: [string, (ctx: RunContext) => Promise<Figures>][] = [
  ["capacity", capacity],
  ["redis", redisPerRequest],
  ["workers", workerScaling],
  ["services", manyServices],
];

const redisServer = await startRedisServer();
const rows: FigureRow[] = [];
const notes: string[] = [];
try {
  const started = new Date();
  const load = loadavg()[0]?.toFixed(2);
  const redis = new Redis(redisServer.url);
  const backend = await startNginx("backend", { core: 0 });
  await populate(redis, "cap:", backend.port, 1);
  const ctx: RunContext = {
    redis,
    redisUrl: redisServer.url,
    backendPort: backend.port,
    duration: Number(values.duration),
    trials: Number(values.trials),
    before: values.before || undefined,
    v8Flags: values["v8-flags"] ? values["v8-flags"].split(",") : undefined,
    profile: values.profile,
  };
  for (const [name, measure] of PARTS) {
    if (ONLY && !ONLY.has(name)) continue;
    const figures = await measure(ctx);
    rows.push(...figures.rows);
    notes.push(...figures.notes);
  }
  redis.disconnect();
  await report(rows, notes, { started, load, write: !values["no-write"] && !ONLY });
} finally {
  await cleanUp();
  await redisServer.stop();
}
