/** `startAgent`: the agent's own HTTP server, its registration and its options. */
import { availableParallelism, totalmem } from "node:os";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseAgentOptions } from "../../agent/options.ts";
import { type RunningAgent, startAgent } from "../../agent/server.ts";
import { ValidationError } from "../../src/errors.ts";
import { type AgentTestEnv, agentTestEnv, call, waitFor, workerService } from "./support.ts";

let env: AgentTestEnv;
let running: RunningAgent;

beforeAll(async () => {
  env = await agentTestEnv("ags");
  running = await startAgent(
    env.agentOptions({ containers: false, labels: { zone: "z1" }, capacity: { maxInstances: 7 } }),
  );
});
afterAll(async () => {
  await running?.stop();
  await env?.cleanup();
});

describe("startAgent", () => {
  test("serves /healthz and /readyz on its own loopback port", async () => {
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${running.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok");
    expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
  });

  test("registers with its capacity, labels and runtimes", async () => {
    const live = await env.fleet.listLiveAgents();
    const me = live.find((a) => a.id === env.agentId);
    expect(me).toMatchObject({
      address: "127.0.0.1",
      runtimes: ["isolate"],
      labels: { zone: "z1" },
      capacity: {
        cpuMillis: availableParallelism() * 1000,
        memoryBytes: totalmem(),
        maxInstances: 7,
      },
    });
    expect(me?.draining).toBeUndefined();
  });

  test("/metrics shows instances by phase and runtime, starts, cold starts and reconcile passes", async () => {
    const rev = await env.createService(workerService("metrics", "M"));
    await env.desire(rev.metadata.name, "isolate");
    const ep = await waitFor(
      "an endpoint",
      async () => (await env.endpoints(rev.metadata.name))[0],
    );
    expect((await call(ep)).status).toBe(200);
    const text = await (await fetch(`${running.url}/metrics`)).text();
    expect(text).toMatch(/skiff_agent_instances\{phase="ready",runtime="isolate"\} 1/);
    expect(text).toMatch(/skiff_agent_instance_starts_total\{runtime="isolate"\} 1/);
    expect(text).toMatch(/skiff_agent_cold_start_seconds_count\{runtime="isolate"\} 1/);
    expect(text).toMatch(/skiff_agent_reconcile_duration_seconds_count [1-9]/);
  });
});

describe("agent options", () => {
  test("a TTL shorter than two heartbeat intervals is refused, naming the field", () => {
    let err: unknown;
    try {
      parseAgentOptions({ heartbeatIntervalMs: 1_000, heartbeatTtlMs: 1_500 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).causes[0]?.field).toBe("heartbeatTtlMs");
  });

  test("defaults: loopback data address and server, 1 s heartbeat, 5 s TTL and resync", () => {
    const o = parseAgentOptions({});
    expect(o).toMatchObject({
      address: "127.0.0.1",
      host: "127.0.0.1",
      port: 8091,
      heartbeatIntervalMs: 1_000,
      heartbeatTtlMs: 5_000,
      resyncIntervalMs: 5_000,
    });
  });
});
