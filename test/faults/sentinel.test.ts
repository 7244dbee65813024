/**
 * Redis failover with Sentinel (issue 11): a primary, a replica and three
 * sentinels (redis-sentinel, or `redis-server --sentinel`, the same binary) on
 * private loopback ports, all started and stopped here. Skiff's API, a
 * gateway, a scaler and an agent run as `skiff` processes configured only
 * with SKIFF_REDIS_SENTINELS + SKIFF_REDIS_MASTER. Under load the primary is
 * SIGKILLed; the sentinels promote the replica; every component follows:
 * the gateway keeps serving, the API takes writes again, and a service
 * created after the failover is placed, started and routed (scaler, agent,
 * gateway and their subscriptions all on the new primary).
 *
 * Writes acknowledged just before the failover: replication is asynchronous,
 * so a write the old primary acknowledged but had not yet sent to the replica
 * is lost. The test writes acknowledged markers up to the kill and reports
 * which survived; it asserts that every write the replica had confirmed
 * (WAIT 1) survived.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fleetKeys } from "../../src/fleet/keys.ts";
import { connectRedis } from "../../src/redis/connect.ts";
import {
  apiArgs,
  outputs,
  type Proc,
  scalerArgs,
  spawnSkiff,
  stopAllProcesses,
  waitUntil,
} from "../e2e/support.ts";
import { serviceManifest } from "../support/fixtures.ts";
import { uniquePrefix } from "../support/redis.ts";
import { freePort } from "../support/redis-server.ts";
import { answered, countedLoad, report, writeResults } from "./support.ts";

const MASTER = "skiffm";
const prefix = uniquePrefix("sentinel");
const suffix = Math.random().toString(16).slice(2, 8);
const token = `sentinel-${suffix}-0123456789abcdef`;
const agentId = `sentinel-a-${suffix}`;
const HOST = "steady.default.localhost";

let dir: string;
const servers: ChildProcess[] = [];
let primaryPort: number;
let replicaPort: number;
let primary: ChildProcess;
let sentinelPorts: number[] = [];
let apiUrl: string;
let gatewayUrl: string;
const procs: Proc[] = [];

/** redis-sentinel when installed, else redis-server in sentinel mode (the same program). */
function sentinelCommand(conf: string): [string, string[]] {
  try {
    execFileSync("which", ["redis-sentinel"], { stdio: "ignore" });
    return ["redis-sentinel", [conf]];
  } catch {
    return ["redis-server", [conf, "--sentinel"]];
  }
}

async function startRedis(name: string, lines: string[], sentinel = false): Promise<ChildProcess> {
  const conf = join(dir, `${name}.conf`);
  await writeFile(conf, `${lines.join("\n")}\n`);
  const [cmd, args] = sentinel ? sentinelCommand(conf) : ["redis-server", [conf]];
  const child = spawn(cmd, args, { stdio: "ignore" });
  servers.push(child);
  return child;
}

