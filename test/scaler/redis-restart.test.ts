/**
 * Issue 11, "a Redis restart can evict a healthy agent": Redis restarted from
 * its AOF restores the agents' heartbeat keys already expired, and a scaler
 * pass that runs before the agent's next heartbeat used to prune it (its
 * desired set cleared, every instance stopped). Now the scaler presumes such
 * an agent alive for `agentGraceMs` (one heartbeat TTL) after a Redis
 * reconnect or a leader change, and changes nothing meanwhile.
 *
 * Real parts: a private redis-server with AOF (started, stopped and restarted
 * here), a real agent process with a real workerd isolate, the real API and
 * scaler. The fault run hit this race 2 times in 4; to make its order certain
 * here, the agent process (not its workerd) is paused with SIGSTOP across the
 * restart, as a CPU-starved host would be, while the test asks the scaler for
 * passes; it is resumed well within the grace.
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningScaler } from "../../scaler/server.ts";
import { Fleet } from "../../src/fleet/fleet.ts";
import { spawnAgentProcess } from "../agent/support.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { uniquePrefix } from "../support/redis.ts";
import { type RedisServer, startRedisServer } from "../support/redis-server.ts";
import { killWorkerdOf } from "../support/workerd.ts";
import { startTestScaler, testAgentOptions, waitFor, workerService } from "./support.ts";

const prefix = uniquePrefix("scaler-redis-restart");
const AGENT_ID = "restart-a";
const TTL_MS = 1_000;
let dir: string;
let stateDir: string;
let server: RedisServer;
let api: TestApi;
let agent: ChildProcess | undefined;
let scaler: RunningScaler;
let fleet: Fleet;

async function spawnAgent(url: string): Promise<ChildProcess> {
  const options = testAgentOptions(prefix, AGENT_ID);
  const agent = await spawnAgentProcess(
    { ...options, redisUrl: url, heartbeatTtlMs: TTL_MS, isolateStateDir: stateDir },
    true,
  );
  return agent.child;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "skiff-scaler-restart-"));
  stateDir = await mkdtemp(join(tmpdir(), "skiff-scaler-restart-agent-"));
  server = await startRedisServer({ appendonly: true, dir });
  api = await startTestApi({ prefix, config: { redisUrl: server.url } });
  agent = await spawnAgent(server.url);
  scaler = await startTestScaler(prefix, {
    redisUrl: server.url,
    id: "restart-scaler",
    agentGraceMs: 3 * TTL_MS,
  });
  fleet = new Fleet({ url: server.url, prefix });
}, 60_000);

afterAll(async () => {
  if (agent?.pid && agent.exitCode === null && agent.signalCode === null) {
    const exited = once(agent, "exit");
    try {
      process.kill(agent.pid, "SIGCONT");
      process.kill(-agent.pid, "SIGKILL");
    } catch {}
    await exited;
  }
  await scaler?.stop();
  await api?.close();
  await fleet?.close();
  await server?.stop();
  // The killed agent's workerd processes outlive it (their own process group).
  if (stateDir) await killWorkerdOf(stateDir);
  for (const d of [dir, stateDir]) if (d) await rm(d, { recursive: true, force: true });
});

describe("a Redis restart from AOF with heartbeat keys restored already expired", () => {
  it("evicts no healthy agent (its desired set and instance stay, the scaler holds until it is back) and prunes a dead one after the grace", async () => {
    const svc = workerService("steady", {
      annotations: { "autoscaling.knative.dev/min-scale": "1" },
    });
    expect((await api.call("POST", api.ns("services"), svc)).status).toBe(201);
    const before = await waitFor(
      "one ready instance",
      async () => {
        const eps = await fleet.readEndpoints("default", "steady-00001");
        return eps.length === 1 ? eps : undefined;
      },
      30_000,
    );
    const desiredBefore = (await fleet.readDesired(AGENT_ID)).map((d) => d.id).sort();
    expect(desiredBefore).toEqual([before[0]!.instanceId]);

    // A second agent that really is gone: it must still be declared dead, after the grace.
    const record = (await fleet.getAgent(AGENT_ID))!;
    await fleet.registerAgent({ ...record, id: "restart-ghost", heartbeatAt: Date.now() }, TTL_MS);

    // Stop Redis cleanly (the AOF has everything), outlive the heartbeat TTL.
    await server.stop();
    await sleep(TTL_MS + 500);
    const pid = agent!.pid!;
    process.kill(pid, "SIGSTOP");
    let resumed = false;
    try {
      server = await startRedisServer({ appendonly: true, dir, port: server.port });
      const t0 = performance.now();
      // The record came back expired: the agent is missing, not (yet) back.
      expect(await fleet.getAgent(AGENT_ID)).toBeUndefined();
      // The lease expired too (restored expired): wait for the scaler to lead again.
      await waitFor("the scaler leads", () => scaler.isLeader, 15_000);
      await scaler.whenLeading();
      const t1 = performance.now();
      // Passes while the agent is paused: each one would have pruned it.
      while (performance.now() - t1 < 1_200) {
        await scaler.tickNow();
        await sleep(50);
      }
      process.kill(pid, "SIGCONT");
      resumed = true;
      await waitFor("the agent back", async () => (await fleet.getAgent(AGENT_ID)) !== undefined);
      console.log(
        `agent paused ${(performance.now() - t0).toFixed(0)} ms after Redis came back; grace ${3 * TTL_MS} ms`,
      );
    } finally {
      if (!resumed) process.kill(pid, "SIGCONT");
    }
    // A few more passes with the agent back: still nothing changes.
    await sleep(1_500);
    await scaler.tickNow();

    expect((await fleet.readDesired(AGENT_ID)).map((d) => d.id).sort()).toEqual(desiredBefore);
    const after = await fleet.readEndpoints("default", "steady-00001");
    expect(after.map((e) => e.instanceId)).toEqual([before[0]!.instanceId]);
    expect(after[0]!.readyAt).toBe(before[0]!.readyAt);
    const metrics = await (await fetch(`${scaler.adminUrl}/metrics`)).text();
    const held = Number(/^skiff_scaler_held_passes_total (\d+)/m.exec(metrics)?.[1] ?? 0);
    console.log(`scaling passes held while the agent was missing: ${held}`);
    expect(held).toBeGreaterThan(0);

    // The ghost never came back: pruned once the grace is over.
    // The grace is 3 s; the rest is room for a loaded machine's passes.
    await waitFor(
      "the ghost pruned",
      async () => (await fleet.listAgents()).missing.length === 0,
      20_000,
    );
    expect((await fleet.listAgents()).live.map((a) => a.id)).toEqual([AGENT_ID]);
  }, 60_000);
});
