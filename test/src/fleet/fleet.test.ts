/** Fleet state operations against the run's real Redis (one key prefix for this file). */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, test } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import type { FleetChannel } from "../../../src/fleet/fleet.ts";
import type { AgentRecord, DesiredInstance, Endpoint } from "../../../src/fleet/types.ts";
import { watchFleet } from "../../../src/fleet/watch.ts";
import { fleetOn, uniquePrefix } from "../../support/redis.ts";
import { waitFor } from "../../support/wait.ts";

const prefix = uniquePrefix("fleet");
const { fleet, redis: raw, close } = fleetOn(prefix);
afterAll(close);

const uid = () => randomBytes(3).toString("hex");

function record(id: string, extra: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id,
    address: "127.0.0.2",
    runtimes: ["container", "isolate"],
    capacity: { cpuMillis: 2000, memoryBytes: 2 ** 30, maxInstances: 10 },
    labels: { zone: "a" },
    startedAt: new Date().toISOString(),
    heartbeatAt: Date.now(),
    version: "0.1.0",
    ...extra,
  };
}

function endpoint(agentId: string, instanceId: string, port = 20001): Endpoint {
  return {
    instanceId,
    agentId,
    runtime: "container",
    host: "127.0.0.2",
    port,
    protocol: "http1",
    containerConcurrency: 0,
    readyAt: Date.now(),
  };
}

/** Collect the messages of one channel until `stop()`. */
async function listen(channel: FleetChannel) {
  const messages: string[] = [];
  const off = await fleet.subscribe(channel, (m) => messages.push(m));
  return {
    messages,
    /** Whether `m` arrives within 2 s. */
    async waitFor(m: string) {
      return waitFor(`message ${m}`, () => messages.includes(m), 2_000).catch(() => false);
    },
    stop: off,
  };
}

/** Whether the agent's record (PX = its heartbeat TTL) has expired in Redis. */
const recordExpired = (id: string) =>
  waitFor(`record of ${id} expired`, async () => (await raw.exists(fleet.keys.agent(id))) === 0);

describe("membership", () => {
  test("a registered agent is listed live with its record", async () => {
    const id = `a-${uid()}`;
    await fleet.registerAgent(record(id), 5_000);
    const live = await fleet.listLiveAgents();
    const mine = live.find((a) => a.id === id);
    expect(mine?.address).toBe("127.0.0.2");
    expect(mine?.runtimes).toEqual(["container", "isolate"]);
    expect(mine?.labels).toEqual({ zone: "a" });
  });

  test("registering announces the agent id on the agents channel", async () => {
    const id = `a-${uid()}`;
    const sub = await listen("agents");
    await fleet.registerAgent(record(id), 5_000);
    expect(await sub.waitFor(id)).toBe(true);
    await sub.stop();
  });

  test("an agent that stops heartbeating disappears from listLiveAgents within its TTL", async () => {
    const id = `a-${uid()}`;
    await fleet.registerAgent(record(id), 300);
    expect((await fleet.listLiveAgents()).some((a) => a.id === id)).toBe(true);
    const gone = await waitFor(
      `${id} no longer live`,
      async () => !(await fleet.listLiveAgents()).some((a) => a.id === id),
      1_500,
    );
    expect(gone).toBe(true);
    // Pruned from the set, not just filtered out.
    expect(await raw.zscore(fleet.keys.agents, id)).toBeNull();
  });

  test("pruning a dead agent withdraws its endpoints and announces the revision", async () => {
    const id = `a-${uid()}`;
    await fleet.registerAgent(record(id), 200);
    await fleet.publishEndpoint("default", "dead-00001", endpoint(id, `${id}-i1`));
    const sub = await listen("endpoints");
    await recordExpired(id);
    await fleet.listLiveAgents();
    expect(await fleet.readEndpoints("default", "dead-00001")).toEqual([]);
    expect(await sub.waitFor("default/dead-00001")).toBe(true);
    expect(await fleet.agentEndpoints(id)).toEqual([]);
    await sub.stop();
  });

  test("heartbeats keep an agent live past its TTL", async () => {
    const id = `a-${uid()}`;
    const rec = record(id);
    await fleet.registerAgent(rec, 300);
    for (let i = 0; i < 8; i++) {
      // Time passing beyond the TTL is what is under test: 8 x 100 ms > 300 ms.
      await sleep(100);
      const { rejoined } = await fleet.heartbeat({ ...rec, heartbeatAt: Date.now() }, 300);
      expect(rejoined).toBe(false);
    }
    expect((await fleet.listLiveAgents()).some((a) => a.id === id)).toBe(true);
  });

  test("a heartbeat after the record expired reports rejoined", async () => {
    const id = `a-${uid()}`;
    await fleet.registerAgent(record(id), 100);
    await recordExpired(id);
    const { rejoined } = await fleet.heartbeat(record(id), 5_000);
    expect(rejoined).toBe(true);
  });

  test("heartbeats extend the TTL of the agent's instance reports", async () => {
    const id = `a-${uid()}`;
    await fleet.writeInstanceStatus(
      {
        id: `${id}-i1`,
        agentId: id,
        namespace: "default",
        revision: "r-00001",
        runtime: "container",
        phase: "ready",
        restarts: 0,
        since: Date.now(),
      },
      200,
    );
    await fleet.heartbeat(record(id), 10_000);
    expect(await raw.pttl(fleet.keys.instances(id))).toBeGreaterThan(5_000);
  });

  test("deregistering removes the record, the reports and the endpoints", async () => {
    const id = `a-${uid()}`;
    await fleet.registerAgent(record(id), 5_000);
    await fleet.publishEndpoint("default", "dereg-00001", endpoint(id, `${id}-i1`));
    await fleet.writeInstanceStatus(
      {
        id: `${id}-i1`,
        agentId: id,
        namespace: "default",
        revision: "dereg-00001",
        runtime: "container",
        phase: "ready",
        restarts: 0,
        since: Date.now(),
      },
      5_000,
    );
    await fleet.deregisterAgent(id);
    expect(await fleet.getAgent(id)).toBeUndefined();
    expect((await fleet.listLiveAgents()).some((a) => a.id === id)).toBe(false);
    expect(await fleet.readInstanceStatuses(id)).toEqual([]);
    expect(await fleet.readEndpoints("default", "dereg-00001")).toEqual([]);
  });

  test("an invalid record is refused with the field named", async () => {
    const err = await fleet
      .registerAgent(record("bad id with spaces"), 5_000)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).causes[0]?.field).toBe("id");
  });
});

