/**
 * End to end with separate processes, as on a small fleet: 1 deploy API, 2
 * gateways, 2 scalers (one leads) and 2 agents on two loopback addresses
 * (127.0.0.1 and 127.0.0.2), each the real `skiff` command, over one Redis
 * (the run's, with a key prefix of its own), real Docker containers of the
 * hello test image, and load through both gateways.
 *
 * Shortened by configuration (so scale-out, scale-down and scale to zero fit
 * in seconds): autoscaler stable window 6 s (Knative's minimum), panic window
 * 10% of it, scale-to-zero grace 3 s, decisions every 500 ms; scaler lease
 * 1.5 s; agent heartbeat 250 ms with a 1.5 s TTL.
 *
 * The tests run in order and build on each other (one service, `load`, whose
 * revisions follow the story), logging the timings they measure.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { helloImage } from "../support/images.ts";
import { connect, redisUrl, uniquePrefix } from "../support/redis.ts";
import {
  hit,
  killContainers,
  type Proc,
  published,
  readyByAgent,
  removeContainers,
  spawnSkiff,
  startLoad,
  stopAllProcesses,
  tally,
  total,
  waitUntil,
} from "./support.ts";

const prefix = uniquePrefix("e2e-fleet");
const token = `e2e-${randomBytes(12).toString("hex")}`;
const suffix = randomBytes(3).toString("hex");
const agentA = `e2e-a-${suffix}`;
const agentB = `e2e-b-${suffix}`;
const HOST = "load.default.localhost";
const env = {
  REDIS_URL: redisUrl(),
  SKIFF_REDIS_PREFIX: prefix,
  SKIFF_TOKEN: "",
  SKIFF_API_URL: "",
  SKIFF_CONFIG: "",
};
const SCALER_FLAGS = [
  "--port",
  "0",
  "--stable-window",
  "6s",
  "--scale-to-zero-grace",
  "3s",
  "--tick-interval",
  "500ms",
  "--lease",
  "1500",
  "--resync-interval",
  "2000",
];

let redis: Redis;
let image: string;
let apiUrl: string;
let gateways: string[];
const scalers: { proc: Proc; adminUrl: string }[] = [];
let agentBProc: Proc;
const procs: Proc[] = [];

function agent(id: string, address: string): Proc {
  return spawnSkiff(
    id,
    [
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
      "1500",
      "--resync-interval",
      "1000",
      "--isolate-processes",
      "1",
    ],
    env,
  );
}

beforeAll(async () => {
  redis = connect();
  image = await helloImage();
  const api = spawnSkiff("api", ["api", "--port", "0", "--token", token], env);
  const a = agent(agentA, "127.0.0.1");
  agentBProc = agent(agentB, "127.0.0.2");
  const gw = [1, 2].map((i) =>
    spawnSkiff(
      `gateway-${i}`,
      [
        "gateway",
        "--id",
        `e2e-gw${i}-${suffix}`,
        "--port",
        "0",
        "--admin-port",
        "0",
        "--resync-interval",
        "1000",
        "--agent-check-interval",
        "250",
      ],
      env,
    ),
  );
  const sc = [1, 2].map((i) =>
    spawnSkiff(`scaler-${i}`, ["scaler", "--id", `e2e-s${i}-${suffix}`, ...SCALER_FLAGS], env),
  );
  procs.push(api, a, agentBProc, ...gw, ...sc);
  apiUrl = (await api.waitFor(/Skiff API listening on (\S+)/))[1]!;
  await a.waitFor(/Skiff agent \S+ serving on 127\.0\.0\.1/);
  await agentBProc.waitFor(/Skiff agent \S+ serving on 127\.0\.0\.2/);
  gateways = await Promise.all(
    gw.map(async (g) => (await g.waitFor(/Skiff gateway \S+ serving on (\S+)/))[1]!),
  );
  for (const s of sc) {
    scalers.push({ proc: s, adminUrl: (await s.waitFor(/health and metrics at (\S+)/))[1]! });
  }
  await waitUntil("a leading scaler", async () => (await leader()) !== undefined, 15_000);
}, 120_000);

afterAll(async () => {
  await stopAllProcesses();
  await removeContainers([agentA, agentB]);
  redis?.disconnect();
}, 90_000);

async function skiff(...args: string[]) {
  const r = await runCli(args, { env: { ...env, SKIFF_API_URL: apiUrl, SKIFF_TOKEN: token } });
  if (r.code !== 0) {
    const logs = procs
      .map((p) => `--- ${p.name} ---\n${p.output().split("\n").slice(-15).join("\n")}`)
      .join("\n");
    throw new Error(`skiff ${args.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}\n${logs}`);
  }
  return r.stdout;
}

/** The scaler whose /readyz says it leads. */
async function leader(): Promise<{ proc: Proc; adminUrl: string } | undefined> {
  for (const s of scalers) {
    if (!s.proc.alive()) continue;
    const res = await fetch(`${s.adminUrl}/readyz`).catch(() => undefined);
    if (res && (await res.text()) === "ok (leader)") return s;
  }
  return undefined;
}

