/**
 * A worker revision at zero woken on the agent holding its isolate standby,
 * ahead of the scaler (src/fleet/wake.ts): real agent, workerd and Redis; the
 * gateway's real Activator sends the signal; the test plays the scaler
 * (settleWakes, desired sets) or stays away.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Agent } from "../../agent/agent.ts";
import { Activator } from "../../gateway/activation.ts";
import { settleWakes, WAKE_TTL_MS } from "../../src/fleet/wake.ts";
import { silentLogger } from "../../src/logging.ts";
import { metricValue } from "../support/metrics.ts";
import { connect } from "../support/redis.ts";
import { type AgentTestEnv, agentTestEnv, call, waitFor, workerService } from "./support.ts";

let env: AgentTestEnv;
let agent: Agent;
const redis = connect();

beforeAll(async () => {
  env = await agentTestEnv("wake");
  agent = await env.startAgent({ containers: false, address: "127.0.0.2" });
});
afterAll(async () => {
  await env?.cleanup();
  redis.disconnect();
});

/** A served revision scaled to zero: its isolate is this agent's standby. */
async function atZeroWithStandby(service: string): Promise<string> {
  const rev = await env.createService(workerService(service, "Woken"));
  const name = rev.metadata.name;
  const id = await env.desire(name, "isolate");
  const ep = await waitFor(`an endpoint of ${name}`, async () => (await env.endpoints(name))[0]);
  expect((await call(ep)).status).toBe(200);
  await env.undesire(id);
  await waitFor("the standby", async () =>
    (await env.fleet.getAgent(env.agentId))?.standbys?.includes(`default/${name}`),
  );
  expect(await env.endpoints(name)).toEqual([]);
  return name;
}

/** What a gateway does for a request to a revision at zero. */
function activate(revision: string): void {
  new Activator({
    redis,
    prefix: env.prefix,
    gatewayId: "gw-test",
    ttlMs: 10_000,
    logger: silentLogger,
  }).signal("default", revision);
}

const wakes = (outcome: string) =>
  metricValue(agent.registry, "skiff_agent_wakes_total", { outcome });

describe("waking a standby", () => {
  test("an activation signal starts the standby's instance with no desired set, and the claim names it; adopted by a desired set, it stays past the hold", async () => {
    const name = await atZeroWithStandby("adopted");
    activate(name);
    const ep = await waitFor("an endpoint without any desired set", async () =>
      (await env.endpoints(name)).find((e) => e.agentId === env.agentId),
    );
    expect((await call(ep)).body).toContain("Hello Woken!");
    expect(await wakes("started")).toBe(1);
    // Held: a pass with no desired set naming it leaves it running.
    await agent.reconcileNow();
    expect((await env.endpoints(name)).map((e) => e.instanceId)).toEqual([ep.instanceId]);
    // The scaler's side: the claim is the agent's, and the scaler adopts exactly that instance.
    const claims = await settleWakes(redis, env.fleet.keys, [
      { ref: `default/${name}`, namespace: "default", revision: name },
    ]);
    expect(claims.get(`default/${name}`)).toEqual({
      agentId: env.agentId,
      instanceId: ep.instanceId,
    });
    await env.fleet.putDesired(env.agentId, [
      { id: ep.instanceId, namespace: "default", revision: name, runtime: "isolate" },
    ]);
    // Time passing beyond the hold is what is under test: an adopted instance outlives it.
    const hold = Date.now() + WAKE_TTL_MS;
    await waitFor("the hold to end", async () => Date.now() > hold + 500, WAKE_TTL_MS + 5_000);
    await agent.reconcileNow();
    expect((await env.endpoints(name)).map((e) => e.instanceId)).toEqual([ep.instanceId]);
    await env.undesire(ep.instanceId);
  });

  test("a woken instance the scaler does not adopt stops when its hold ends, back to a standby", async () => {
    const name = await atZeroWithStandby("unadopted");
    activate(name);
    await waitFor("an endpoint", async () => (await env.endpoints(name)).length === 1);
    await waitFor(
      "the endpoint withdrawn after the hold",
      async () => (await env.endpoints(name)).length === 0,
      WAKE_TTL_MS + 10_000,
    );
    await waitFor("the standby again", async () =>
      (await env.fleet.getAgent(env.agentId))?.standbys?.includes(`default/${name}`),
    );
  });

  test("once the scaler settled the wake first, the agent starts nothing", async () => {
    const name = await atZeroWithStandby("scaler-first");
    const before = await wakes("claimed-elsewhere");
    await settleWakes(redis, env.fleet.keys, [
      { ref: `default/${name}`, namespace: "default", revision: name },
    ]);
    activate(name);
    await waitFor(
      "the agent to lose the claim",
      async () => (await wakes("claimed-elsewhere")) > before,
    );
    expect(await env.endpoints(name)).toEqual([]);
    expect(agent.instances().filter((i) => i.revision === name)).toEqual([]);
  });
});