describe("desired instances", () => {
  const desired = (id: string): DesiredInstance => ({
    id,
    namespace: "default",
    revision: "hello-00001",
    runtime: "container",
  });

  test("putDesired stores the instances and publishes the agent id", async () => {
    const agent = `a-${uid()}`;
    const sub = await listen("desired");
    await fleet.putDesired(agent, [desired("i1"), desired("i2")]);
    expect(await sub.waitFor(agent)).toBe(true);
    const read = await fleet.readDesired(agent);
    expect(read.map((d) => d.id).sort()).toEqual(["i1", "i2"]);
    await sub.stop();
  });

  test("removeDesired drops instances and publishes the agent id again", async () => {
    const agent = `a-${uid()}`;
    await fleet.putDesired(agent, [desired("i1"), desired("i2")]);
    const sub = await listen("desired");
    await fleet.removeDesired(agent, ["i1"]);
    expect(await sub.waitFor(agent)).toBe(true);
    expect((await fleet.readDesired(agent)).map((d) => d.id)).toEqual(["i2"]);
    await sub.stop();
  });

  test("replaceDesired makes the set exactly the given instances", async () => {
    const agent = `a-${uid()}`;
    await fleet.putDesired(agent, [desired("i1"), desired("i2")]);
    await fleet.replaceDesired(agent, [desired("i3")]);
    expect((await fleet.readDesired(agent)).map((d) => d.id)).toEqual(["i3"]);
    await fleet.replaceDesired(agent, []);
    expect(await fleet.readDesired(agent)).toEqual([]);
  });

  test("a malformed entry is skipped on read, the others are returned", async () => {
    const agent = `a-${uid()}`;
    await fleet.putDesired(agent, [desired("ok")]);
    await raw.hset(fleet.keys.desired(agent), "broken", "{not json", "wrong", '{"id":"x"}');
    expect((await fleet.readDesired(agent)).map((d) => d.id)).toEqual(["ok"]);
  });

  test("a revision name with ':' is refused (it would break the endpoint key)", async () => {
    const err = await fleet
      .putDesired(`a-${uid()}`, [{ ...desired("i1"), revision: "a:b" }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).causes[0]?.field).toBe("[0].revision");
  });
});

