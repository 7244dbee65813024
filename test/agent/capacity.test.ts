/**
 * The agent's own bound on instances (`capacity.maxInstances`): placement
 * respects it, but a desired set written past it (a stale view, a tool) is
 * refused per instance with AgentFull, retryable, while the ones within run.
 * Real agent, workerd and Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AgentTestEnv, agentTestEnv, call, waitFor, workerService } from "./support.ts";

let env: AgentTestEnv;

beforeAll(async () => {
  env = await agentTestEnv("full");
  await env.startAgent({ containers: false, capacity: { maxInstances: 1 } });
});
afterAll(async () => {
  await env?.cleanup();
});

describe("maxInstances", () => {
  test("an instance desired past the agent's maximum is reported AgentFull; the one within serves; it starts once room is made", async () => {
    const first = (await env.createService(workerService("within", "Within"))).metadata.name;
    const second = (await env.createService(workerService("beyond", "Beyond"))).metadata.name;
    const firstId = await env.desire(first, "isolate");
    const ep = await waitFor(
      "an endpoint of the first",
      async () => (await env.endpoints(first))[0],
    );
    expect((await call(ep)).status).toBe(200);

    const secondId = await env.desire(second, "isolate");
    const refused = await waitFor("the second reported AgentFull", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (s) => s.id === secondId && s.reason === "AgentFull",
      ),
    );
    expect(refused.phase).toBe("failed");
    expect(refused.message).toContain("maximum of 1 instances");
    expect(await env.endpoints(second)).toEqual([]);
    // The first keeps serving.
    expect((await call(ep)).status).toBe(200);

    // Room made: the refused instance is retried and starts.
    await env.undesire(firstId);
    const started = await waitFor(
      "an endpoint of the second",
      async () => (await env.endpoints(second))[0],
      30_000,
    );
    expect((await call(started)).body).toContain("Hello Beyond!");
  }, 60_000);
});
