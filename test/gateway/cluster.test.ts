/**
 * `skiff gateway --workers N` (gateway/cluster.ts): N real gateway processes
 * sharing one port by SO_REUSEPORT, each a full replica with its own id and
 * counters in Redis; the primary's admin port sums their metrics; a worker
 * that dies is restarted; close() stops every worker gracefully.
 */
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayCluster, startGatewayCluster } from "../../gateway/cluster.ts";
import { silentLogger } from "../../src/logging.ts";
import { freePort } from "../../src/redis/server.ts";
import { gatewayKeys } from "../../src/traffic/keys.ts";
import { uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";
import {
  type Backend,
  host,
  processExists,
  startBackend,
  TestScaler,
  testGatewayOptions,
} from "./support.ts";

const prefix = uniquePrefix("gw-cluster");
const scaler = new TestScaler(prefix);
const HOST = host("hello");
let backend: Backend;
let cluster: GatewayCluster;

/** One request on a connection of its own (so the kernel may hand it to any worker). */
async function fresh(url: string, path = "/"): Promise<{ status: number; body: string }> {
  const agent = new Agent({ connections: 1 });
  try {
    const res = await request(`${url}${path}`, { headers: { host: HOST }, dispatcher: agent });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await agent.close();
  }
}

beforeAll(async () => {
  backend = await startBackend("hello", (req, res) => {
    req.resume();
    const wait = Number(new URL(req.url ?? "/", "http://x").searchParams.get("sleep") ?? 0);
    // ?sleep= makes a slow instance on request, for the tests that need one in flight.
    setTimeout(() => res.end("hello\n"), wait);
  });
  await scaler.agent();
  await scaler.route("default", "hello", [{ revision: "hello-00001", percent: 100 }]);
  await scaler.endpoint("default", "hello-00001", backend);
  cluster = await startGatewayCluster({
    workers: 2,
    gateway: { ...testGatewayOptions(prefix), id: "gwc", logLevel: "warn" },
    restartDelayMs: 50,
    logger: silentLogger,
  });
});

afterAll(async () => {
  await cluster?.close(1_000);
  await backend?.close();
  await scaler.close();
});

describe("gateway workers", () => {
  it("runs two worker processes on one port, each a replica with its own id publishing its own counters", async () => {
    expect(cluster.workers.map((w) => w.id)).toEqual(["gwc-w0", "gwc-w1"]);
    const pids = cluster.workers.map((w) => w.pid);
    expect(new Set(pids).size).toBe(2);
    for (const pid of pids) expect(pid).not.toBe(process.pid);
    // Requests on connections of their own: SO_REUSEPORT spreads them over both
    // workers, and each publishes its own counters while it has traffic.
    const keys = gatewayKeys(prefix);
    const served = await waitFor("both workers' counters in Redis", async () => {
      for (let i = 0; i < 5; i++) expect((await fresh(cluster.url)).status).toBe(200);
      const out: Record<string, number> = {};
      for (const id of ["gwc-w0", "gwc-w1"]) {
        const json = await scaler.redis.hget(keys.metrics(id), "default/hello-00001");
        out[id] = json ? (JSON.parse(json) as { requests: number }).requests : 0;
      }
      return (out["gwc-w0"] ?? 0) > 0 && (out["gwc-w1"] ?? 0) > 0 ? out : undefined;
    });
    expect(Object.keys(served)).toEqual(["gwc-w0", "gwc-w1"]);
    const gateways = await scaler.redis.zrange(keys.gateways, "0", "-1");
    expect(gateways).toEqual(expect.arrayContaining(["gwc-w0", "gwc-w1"]));
  });

  it("serves /metrics on the primary's admin port summed over the workers, with the worker count", async () => {
    const before = await requestsTotal();
    for (let i = 0; i < 10; i++) expect((await fresh(cluster.url)).status).toBe(200);
    expect((await requestsTotal()) - before).toBe(10);
    const text = await (await fetch(`${cluster.adminUrl}/metrics`)).text();
    expect(text).toMatch(/^skiff_gateway_workers 2$/m);
    expect(text).toMatch(/^skiff_gateway_worker_restarts_total 0$/m);
    expect((await fetch(`${cluster.adminUrl}/readyz`)).status).toBe(200);
  });

  it("restarts a worker that dies, and keeps serving meanwhile", async () => {
    const victim = cluster.workers[1]?.pid as number;
    process.kill(victim, "SIGKILL");
    await waitFor("the dead worker replaced", () => {
      const w = cluster.workers[1];
      return w?.ready && w.pid !== victim && cluster.restarts === 1;
    });
    expect(processExists(victim)).toBe(false);
    for (let i = 0; i < 10; i++) expect((await fresh(cluster.url)).status).toBe(200);
    const text = await (await fetch(`${cluster.adminUrl}/metrics`)).text();
    expect(text).toMatch(/^skiff_gateway_worker_restarts_total 1$/m);
    expect(text).toMatch(/^skiff_gateway_workers 2$/m);
  });

  it("on close lets requests in flight finish on every worker, then no worker is left", async () => {
    const own = await startGatewayCluster({
      workers: 2,
      gateway: { ...testGatewayOptions(prefix), id: "gwc-close", logLevel: "warn" },
      logger: silentLogger,
    });
    const pids = own.workers.map((w) => w.pid as number);
    // Slow requests on several connections, so both workers most likely hold some.
    const slow = Array.from({ length: 8 }, () => fresh(own.url, "/?sleep=600"));
    await waitFor("the slow requests at the backend", () => backend.inflight >= 8);
    await own.close(5_000);
    for (const r of await Promise.all(slow)) expect(r).toEqual({ status: 200, body: "hello\n" });
    for (const pid of pids) expect(processExists(pid)).toBe(false);
    await expect(fresh(own.url)).rejects.toThrow();
  });

  it("fails to start with the worker's reason when a worker cannot start", async () => {
    const deadRedis = `redis://127.0.0.1:${await freePort()}`;
    await expect(
      startGatewayCluster({
        workers: 2,
        gateway: {
          ...testGatewayOptions(prefix),
          redisUrl: deadRedis,
          id: "gwc-bad",
          logLevel: "warn",
        },
        logger: silentLogger,
      }),
    ).rejects.toThrow(/gateway worker gwc-bad-w\d could not start: cannot reach Redis/);
  });

  it("refuses bad options before forking anything", async () => {
    await expect(
      startGatewayCluster({
        workers: 0,
        gateway: testGatewayOptions(prefix),
        logger: silentLogger,
      }),
    ).rejects.toThrow(/workers/);
    await expect(
      startGatewayCluster({
        workers: 2,
        gateway: { ...testGatewayOptions(prefix), queueDepth: -1 },
        logger: silentLogger,
      }),
    ).rejects.toThrow(/queueDepth/);
  });
});

async function requestsTotal(): Promise<number> {
  const text = await (await fetch(`${cluster.adminUrl}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^skiff_gateway_requests_total\{[^}]*code="200"[^}]*\} (\d+)/gm)) {
    sum += Number(m[1]);
  }
  return sum;
}
