/**
 * An isolate standby outlives the workerd process that held it: the agent
 * loads and parks it again in the replacement, so the next start is a resume
 * in the router, not a build (real workerd, real Redis).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Agent } from "../../agent/agent.ts";
import { metricValue } from "../support/metrics.ts";
import { type AgentTestEnv, agentTestEnv, call, waitFor, workerService } from "./support.ts";

let env: AgentTestEnv;
let agent: Agent;

beforeAll(async () => {
  env = await agentTestEnv("agr");
  agent = await env.startAgent({ containers: false, address: "127.0.0.2" });
});
afterAll(() => env?.cleanup());

const reloads = (outcome: string) =>
  metricValue(agent.registry, "skiff_agent_isolate_standby_reloads_total", { outcome });

describe("isolate standbys across a workerd restart", () => {
  test("a standby whose process died is loaded and parked again in its replacement: the next load there is a resume, and the next instance serves", async () => {
    const rev = await env.createService(workerService("phoenix", "Phoenix"));
    const name = rev.metadata.name;
    const key = `default/${name}`;
    const first = await env.desire(name, "isolate");
    const ep = await waitFor(`an endpoint of ${name}`, async () => (await env.endpoints(name))[0]);
    expect((await call(ep)).status).toBe(200);
    await env.undesire(first);
    await waitFor("the agent record to list the standby", async () =>
      (await env.fleet.getAgent(env.agentId))?.standbys?.includes(key),
    );

    const pool = agent.pool;
    if (!pool) throw new Error("no workerd pool");
    const slot = pool.endpointFor(key).slot;
    const before = pool.stats().find((s) => s.slot === slot);
    expect(before?.pid).toBeDefined();
    const parkedBefore = await reloads("parked");
    // The process dies (as after the watchdog's kill): its replacement holds no isolate.
    process.kill(before?.pid ?? 0, "SIGKILL");
    await waitFor("the standby parked again in the replacement", async () =>
      (await reloads("parked")) > parkedBefore ? true : undefined,
    );
    const after = pool.stats().find((s) => s.slot === slot);
    expect(after?.pid).not.toBe(before?.pid);
    // Still held, and held by the new process: a load there finds it parked.
    expect((await env.fleet.getAgent(env.agentId))?.standbys).toContain(key);
    expect(await pool.load(key)).toMatchObject({ ok: true, kind: "resumed" });

    const second = await env.desire(name, "isolate");
    const again = await waitFor(`a new endpoint of ${name}`, async () =>
      (await env.endpoints(name)).find((e) => e.instanceId === second),
    );
    expect((await call(again)).body).toBe(`Hello Phoenix! revision=${name} service=phoenix`);
    await env.undesire(second);
  });
});
