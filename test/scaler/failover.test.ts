/**
 * Failures the scaler must ride out, all with real parts: two scaler
 * processes' worth of scalers contend for the lease and exactly one acts;
 * the leader dying (stopped without releasing the lease, as a crash leaves
 * it) hands over to the standby; an agent killed with SIGKILL (its own
 * process group, workerd included: no deregistration, no drain) has its
 * instances placed on the other agent, and traffic recovers.
 *
 * Leases and heartbeats are short here (lease 1 s, agent TTL 1 s) and the
 * autoscaler windows shortened (support.ts); times are logged, not asserted.
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/server.ts";
import type { Gateway } from "../../gateway/server.ts";
import type { RunningScaler } from "../../scaler/server.ts";
import { Fleet } from "../../src/fleet/fleet.ts";
import { spawnAgentProcess } from "../agent/support.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { connect, redisUrl, uniquePrefix } from "../support/redis.ts";
import { killWorkerdOf } from "../support/workerd.ts";
import {
  hit,
  serviceHost,
  startTestAgent,
  startTestGateway,
  startTestScaler,
  testAgentOptions,
  waitFor,
  waitRouted,
  workerService,
} from "./support.ts";

const prefix = uniquePrefix("scaler-failover");
let api: TestApi;
let agentA: RunningAgent;
let agentB: ChildProcess | undefined;
let stateDir: string;
let gateway: Gateway;
let scalers: RunningScaler[] = [];
let redis: Redis;
let fleet: Fleet;

/** Agent B in its own process group, so SIGKILL takes its workerd with it. */
async function spawnAgentB(): Promise<ChildProcess> {
  const options = testAgentOptions(prefix, "failover-b");
  const agent = await spawnAgentProcess(
    { ...options, address: "127.0.0.2", isolateStateDir: stateDir },
    true,
  );
  return agent.child;
}

function killAgentB(): Promise<unknown> | undefined {
  const child = agentB;
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return undefined;
  const exited = once(child, "exit");
  process.kill(-child.pid, "SIGKILL");
  return exited;
}

async function placed(rev: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const id of [agentA.agent.id, "failover-b"]) {
    const n = (await fleet.readDesired(id)).filter((d) => d.revision === rev).length;
    if (n > 0) out[id] = n;
  }
  return out;
}

beforeAll(async () => {
  redis = connect();
  fleet = new Fleet({ url: redisUrl(), prefix });
  stateDir = await mkdtemp(join(tmpdir(), "skiff-failover-b-"));
  api = await startTestApi({ prefix });
  [agentA, agentB] = await Promise.all([
    startTestAgent(prefix, "failover-a", { address: "127.0.0.1" }),
    spawnAgentB(),
  ]);
  gateway = await startTestGateway(prefix);
  scalers = await Promise.all([
    startTestScaler(prefix, { id: "scaler-1" }),
    startTestScaler(prefix, { id: "scaler-2" }),
  ]);
}, 60_000);