describe("endpoints", () => {
  test("a published endpoint is read back and announced as {ns}/{rev}", async () => {
    const agent = `a-${uid()}`;
    const rev = `ep-${uid()}`;
    const sub = await listen("endpoints");
    const ep = endpoint(agent, `${agent}-i1`);
    await fleet.publishEndpoint("default", rev, ep);
    expect(await sub.waitFor(`default/${rev}`)).toBe(true);
    expect(await fleet.readEndpoints("default", rev)).toEqual([ep]);
    expect((await fleet.readAllEndpoints()).get(`default/${rev}`)).toEqual([ep]);
    expect(await fleet.agentEndpoints(agent)).toEqual([
      { instanceId: `${agent}-i1`, namespace: "default", revision: rev },
    ]);
    await sub.stop();
  });

  test("republishing an unchanged endpoint is silent", async () => {
    const agent = `a-${uid()}`;
    const rev = `ep-${uid()}`;
    const ep = endpoint(agent, `${agent}-i1`);
    await fleet.publishEndpoint("default", rev, ep);
    const sub = await listen("endpoints");
    await fleet.publishEndpoint("default", rev, ep);
    await fleet.publishEndpoint("default", rev, { ...ep, port: 20002 });
    expect(await sub.waitFor(`default/${rev}`)).toBe(true);
    expect(sub.messages.filter((m) => m === `default/${rev}`)).toHaveLength(1);
    await sub.stop();
  });

  test("withdrawing removes the endpoint, its index entry and, when empty, the revision", async () => {
    const agent = `a-${uid()}`;
    const rev = `ep-${uid()}`;
    await fleet.publishEndpoint("default", rev, endpoint(agent, `${agent}-i1`, 20001));
    await fleet.publishEndpoint("default", rev, endpoint(agent, `${agent}-i2`, 20002));
    const sub = await listen("endpoints");
    expect(await fleet.withdrawEndpoint("default", rev, `${agent}-i1`)).toBe(true);
    expect(await sub.waitFor(`default/${rev}`)).toBe(true);
    expect((await fleet.readEndpoints("default", rev)).map((e) => e.instanceId)).toEqual([
      `${agent}-i2`,
    ]);
    expect(await fleet.withdrawEndpoint("default", rev, `${agent}-i2`)).toBe(true);
    expect(await fleet.withdrawEndpoint("default", rev, `${agent}-i2`)).toBe(false);
    expect((await fleet.readAllEndpoints()).has(`default/${rev}`)).toBe(false);
    expect(await raw.sismember(fleet.keys.endpointRevisions, `default/${rev}`)).toBe(0);
    expect(await fleet.agentEndpoints(agent)).toEqual([]);
    await sub.stop();
  });

  test("withdrawAgentEndpoints withdraws that agent's endpoints and no one else's", async () => {
    const a = `a-${uid()}`;
    const b = `b-${uid()}`;
    const rev = `ep-${uid()}`;
    await fleet.publishEndpoint("default", rev, endpoint(a, `${a}-i1`, 20001));
    await fleet.publishEndpoint("other", rev, endpoint(a, `${a}-i2`, 20002));
    await fleet.publishEndpoint("default", rev, endpoint(b, `${b}-i1`, 20003));
    expect(await fleet.withdrawAgentEndpoints(a)).toBe(2);
    expect((await fleet.readEndpoints("default", rev)).map((e) => e.agentId)).toEqual([b]);
    expect(await fleet.readEndpoints("other", rev)).toEqual([]);
  });

  test("readAllEndpoints groups every published endpoint by revision", async () => {
    const agent = `a-${uid()}`;
    const r1 = `all-${uid()}`;
    const r2 = `all-${uid()}`;
    await fleet.publishEndpoint("default", r1, endpoint(agent, `${agent}-i1`, 20001));
    await fleet.publishEndpoint("default", r2, endpoint(agent, `${agent}-i2`, 20002));
    await fleet.publishEndpoint("default", r2, endpoint(agent, `${agent}-i3`, 20003));
    const all = await fleet.readAllEndpoints();
    expect(all.get(`default/${r1}`)?.length).toBe(1);
    expect(all.get(`default/${r2}`)?.length).toBe(2);
  });
});

describe("watchFleet", () => {
  test("resyncs at start, then delivers only the messages its filter accepts", async () => {
    const agent = `a-${uid()}`;
    const seen: string[] = [];
    const resyncs: string[] = [];
    const watch = await watchFleet({
      fleet,
      channel: "desired",
      filter: (m) => m === agent,
      onMessage: (m) => {
        seen.push(m);
      },
      resync: (reason) => {
        resyncs.push(reason);
      },
      intervalMs: 60_000,
    });
    expect(resyncs).toEqual(["start"]);
    await fleet.putDesired(`other-${uid()}`, [
      { id: "x", namespace: "default", revision: "r", runtime: "isolate" },
    ]);
    await fleet.putDesired(agent, [
      { id: "y", namespace: "default", revision: "r", runtime: "isolate" },
    ]);
    await waitFor("the accepted message", () => seen.length > 0, 2_000);
    expect(seen).toEqual([agent]);
    await watch.stop();
  });

  test("resyncs periodically without any message", async () => {
    let resyncs = 0;
    const watch = await watchFleet({
      fleet,
      channel: "endpoints",
      onMessage: () => {},
      resync: () => {
        resyncs++;
      },
      intervalMs: 50,
    });
    expect(await waitFor("three resyncs", () => resyncs >= 3, 2_000)).toBe(true);
    await watch.stop();
  });
});
