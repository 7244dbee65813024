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
 * Each test deploys a service of its own (so any one passes alone with -t) and
 * deletes it at its end, logging the timings it measures. Killing agent B and
 * the leading scaler are the last two: later tests would run without them.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { removeContainers } from "../support/containers.ts";
import { helloImage } from "../support/images.ts";
import { connect, redisUrl, uniquePrefix } from "../support/redis.ts";
import {
  agentArgs,
  answered,
  apiArgs,
  gatewayArgs,
  hit,
  killContainers,
  leadingScaler,
  type Proc,
  published,
  readyByAgent,
  runningContainers,
  type ScalerProc,
  SHORT_WINDOWS,
  scalerArgs,
  scalerTicks,
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
const hostOf = (service: string) => `${service}.default.localhost`;
const env = {
  REDIS_URL: redisUrl(),
  SKIFF_REDIS_PREFIX: prefix,
  SKIFF_TOKEN: "",
  SKIFF_API_URL: "",
  SKIFF_CONFIG: "",
};

let redis: Redis;
let image: string;
let apiUrl: string;
let gateways: string[];
const scalers: ScalerProc[] = [];
let agentBProc: Proc;
const procs: Proc[] = [];

function agent(id: string, address: string): Proc {
  return spawnSkiff(id, agentArgs(id, address), env);
}

beforeAll(async () => {
  redis = connect();
  image = await helloImage();
  const api = spawnSkiff("api", apiArgs(token), env);
  const a = agent(agentA, "127.0.0.1");
  agentBProc = agent(agentB, "127.0.0.2");
  const gw = [1, 2].map((i) =>
    spawnSkiff(`gateway-${i}`, gatewayArgs(`e2e-gw${i}-${suffix}`), env),
  );
  const sc = [1, 2].map((i) =>
    spawnSkiff(
      `scaler-${i}`,
      scalerArgs("--id", `e2e-s${i}-${suffix}`, ...SHORT_WINDOWS, "--resync-interval", "2000"),
      env,
    ),
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
const leader = () => leadingScaler(scalers);

const ready = (revision: string) => readyByAgent(redis, prefix, revision);

/** Autoscaler passes the leading scaler has made (its tick histogram's count). */
async function leaderTicks(): Promise<number> {
  const lead = await leader();
  return lead ? scalerTicks(lead.adminUrl) : 0;
}

/** Wait until the leading scaler has made `n` more autoscaler passes: proof that it decided meanwhile. */
async function moreTicks(n: number): Promise<void> {
  const from = await leaderTicks();
  await waitUntil(
    `${n} more scaler passes`,
    async () => (await leaderTicks()) >= from + n,
    30_000,
    100,
  );
}

/** `service create NAME --image ... ARGS`, then wait until its table is published. */
async function createService(name: string, ...args: string[]): Promise<void> {
  await skiff("service", "create", name, "--image", image, ...args);
  await published(redis, prefix, hostOf(name), [`${name}-00001`]);
}

/** Sample a revision's ready count every 100 ms until stopped; reports the largest seen. */
function watchMax(revision: string) {
  let max = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      max = Math.max(max, total(await ready(revision)));
      // The sampling period of a watch, not a wait for state.
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

// Every test deploys (and cold-starts) a service of its own: 90 s each on a loaded machine.
describe("a fleet of separate processes: 1 API, 2 gateways, 2 scalers, 2 agents on 127.0.0.1 and 127.0.0.2", () => {
  it("a container service with target 10 becomes Ready through the CLI and answers through both gateways", async () => {
    await createService("ready", "--env", "TARGET=One", "--scale-target", "10");
    for (const g of gateways) {
      expect(await hit(g, hostOf("ready"))).toEqual({ status: 200, body: "Hello One!" });
    }
    expect(total(await ready("ready-00001"))).toBe(1);
    await skiff("service", "delete", "ready");
  }, 90_000);

  it("20 clients against target 10 (x 70% utilisation) scale out to ceil(20 / 7) = 3 instances on both agents, no failed request", async () => {
    await createService("out", "--env", "TARGET=Out", "--scale-target", "10");
    // Closed loop: 20 requests always in flight (10 per gateway), each held 100 ms by the app,
    // so the fleet's concurrency is just under 20: 20 / 7 -> 3 instances, never more.
    const max = watchMax("out-00001");
    const load = startLoad({ gateways, host: hostOf("out"), path: "/?sleep=100", connections: 20 });
    const started = Date.now();
    const placed = await waitUntil(
      "3 ready instances",
      async () => {
        const r = await ready("out-00001");
        return total(r) === 3 ? r : undefined;
      },
      20_000,
    );
    const scaledIn = Date.now() - started;
    // Hold the load until 8 s after its start (at least 4 more scaler passes at 500 ms):
    // the count must stay at 3 (no overshoot).
    await moreTicks(Math.max(4, Math.ceil((8_000 - scaledIn) / 500)));
    const result = await load.stop();
    const most = await max.stop();
    console.log(
      `scale-out: 1 -> 3 ready instances ${scaledIn} ms after the load started (placement ${JSON.stringify(placed)}); ` +
        `${result.requests} requests in ${result.durationMs} ms, ${result.failures} failed, most instances seen ${most}`,
    );
    expect(result.failureSamples).toEqual([]);
    expect(result.ok).toBe(result.requests);
    expect(most).toBe(3);
    expect(Object.keys(placed).sort()).toEqual([agentA, agentB].sort());
    await skiff("service", "delete", "out");
  }, 90_000);

  it("as load drops to 3 clients it scales back to 1 instance, draining without a failed request", async () => {
    // Starts at 3 instances (its initial scale), as after a scale-out.
    await createService(
      "down",
      "--env",
      "TARGET=Down",
      "--scale-target",
      "10",
      "--scale-init",
      "3",
    );
    await waitUntil(
      "3 ready instances",
      async () => total(await ready("down-00001")) === 3,
      30_000,
    );
    const load = startLoad({ gateways, host: hostOf("down"), path: "/?sleep=100", connections: 3 });
    const started = Date.now();
    await waitUntil(
      "1 ready instance",
      async () => total(await ready("down-00001")) === 1,
      30_000,
      100,
    );
    console.log(`scale-down: 3 -> 1 instance ${Date.now() - started} ms after the load started`);
    // Keep sending through the drain of the removed instances (drain delay 1 s, then SIGTERM)
    // until their containers have stopped, and a while after.
    await waitUntil(
      "the removed instances' containers stopped",
      async () => (await runningContainers([agentA, agentB], "down-00001")) === 1,
      30_000,
      100,
    );
    await answered(load, 30);
    const result = await load.stop();
    console.log(`scale-down phase: ${result.requests} requests, ${result.failures} failed`);
    expect(result.failureSamples).toEqual([]);
    expect(result.ok).toBe(result.requests);
    await skiff("service", "delete", "down");
  }, 90_000);

  it("with no traffic it reaches zero instances after the stable window and grace, and the next request is served from zero", async () => {
    await createService("idle", "--env", "TARGET=Idle", "--scale-target", "10");
    expect(await hit(gateways[0]!, hostOf("idle"))).toEqual({ status: 200, body: "Hello Idle!" });
    const lastRequestAt = Date.now();
    await waitUntil(
      "zero instances",
      async () => total(await ready("idle-00001")) === 0,
      30_000,
      100,
    );
    const idle = Date.now() - lastRequestAt;
    console.log(`idle -> zero instances in ${idle} ms (stable window 6 s + grace 3 s)`);
    const desired = async (agent: string) =>
      Object.values(await redis.hgetall(`${prefix}fleet:desired:${agent}`)).filter(
        (json) => (JSON.parse(json) as { revision: string }).revision === "idle-00001",
      ).length;
    expect((await desired(agentA)) + (await desired(agentB))).toBe(0);
    const started = Date.now();
    expect(await hit(gateways[1]!, hostOf("idle"))).toEqual({ status: 200, body: "Hello Idle!" });
    console.log(`cold start from zero through the gateway (container): ${Date.now() - started} ms`);
    await skiff("service", "delete", "idle");
  }, 90_000);

  it("a rollout under load (--env TARGET=Two) moves the traffic to roll-00002 without a failed request", async () => {
    const host = hostOf("roll");
    await createService("roll", "--env", "TARGET=One", "--scale-target", "10");
    const load = startLoad({ gateways, host, path: "/?sleep=50", connections: 6 });
    await answered(load, 30);
    const started = Date.now();
    await skiff("service", "update", "roll", "--env", "TARGET=Two");
    console.log(`rollout: roll-00002 Ready ${Date.now() - started} ms after the update`);
    // Every gateway now sends to roll-00002 only.
    await waitUntil(
      "answers from roll-00002 only",
      async () => {
        const counts = await tally(gateways[0]!, host, 10, 2);
        const counts2 = await tally(gateways[1]!, host, 10, 2);
        return counts["Hello Two!"] === 10 && counts2["Hello Two!"] === 10;
      },
      10_000,
    );
    // Keep the load on until roll-00001's instance has drained and its container stopped.
    await waitUntil(
      "roll-00001 at zero",
      async () => total(await ready("roll-00001")) === 0,
      30_000,
      100,
    );
    await waitUntil(
      "roll-00001's container stopped",
      async () => (await runningContainers([agentA, agentB], "roll-00001")) === 0,
      30_000,
      100,
    );
    await answered(load, 30);
    const result = await load.stop();
    console.log(
      `rollout phase: ${result.requests} requests, ${result.failures} failed, answers ${JSON.stringify(result.bodies)}`,
    );
    expect(result.failureSamples).toEqual([]);
    expect(Object.keys(result.bodies).sort()).toEqual(["Hello One!", "Hello Two!"]);
    await skiff("service", "delete", "roll");
  }, 90_000);

  it("killing an agent (SIGKILL, and its containers) re-places its instances on the other agent and traffic recovers", async () => {
    const host = hostOf("kill");
    await createService("kill", "--env", "TARGET=Kill", "--scale-min", "2");
    const spread = await waitUntil(
      "kill-00001 on both agents",
      async () => {
        const r = await ready("kill-00001");
        return r[agentA] && r[agentB] ? r : undefined;
      },
      20_000,
    );
    console.log(`before the kill: ${JSON.stringify(spread)}`);
    const load = startLoad({ gateways, host, path: "/?sleep=20", connections: 4 });
    await answered(load, 20);
    const killedAt = Date.now();
    agentBProc.killGroup();
    const killed = await killContainers(agentB);
    await waitUntil(
      `2 ready instances on ${agentA} only`,
      async () => {
        const r = await ready("kill-00001");
        return r[agentB] === undefined && (r[agentA] ?? 0) >= 2;
      },
      20_000,
    );
    const replaced = Date.now() - killedAt;
    const failedWhileReplacing = load.current().failures;
    await answered(load, 50);
    const during = await load.stop();
    console.log(
      `agent ${agentB} killed (with ${killed} container(s)): instances re-placed on ${agentA} in ${replaced} ms; ` +
        `${during.requests} requests meanwhile, ${during.failures} failed ${JSON.stringify(during.failureSamples.slice(0, 3))}`,
    );
    // Failures allowed: requests sent to the dead host's instance (a 502 naming it as
    // unreachable) until the gateways drop its endpoints; none once it was re-placed.
    // (Not yet "at most those in flight": the gateway retries a connection reset by the
    // dead container's port once, without suspecting the instance, so it may pick it again.)
    for (const f of during.failureSamples) {
      expect(f).toMatch(/^HTTP 502 .*no instance of revision default\/kill-00001 could be reached/);
    }
    expect(during.failures - failedWhileReplacing, JSON.stringify(during.failureSamples)).toBe(0);
    expect(await tally(gateways[0]!, host, 20)).toEqual({ "Hello Kill!": 20 });
    expect(await tally(gateways[1]!, host, 20)).toEqual({ "Hello Kill!": 20 });
  }, 90_000);

  it("killing the leading scaler hands over to the standby, which keeps scaling and routing", async () => {
    const host = hostOf("lead");
    await createService("lead", "--env", "TARGET=Lead", "--scale-target", "10");
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
    await skiff("service", "update", "lead", "--env", "TARGET=Three");
    console.log(`after the handover, lead-00002 Ready in ${Date.now() - started} ms`);
    await published(redis, prefix, host, ["lead-00002"]);
    expect(await tally(gateways[0]!, host, 10)).toEqual({ "Hello Three!": 10 });
  }, 90_000);
});