afterAll(async () => {
  await killAgentB();
  await Promise.all(scalers.map((s) => s.stop()));
  await gateway?.close(500);
  await agentA?.stop();
  await api?.close();
  await fleet?.close();
  redis?.disconnect();
  // The killed agent's workerd processes outlive it (their own process group).
  if (stateDir) await killWorkerdOf(stateDir);
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

describe("leader election", () => {
  it("of two scalers exactly one leads, and /readyz says which", async () => {
    await waitFor("a leader", () => scalers.some((s) => s.isLeader));
    for (let i = 0; i < 20; i++) {
      expect(scalers.filter((s) => s.isLeader)).toHaveLength(1);
      await sleep(50);
    }
    const leader = scalers.find((s) => s.isLeader)!;
    const standby = scalers.find((s) => !s.isLeader)!;
    await leader.whenLeading();
    expect(await (await fetch(`${leader.adminUrl}/readyz`)).text()).toBe("ok (leader)");
    expect(await (await fetch(`${standby.adminUrl}/readyz`)).text()).toBe("ok (standby)");
    expect(await (await fetch(`${leader.adminUrl}/metrics`)).text()).toMatch(
      /^skiff_scaler_leader(\{[^}]*\})? 1$/m,
    );
    expect(await (await fetch(`${standby.adminUrl}/metrics`)).text()).toMatch(
      /^skiff_scaler_leader(\{[^}]*\})? 0$/m,
    );
  });

  it("min-scale 2 places one instance on each agent", async () => {
    const r = await api.call(
      "POST",
      api.ns("services"),
      workerService("spread", { annotations: { "autoscaling.knative.dev/min-scale": "2" } }),
    );
    expect(r.status).toBe(201);
    await waitRouted(redis, prefix, gateway, serviceHost("spread"));
    await waitFor(
      "2 endpoints",
      async () => (await fleet.readEndpoints("default", "spread-00001")).length === 2,
    );
    expect(await placed("spread-00001")).toEqual({ "failover-a": 1, "failover-b": 1 });
  });

  it("a leader that dies without releasing the lease is replaced by the standby, which acts", async () => {
    const leader = scalers.find((s) => s.isLeader)!;
    const standby = scalers.find((s) => !s.isLeader)!;
    const token = leader.leadership!.fencingToken;
    const t0 = performance.now();
    await leader.stop({ release: false });
    await waitFor("the standby leads", () => standby.isLeader, 10_000);
    await standby.whenLeading();
    console.log(
      `leader handover (lease 1 s, not released): ${(performance.now() - t0).toFixed(0)} ms`,
    );
    expect(standby.leadership!.fencingToken).toBeGreaterThan(token);

    // Its fresh autoscaler for the 2-instance revision starts in panic with zero load
    // (Knative's behaviour); the metric and the decision say it is starting, not load.
    await standby.tickNow();
    const panic = standby.revisionState("default/spread-00001")?.decision;
    expect(panic).toMatchObject({ mode: "panic", panicCause: "starting", desired: 2 });
    expect(panic!.message).toMatch(/^panic \(starting\)/);
    const metrics = await (await fetch(`${standby.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /^skiff_scaler_panic_mode\{namespace="default",revision="spread-00001",reason="starting"\} 1$/m,
    );
    expect(metrics).toMatch(
      /^skiff_scaler_panic_mode\{namespace="default",revision="spread-00001",reason="load"\} 0$/m,
    );

    // The new leader reconciles: a new Service becomes ready and routed.
    expect((await api.call("POST", api.ns("services"), workerService("later"))).status).toBe(201);
    await waitRouted(redis, prefix, gateway, serviceHost("later"));
    expect((await hit(gateway.url, serviceHost("later"))).body).toBe("Hello World! (later-00001)");
  });
});

describe("an agent that dies", () => {
  it("has its instances placed on the other agent, and traffic recovers", async () => {
    const host = serviceHost("spread");
    const before = await hit(gateway.url, host);
    expect(before.status, before.body).toBe(200);
    const t0 = performance.now();
    await killAgentB();
    await waitFor(
      "re-placed on agent A",
      async () => {
        const p = await placed("spread-00001");
        const eps = await fleet.readEndpoints("default", "spread-00001");
        return p["failover-a"] === 2 && !p["failover-b"] && eps.length === 2;
      },
      15_000,
    );
    console.log(
      `agent killed -> its instance re-placed and ready: ${(performance.now() - t0).toFixed(0)} ms`,
    );
    expect(await fleet.readDesired("failover-b")).toEqual([]);
    expect((await fleet.listLiveAgents()).map((a) => a.id)).toEqual(["failover-a"]);
    for (let i = 0; i < 10; i++) {
      const a = await hit(gateway.url, host);
      expect(a.status, a.body).toBe(200);
      expect(a.body).toBe("Hello World! (spread-00001)");
    }
  });
});
