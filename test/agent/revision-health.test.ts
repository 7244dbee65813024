/**
 * Revision status reflects the revision's instances as a whole (real Redis):
 * an agent's failure report is not written while another live agent has a
 * ready instance of the revision, and is once none has.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { agentRecord, detectCapacity } from "../../agent/identity.ts";
import { RevisionHealthReporter, readyOnOtherAgents } from "../../agent/revision-health.ts";
import { getCondition } from "../../src/model/index.ts";
import { type AgentTestEnv, agentTestEnv, DOMAIN, helloService } from "./support.ts";

let env: AgentTestEnv;
beforeAll(async () => {
  env = await agentTestEnv("rvh");
});
afterAll(() => env?.cleanup());

const crash = {
  ready: false as const,
  condition: "ContainerHealthy" as const,
  reason: "ExitCode137",
  message: "container was killed (found dead after an agent restart)",
};

describe("RevisionHealthReporter with readyElsewhere", () => {
  test("a failure is not written while another live agent serves the revision; it is once none does", async () => {
    const rev = await env.createService(helloService("rvh", "skiff-test/none:1"));
    const name = rev.metadata.name;
    const other = `test-rvh-other-${randomBytes(3).toString("hex")}`;
    const self = `test-rvh-self-${randomBytes(3).toString("hex")}`;
    await env.fleet.registerAgent(
      agentRecord({
        id: other,
        address: "127.0.0.1",
        runtimes: ["container"],
        capacity: detectCapacity(),
        labels: {},
        startedAt: new Date(),
        draining: false,
      }),
      60_000,
    );
    await env.fleet.publishEndpoint("default", name, {
      instanceId: `${name}-other-1`,
      agentId: other,
      runtime: "container",
      host: "127.0.0.1",
      port: 9,
      protocol: "http1",
      containerConcurrency: 0,
      readyAt: Date.now(),
    });
    const reporter = new RevisionHealthReporter({
      store: env.store,
      domain: DOMAIN,
      scheme: "http",
      holdFailureMs: 0,
      readyElsewhere: readyOnOtherAgents(env.fleet, self),
    });
    const containerHealthy = async () =>
      getCondition((await env.revision(name))?.status.conditions ?? [], "ContainerHealthy");
    try {
      reporter.report("default", name, crash);
      await reporter.idle();
      expect((await containerHealthy())?.status).not.toBe("False");

      // This agent's own endpoint does not count as "elsewhere".
      await env.fleet.withdrawEndpoint("default", name, `${name}-other-1`);
      await env.fleet.publishEndpoint("default", name, {
        instanceId: `${name}-self-1`,
        agentId: self,
        runtime: "container",
        host: "127.0.0.1",
        port: 9,
        protocol: "http1",
        containerConcurrency: 0,
        readyAt: Date.now(),
      });
      reporter.report("default", name, { ...crash, message: `${crash.message} (2)` });
      await reporter.idle();
      const c = await containerHealthy();
      expect(c?.status).toBe("False");
      expect(c?.reason).toBe("ExitCode137");
    } finally {
      reporter.close();
      await env.fleet.deregisterAgent(other).catch(() => {});
    }
  });

  test("another agent's endpoint counts only while that agent's heartbeat record lives", async () => {
    const rev = await env.createService(helloService("rvd", "skiff-test/none:1"));
    const name = rev.metadata.name;
    const gone = `test-rvh-gone-${randomBytes(3).toString("hex")}`;
    // An endpoint left by an agent whose record expired (killed, not yet pruned).
    await env.fleet.publishEndpoint("default", name, {
      instanceId: `${name}-gone-1`,
      agentId: gone,
      runtime: "container",
      host: "127.0.0.1",
      port: 9,
      protocol: "http1",
      containerConcurrency: 0,
      readyAt: Date.now(),
    });
    expect(await readyOnOtherAgents(env.fleet, "self")("default", name)).toBe(0);
  });
});