const ready = (revision: string) => readyByAgent(redis, prefix, revision);

/** Sample a revision's ready count every 100 ms until stopped; reports the largest seen. */
function watchMax(revision: string) {
  let max = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      max = Math.max(max, total(await ready(revision)));
      await sleep(100);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return max;
    },
  };
}

describe("a fleet of separate processes: 1 API, 2 gateways, 2 scalers, 2 agents on 127.0.0.1 and 127.0.0.2", () => {
  let loadStoppedAt = 0;

  it("a container service with target 10 becomes Ready through the CLI and answers through both gateways", async () => {
    await skiff(
      "service",
      "create",
      "load",
      "--image",
      image,
      "--env",
      "TARGET=One",
      "--scale-target",
      "10",
    );
    await published(redis, prefix, HOST, ["load-00001"]);
    for (const g of gateways) {
      expect(await hit(g, HOST)).toEqual({ status: 200, body: "Hello One!" });
    }
    expect(total(await ready("load-00001"))).toBe(1);
  }, 60_000);

  it("20 clients against target 10 (x 70% utilisation) scale out to ceil(20 / 7) = 3 instances on both agents, no failed request", async () => {
    // Closed loop: 20 requests always in flight (10 per gateway), each held 100 ms by the app,
    // so the fleet's concurrency is just under 20: 20 / 7 -> 3 instances, never more.
    const max = watchMax("load-00001");
    const load = startLoad({ gateways, host: HOST, path: "/?sleep=100", connections: 20 });
    const started = Date.now();
    const placed = await waitUntil(
      "3 ready instances",
      async () => {
        const r = await ready("load-00001");
        return total(r) === 3 ? r : undefined;
      },
      20_000,
    );
    const scaledIn = Date.now() - started;
    // Hold the load a little longer: the count must stay at 3 (no overshoot).
    await sleep(Math.max(0, 8_000 - scaledIn));
    const result = await load.stop();
    loadStoppedAt = Date.now();
    const most = await max.stop();
    console.log(
      `scale-out: 1 -> 3 ready instances ${scaledIn} ms after the load started (placement ${JSON.stringify(placed)}); ` +
        `${result.requests} requests in ${result.durationMs} ms, ${result.failures} failed, most instances seen ${most}`,
    );
    expect(result.failureSamples).toEqual([]);
    expect(result.ok).toBe(result.requests);
    expect(most).toBe(3);
    expect(Object.keys(placed).sort()).toEqual([agentA, agentB].sort());
  }, 60_000);

  it("as load drops to 3 clients it scales back to 1 instance, draining without a failed request", async () => {
    const load = startLoad({ gateways, host: HOST, path: "/?sleep=100", connections: 3 });
    const started = Date.now();
    await waitUntil(
      "1 ready instance",
      async () => total(await ready("load-00001")) === 1,
      30_000,
      100,
    );
    console.log(
      `scale-down: 3 -> 1 instance ${Date.now() - loadStoppedAt} ms after the load dropped`,
    );
    // Keep sending through the drain of the removed instances (drain delay 1 s, then SIGTERM).
    await sleep(Math.max(0, 3_000 - (Date.now() - started)) + 2_000);
    const result = await load.stop();
    loadStoppedAt = Date.now();
    console.log(`scale-down phase: ${result.requests} requests, ${result.failures} failed`);
    expect(result.failureSamples).toEqual([]);
    expect(result.ok).toBe(result.requests);
  }, 60_000);

  it("with no traffic it reaches zero instances after the stable window and grace, and the next request is served from zero", async () => {
    await waitUntil(
      "zero instances",
      async () => total(await ready("load-00001")) === 0,
      30_000,
      100,
    );
    const idle = Date.now() - loadStoppedAt;
    console.log(`idle -> zero instances in ${idle} ms (stable window 6 s + grace 3 s)`);
    const desired = await redis.hlen(`${prefix}fleet:desired:${agentA}`);
    const desiredB = await redis.hlen(`${prefix}fleet:desired:${agentB}`);
    expect(desired + desiredB).toBe(0);
    const started = Date.now();
    expect(await hit(gateways[1]!, HOST)).toEqual({ status: 200, body: "Hello One!" });
    console.log(`cold start from zero through the gateway (container): ${Date.now() - started} ms`);
  }, 60_000);

  it("a rollout under load (--env TARGET=Two) moves the traffic to load-00002 without a failed request", async () => {
    const load = startLoad({ gateways, host: HOST, path: "/?sleep=50", connections: 6 });
    await sleep(1_000);
    const started = Date.now();
    await skiff("service", "update", "load", "--env", "TARGET=Two");
    console.log(`rollout: load-00002 Ready ${Date.now() - started} ms after the update`);
    // Every gateway now sends to load-00002 only.
    await waitUntil(
      "answers from load-00002 only",
      async () => {
        const counts = await tally(gateways[0]!, HOST, 10, 2);
        const counts2 = await tally(gateways[1]!, HOST, 10, 2);
        return counts["Hello Two!"] === 10 && counts2["Hello Two!"] === 10;
      },
      10_000,
    );
    // Keep the load on until load-00001's instance has drained and stopped.
    await waitUntil(
      "load-00001 at zero",
      async () => total(await ready("load-00001")) === 0,
      30_000,
      100,
    );
    await sleep(1_500);
    const result = await load.stop();
    console.log(
      `rollout phase: ${result.requests} requests, ${result.failures} failed, answers ${JSON.stringify(result.bodies)}`,
    );
    expect(result.failureSamples).toEqual([]);
    expect(Object.keys(result.bodies).sort()).toEqual(["Hello One!", "Hello Two!"]);
  }, 60_000);

  it("killing an agent (SIGKILL, and its containers) re-places its instances on the other agent and traffic recovers", async () => {
    await skiff("service", "update", "load", "--scale-min", "2");
    const spread = await waitUntil(
      "load-00003 on both agents",
      async () => {
        const r = await ready("load-00003");
        return r[agentA] && r[agentB] ? r : undefined;
      },
      20_000,
    );
    console.log(`before the kill: ${JSON.stringify(spread)}`);
    await published(redis, prefix, HOST, ["load-00003"]);
    const load = startLoad({ gateways, host: HOST, path: "/?sleep=20", connections: 4 });
    await sleep(500);
    const killedAt = Date.now();
    agentBProc.killGroup();
    const killed = await killContainers(agentB);
    await waitUntil(
      `2 ready instances on ${agentA} only`,
      async () => {
        const r = await ready("load-00003");
        return r[agentB] === undefined && (r[agentA] ?? 0) >= 2;
      },
      20_000,
    );
    const replaced = Date.now() - killedAt;
    await sleep(1_000);
    const during = await load.stop();
    console.log(
      `agent ${agentB} killed (with ${killed} container(s)): instances re-placed on ${agentA} in ${replaced} ms; ` +
        `${during.requests} requests meanwhile, ${during.failures} failed ${JSON.stringify(during.failureSamples.slice(0, 3))}`,
    );
    expect(await tally(gateways[0]!, HOST, 20)).toEqual({ "Hello Two!": 20 });
    expect(await tally(gateways[1]!, HOST, 20)).toEqual({ "Hello Two!": 20 });
  }, 60_000);

  it("killing the leading scaler hands over to the standby, which keeps scaling and routing", async () => {
    const lead = (await leader())!;
    expect(lead).toBeDefined();
    const standby = scalers.find((s) => s !== lead)!;
    const killedAt = Date.now();
    lead.proc.killGroup();
    await waitUntil("the standby to lead", async () => (await leader()) === standby, 15_000, 50);
    const handover = Date.now() - killedAt;
    console.log(
      `scaler handover: ${standby.proc.name} leads ${handover} ms after the leader was killed`,
    );
    // The new leader places and routes a new revision.
    const started = Date.now();
    await skiff("service", "update", "load", "--env", "TARGET=Three", "--scale-min", "1");
    console.log(`after the handover, load-00004 Ready in ${Date.now() - started} ms`);
    await published(redis, prefix, HOST, ["load-00004"]);
    expect(await tally(gateways[0]!, HOST, 10)).toEqual({ "Hello Three!": 10 });
  }, 60_000);
});
