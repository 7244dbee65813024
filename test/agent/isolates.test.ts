/**
 * The agent's isolate instances against real workerd and real Redis: worker
 * revisions created through apply (so the compiled bundle is stored), desired
 * instances written by the test (playing the scaler).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Agent } from "../../agent/agent.ts";
import { metricValue } from "../support/metrics.ts";
import {
  type AgentTestEnv,
  agentTestEnv,
  call,
  condition,
  waitFor,
  workerService,
} from "./support.ts";

let env: AgentTestEnv;
let agent: Agent;

beforeAll(async () => {
  env = await agentTestEnv("agi");
  // No Docker needed for isolates; the pool watchdog at its default (150 ms stall).
  agent = await env.startAgent({
    containers: false,
    address: "127.0.0.2",
    // Short enough for the standby test to see one expire.
    isolateStandby: { retentionMs: 2_000 },
  });
});
afterAll(() => env?.cleanup());

async function oneEndpoint(revision: string, after = 0) {
  return waitFor(`an endpoint of ${revision}`, async () => {
    const eps = await env.endpoints(revision);
    return eps.length === 1 && (eps[0]?.readyAt ?? 0) > after ? eps[0] : undefined;
  });
}

describe("isolate instances", () => {
  test("an agent without Docker offers only isolates", async () => {
    expect(agent.runtimes).toEqual(["isolate"]);
    const record = await env.fleet.getAgent(env.agentId);
    expect(record?.runtimes).toEqual(["isolate"]);
    expect(record?.address).toBe("127.0.0.2");
  });

  test("a desired isolate is published with the pool's loopback address and revision header, and answers with its env", async () => {
    const rev = await env.createService(workerService("hello", "Isolates"));
    const name = rev.metadata.name;
    const id = await env.desire(name, "isolate");
    const ep = await oneEndpoint(name);
    expect(ep.instanceId).toBe(id);
    expect(ep.runtime).toBe("isolate");
    expect(ep.host).toBe("127.0.0.2");
    expect(ep.header).toEqual({ name: "x-skiff-revision", value: `default/${name}` });
    const res = await call(ep);
    expect(res.status).toBe(200);
    expect(res.body).toBe(`Hello Isolates! revision=${name} service=hello`);
    await waitFor(
      "the revision to be Ready",
      async () => condition(await env.revision(name), "Ready")?.status === "True",
    );
    const config = await waitFor(
      "the configuration's latest ready revision",
      async () =>
        (await env.store.get("configurations", "default", "hello"))?.status.latestReadyRevisionName,
    );
    expect(config).toBe(name);
  });

  test("an isolate no longer desired is withdrawn and its revision stops answering", async () => {
    const rev = await env.createService(workerService("gone", "Gone"));
    const name = rev.metadata.name;
    const id = await env.desire(name, "isolate");
    const ep = await oneEndpoint(name);
    expect((await call(ep)).status).toBe(200);
    await env.undesire(id);
    await waitFor(
      "the endpoint to be withdrawn",
      async () => (await env.endpoints(name)).length === 0,
    );
    await waitFor("the revision to be unregistered", async () => (await call(ep)).status === 404);
    await waitFor("the report to go", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).every((r) => r.id !== id),
    );
  });

  test("scale to zero keeps the worker as a standby (listed on the agent record, answering nothing); the next instance starts from it; it is dropped after its retention", async () => {
    const rev = await env.createService(workerService("standby", "Standby"));
    const name = rev.metadata.name;
    const first = await env.desire(name, "isolate");
    const ep = await oneEndpoint(name);
    expect((await call(ep)).status).toBe(200);
    await env.undesire(first);
    await waitFor(
      "the endpoint to be withdrawn",
      async () => (await env.endpoints(name)).length === 0,
    );
    // Parked: a request that still reaches its process is refused like an unknown revision.
    await waitFor("the revision to stop answering", async () => (await call(ep)).status === 404);
    await waitFor("the agent record to list the standby", async () =>
      (await env.fleet.getAgent(env.agentId))?.standbys?.includes(`default/${name}`),
    );
    expect(await metricValue(agent.registry, "skiff_agent_isolate_standbys")).toBeGreaterThan(0);
    const resumes = () => metricValue(agent.registry, "skiff_agent_isolate_resumes_total");
    const before = await resumes();

    const second = await env.desire(name, "isolate");
    const again = await oneEndpoint(name, ep.readyAt);
    expect(again.instanceId).toBe(second);
    expect((await call(again)).body).toBe(`Hello Standby! revision=${name} service=standby`);
    expect(await resumes()).toBe(before + 1);

    // The record stops listing the standby while the second instance runs (read
    // before that, it could still show the first one and end the waits below early).
    await waitFor("the record without the standby", async () => {
      const record = await env.fleet.getAgent(env.agentId);
      return record !== undefined && !record.standbys?.includes(`default/${name}`);
    });
    await env.undesire(second);
    await waitFor("the standby again", async () =>
      (await env.fleet.getAgent(env.agentId))?.standbys?.includes(`default/${name}`),
    );
    // After the retention (2 s here) it is unregistered: gone from the record, and a later
    // instance is a fresh start, not a resume.
    // (A record missing for a moment, a heartbeat late on a loaded machine, says nothing.)
    await waitFor("the standby to expire", async () => {
      const record = await env.fleet.getAgent(env.agentId);
      return record !== undefined && !record.standbys?.includes(`default/${name}`);
    });
    const resumed = await resumes();
    const third = await env.desire(name, "isolate");
    expect((await call(await oneEndpoint(name, again.readyAt))).status).toBe(200);
    expect(await resumes()).toBe(resumed);
    await env.undesire(third);
  });

  test("two instances of one revision share the registration; stopping one keeps the other serving", async () => {
    const rev = await env.createService(workerService("pair", "Pair"));
    const name = rev.metadata.name;
    const a = await env.desire(name, "isolate");
    const b = await env.desire(name, "isolate");
    await waitFor("both endpoints", async () => (await env.endpoints(name)).length === 2);
    await env.undesire(a);
    await waitFor("one endpoint left", async () => {
      const eps = await env.endpoints(name);
      return eps.length === 1 && eps[0]?.instanceId === b;
    });
    const [ep] = await env.endpoints(name);
    expect((await call(ep!)).body).toBe(`Hello Pair! revision=${name} service=pair`);
    await env.undesire(b);
  });

  test("a stalled worker: the endpoint is withdrawn, the reason lands on the revision, and the endpoint is back once workerd is", async () => {
    const rev = await env.createService(workerService("spin", "Spin"));
    const name = rev.metadata.name;
    await env.desire(name, "isolate");
    const first = await oneEndpoint(name);
    expect((await call(first)).status).toBe(200);
    const announced: string[] = [];
    const off = await env.fleet.subscribe("endpoints", (m) => announced.push(m));

    await call(first, "/?spin").catch(() => undefined);

    const healthy = await waitFor("ContainerHealthy to be False", async () => {
      const c = condition(await env.revision(name), "ContainerHealthy");
      return c?.status === "False" ? c : undefined;
    });
    expect(healthy.reason).toBe("WorkerStalled");
    expect(healthy.message).toMatch(/exceeded CPU/);
    expect(healthy.message).toContain(`default/${name}`);
    // The revision had served: Ready stays True while the failure is shown.
    expect(condition(await env.revision(name), "Ready")?.status).toBe("True");

    const again = await oneEndpoint(name, first.readyAt);
    // Withdrawn, then republished: two announcements at least (the second may
    // still be on its way when the endpoint can be read).
    await expect
      .poll(() => announced.filter((m) => m === `default/${name}`).length)
      .toBeGreaterThanOrEqual(2);
    await off();
    expect((await call(again)).body).toBe(`Hello Spin! revision=${name} service=spin`);
  });

  test("a worker that stalls again in its own process is refused: WorkerStalled on the revision and its instance, its endpoint withdrawn", async () => {
    const rev = await env.createService(workerService("respin", "Respin"));
    const name = rev.metadata.name;
    const id = await env.desire(name, "isolate");
    const first = await oneEndpoint(name);
    await call(first, "/?spin").catch(() => undefined);
    // Moved to a process of its own: published again on another port.
    const own = await waitFor("the endpoint in its own process", async () => {
      const eps = await env.endpoints(name);
      return eps.length === 1 && eps[0]!.port !== first.port ? eps[0] : undefined;
    });
    await call(own, "/?spin").catch(() => undefined);
    const report = await waitFor("the refused instance report", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === id && r.reason === "WorkerStalled" && /refused/.test(r.message ?? ""),
      ),
    );
    expect(report.phase).toBe("backoff");
    const healthy = await waitFor("the refusal on the revision", async () => {
      const c = condition(await env.revision(name), "ContainerHealthy");
      return c?.status === "False" && /refused for 30 s/.test(c.message ?? "") ? c : undefined;
    });
    expect(healthy.reason).toBe("WorkerStalled");
    expect(healthy.message).toMatch(/stalled 2 times/);
    expect(await env.endpoints(name)).toEqual([]);
    // Sent anyway (straight to the workerd socket): a 503 that says why.
    const refused = await call(own);
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(
      /is refused for \d+ s: its worker stalled its workerd process 2 times/,
    );
    await env.undesire(id);
  });

  test("a worker that throws at module top level fails its instance with the message and position, and is never published", async () => {
    const body = workerService("toplevel", "Top") as ReturnType<typeof workerService>;
    body.spec.template.spec.worker.source = [
      "const settings: { port: number } | null = null;",
      "const port = settings!.port;",
      "export default { fetch(): Response { return new Response(String(port)); } };",
    ].join("\n");
    const rev = await env.createService(body);
    const name = rev.metadata.name;
    await env.desire(name, "isolate");
    const healthy = await waitFor("ContainerHealthy to be False", async () => {
      const c = condition(await env.revision(name), "ContainerHealthy");
      return c?.status === "False" ? c : undefined;
    });
    expect(healthy.reason).toBe("WorkerModuleError");
    expect(healthy.message).toMatch(
      /module failed to load: Uncaught TypeError: Cannot read properties of null/,
    );
    expect(healthy.message).toMatch(/\(at worker\.js:\d+:\d+ of the compiled bundle\)/);
    expect(condition(await env.revision(name), "Ready")?.status).not.toBe("True");
    const report = await waitFor("the failed instance report", async () => {
      const all = await env.fleet.readInstanceStatuses(env.agentId);
      return all.find((i) => i.revision === name && i.phase === "failed");
    });
    expect(report.reason).toBe("WorkerModuleError");
    expect(await env.endpoints(name)).toEqual([]);
  });

  test("an endpoint lost from Redis is republished by the periodic resync", async () => {
    const rev = await env.createService(workerService("lost", "Lost"));
    const name = rev.metadata.name;
    const id = await env.desire(name, "isolate");
    await oneEndpoint(name);
    await env.fleet.withdrawEndpoint("default", name, id);
    expect(await env.endpoints(name)).toEqual([]);
    const back = await oneEndpoint(name);
    expect(back.instanceId).toBe(id);
  });

  test("an agent pruned while alive (taken for dead) rejoins at its next heartbeat and republishes", async () => {
    const rev = await env.createService(workerService("pruned", "Pruned"));
    const name = rev.metadata.name;
    await env.desire(name, "isolate");
    await oneEndpoint(name);
    // What listLiveAgents does to an agent whose record expired. The 200 ms
    // heartbeat may rewrite the record between the delete and the prune (and
    // republish right after it), so the prune is repeated until its own answer
    // shows it took the agent: its endpoints were withdrawn in that script.
    await waitFor("the prune to take the agent", async () => {
      await env.fleet.redis.del(env.fleet.keys.agent(env.agentId));
      const live = await env.fleet.listLiveAgents();
      return !live.some((a) => a.id === env.agentId);
    });
    await waitFor(
      "the agent to rejoin",
      async () => (await env.fleet.getAgent(env.agentId)) !== undefined,
    );
    await oneEndpoint(name);
  });
});