function client(port: number) {
  const r = connectRedis(`redis://127.0.0.1:${port}`, {
    connectionName: "skiff-sentinel-test",
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  r.on("error", () => {});
  return r;
}

async function ask<T>(port: number, fn: (r: ReturnType<typeof client>) => Promise<T>): Promise<T> {
  const r = client(port);
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** What the sentinels say the master is (port). */
const masterPort = () =>
  ask(sentinelPorts[0]!, async (r) => {
    const addr = (await r.call("SENTINEL", "get-master-addr-by-name", MASTER)) as string[];
    return Number(addr[1]);
  });

async function api(method: string, path: string, body?: unknown) {
  const res = await request(`${apiUrl}${path}`, {
    method: method as "GET",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  const text = await res.body.text();
  return { status: res.statusCode, text };
}

const marker = (name: string) =>
  api("POST", "/apis/skiff.dev/v1/tokens", {
    apiVersion: "skiff.dev/v1",
    kind: "Token",
    metadata: { name },
    spec: { role: "view", namespaces: ["default"] },
  });

function worker(name: string, target: string) {
  return serviceManifest(name, {
    worker:
      "export default { fetch(req, env) { return new Response('Hello ' + env.TARGET + '!'); } };",
    env: { TARGET: target },
    annotations: { "autoscaling.knative.dev/min-scale": "1" },
  });
}

async function answers(host: string, body: string): Promise<boolean> {
  const res = await request(gatewayUrl, {
    headers: { host },
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  }).catch(() => undefined);
  if (!res) return false;
  return res.statusCode === 200 && (await res.body.text()).trim() === body;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "skiff-sentinel-"));
  primaryPort = await freePort();
  replicaPort = await freePort();
  sentinelPorts = [await freePort(), await freePort(), await freePort()];
  const base = (port: number, name: string) => [
    `port ${port}`,
    "bind 127.0.0.1",
    `dir ${dir}`,
    `dbfilename ${name}.rdb`,
    'save ""',
    "appendonly no",
  ];
  primary = await startRedis("primary", base(primaryPort, "primary"));
  await startRedis("replica", [
    ...base(replicaPort, "replica"),
    `replicaof 127.0.0.1 ${primaryPort}`,
  ]);
  await waitUntil(
    "the replica in sync",
    () =>
      ask(primaryPort, async (r) => /connected_slaves:1/.test(await r.info("replication"))).catch(
        () => false,
      ),
    15_000,
    100,
  );
  for (const [i, port] of sentinelPorts.entries()) {
    await startRedis(
      `sentinel-${i}`,
      [
        `port ${port}`,
        "bind 127.0.0.1",
        `dir ${dir}`,
        `sentinel monitor ${MASTER} 127.0.0.1 ${primaryPort} 2`,
        `sentinel down-after-milliseconds ${MASTER} 1000`,
        `sentinel failover-timeout ${MASTER} 5000`,
        `sentinel parallel-syncs ${MASTER} 1`,
      ],
      true,
    );
  }
  await waitUntil(
    "the sentinels see the replica and each other",
    () =>
      ask(sentinelPorts[0]!, async (r) => {
        const m = (await r.call("SENTINEL", "master", MASTER)) as string[];
        const field = (k: string) => Number(m[m.indexOf(k) + 1]);
        return field("num-slaves") === 1 && field("num-other-sentinels") === 2;
      }).catch(() => false),
    20_000,
    100,
  );

  const env = {
    REDIS_URL: "",
    SKIFF_REDIS_SENTINELS: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(","),
    SKIFF_REDIS_MASTER: MASTER,
    SKIFF_REDIS_PREFIX: prefix,
    SKIFF_TOKEN: "",
    SKIFF_API_URL: "",
    SKIFF_CONFIG: "",
  };
  const apiProc = spawnSkiff("api", apiArgs(token), env);
  const agent = spawnSkiff(
    "agent",
    [
      "agent",
      "--id",
      agentId,
      "--port",
      "0",
      "--heartbeat-interval",
      "250",
      "--heartbeat-ttl",
      "1500",
      "--resync-interval",
      "1000",
      "--isolate-processes",
      "1",
    ],
    env,
  );
  const gateway = spawnSkiff(
    "gateway",
    ["gateway", "--port", "0", "--admin-port", "0", "--resync-interval", "1000"],
    env,
  );
  const scaler = spawnSkiff("scaler", scalerArgs("--agent-grace", "1500"), env);
  procs.push(apiProc, agent, gateway, scaler);
  apiUrl = (await apiProc.waitFor(/Skiff API listening on (\S+)/))[1]!;
  gatewayUrl = (await gateway.waitFor(/Skiff gateway \S+ serving on (\S+)/))[1]!;
  await agent.waitFor(/Skiff agent \S+ serving on/);
  await scaler.waitFor(/health and metrics at/);
  const r = await api(
    "POST",
    "/apis/serving.knative.dev/v1/namespaces/default/services",
    worker("steady", "One"),
  );
  expect(r.status, r.text).toBe(201);
  await waitUntil("steady answers", () => answers(HOST, "Hello One!"), 30_000, 100);
}, 90_000);

afterAll(async () => {
  try {
    // The rows are the suite's output: failing to write them fails it.
    await writeResults();
  } finally {
    await stopAllProcesses(5_000);
    for (const s of servers) if (s.exitCode === null && s.signalCode === null) s.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

describe("Redis Sentinel failover", () => {
  it("the primary is killed, the replica promoted; every component follows; WAIT-confirmed writes survive", async () => {
    expect(await masterPort()).toBe(primaryPort);
    const load = countedLoad({ gateways: () => [gatewayUrl], host: HOST, connections: 4 });
    // Acknowledged writes right up to the kill; the last one is confirmed by the replica (WAIT).
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      const name = `marker-${i}`;
      if ((await marker(name)).status === 201) acked.push(name);
    }
    const replicated = await ask(primaryPort, (r) => r.call("WAIT", "1", "2000"));
    expect(Number(replicated)).toBe(1);
    const confirmed = [...acked];
    for (let i = 20; i < 40; i++) {
      const name = `marker-${i}`;
      if ((await marker(name)).status === 201) acked.push(name);
    }

    const killedAt = performance.now();
    primary.kill("SIGKILL");
    await waitUntil(
      "the replica promoted",
      async () => (await masterPort()) === replicaPort,
      30_000,
      100,
    );
    const promotedMs = performance.now() - killedAt;
    await waitUntil(
      "the API takes writes",
      async () => (await marker("after-failover")).status === 201,
      30_000,
      100,
    );
    const apiMs = performance.now() - killedAt;
    await waitUntil(
      "the agent heartbeats to the new primary",
      () => ask(replicaPort, async (r) => (await r.exists(fleetKeys(prefix).agent(agentId))) === 1),
      30_000,
      100,
    );
    // A new service: the scaler places it, the agent starts it, the gateway routes it.
    const created = await api(
      "POST",
      "/apis/serving.knative.dev/v1/namespaces/default/services",
      worker("later", "Later"),
    );
    expect(created.status, created.text).toBe(201);
    await waitUntil(
      "later answers",
      () => answers("later.default.localhost", "Hello Later!"),
      30_000,
      100,
    );
    const recoveryMs = performance.now() - killedAt;
    await answered(load, 20);
    const c = await load.stop();

    const list = await api("GET", "/apis/skiff.dev/v1/tokens");
    const have = new Set(
      (JSON.parse(list.text) as { items: { metadata: { name: string } }[] }).items.map(
        (t) => t.metadata.name,
      ),
    );
    const survived = acked.filter((n) => have.has(n));
    const lost = acked.filter((n) => !have.has(n));
    report({
      id: "sentinel-failover",
      scenario: "Redis failover with Sentinel (primary SIGKILLed, replica promoted)",
      sent: c.sent,
      succeeded: c.succeeded,
      failed: c.failed,
      recoveryMs,
      recovered:
        "a service created after the failover answers (API, scaler, agent and gateway on the new primary)",
      notes: `replica promoted after ${Math.round(promotedMs)} ms (down-after 1 s), API writes again after ${Math.round(apiMs)} ms; acknowledged writes: ${acked.length}, survived ${survived.length}, lost ${lost.length}${lost.length ? ` (${lost.join(", ")})` : ""}; all ${confirmed.length} confirmed by WAIT survived: ${confirmed.every((n) => have.has(n))}`,
    });
    expect(confirmed.filter((n) => !have.has(n))).toEqual([]);
    expect(c.failureSamples, outputs(procs, 20)).toEqual([]);
  }, 120_000);
});
