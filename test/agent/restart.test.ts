/**
 * The agent as a real process (test/agent/agent-process.ts): killed with
 * SIGKILL it leaves its containers running; started again with the same id
 * it adopts them instead of leaking or duplicating them. SIGTERM drains and
 * deregisters.
 */
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { helloImage } from "../support/images.ts";
import { alive } from "./isolate/support.ts";
import {
  type AgentProcess,
  type AgentTestEnv,
  agentTestEnv,
  call,
  helloService,
  spawnAgentProcess,
  waitFor,
} from "./support.ts";

let env: AgentTestEnv;
let image: string;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  env = await agentTestEnv("agr");
  image = await helloImage(env.docker);
});
afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await env?.cleanup();
});

/** Start the agent process (killed at the end if still running). */
async function spawnAgent(): Promise<AgentProcess> {
  const agent = await spawnAgentProcess(env.processOptions);
  children.add(agent.child);
  void agent.exited.then(() => children.delete(agent.child));
  return agent;
}

/** Instances' containers; a paused standby (a stopped instance kept for a resume) is none. */
async function byInstance(): Promise<Map<string, { id: string; state: string }>> {
  const list = (await env.ownerContainers()).filter((c) => c.State !== "paused");
  return new Map(
    list.map((c) => [c.Labels["skiff.instance"] as string, { id: c.Id, state: c.State }]),
  );
}

describe("agent restart", () => {
  test("after SIGKILL, a restarted agent adopts its running containers, stops the ones no longer desired, and republishes the rest", async () => {
    const first = await spawnAgent();
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
    const rev = await env.createService(helloService("adopt", image, { TARGET: "Adopt" }));
    const name = rev.metadata.name;
    const keep = await env.desire(name, "container");
    const drop = await env.desire(name, "container");
    await waitFor("two endpoints", async () => (await env.endpoints(name)).length === 2);
    const before = await byInstance();
    expect(before.size).toBe(2);
    // workerd processes start per namespace with its first worker revision: none here.
    const workerdPids = (
      JSON.parse(
        readFileSync(
          join(tmpdir(), `skiff-agent-${env.agentId}`, "isolate", "workerd.pids"),
          "utf8",
        ),
      ) as { pids: number[] }
    ).pids;
    expect(workerdPids).toEqual([]);

    first.child.kill("SIGKILL");
    await first.exited;
    // The containers outlive the agent.
    const orphaned = await byInstance();
    expect([...orphaned.values()].map((c) => c.state)).toEqual(["running", "running"]);
    await env.undesire(drop);

    const second = await spawnAgent();
    // The first run's workerd (orphaned by SIGKILL) was killed by the second.
    await waitFor("the orphaned workerd to be gone", () => workerdPids.every((pid) => !alive(pid)));
    await waitFor(
      "the undesired container to be stopped",
      async () => (await byInstance()).size === 1,
    );
    const after = await byInstance();
    // The same container, not a new one.
    expect(after.get(keep)?.id).toBe(before.get(keep)?.id);
    expect(after.has(drop)).toBe(false);

    const ep = await waitFor("only the kept endpoint", async () => {
      const eps = await env.endpoints(name);
      return eps.length === 1 && eps[0]?.instanceId === keep ? eps[0] : undefined;
    });
    const res = await call(ep);
    expect(res.body).toContain("Hello Adopt!");
    expect(res.headers.get("k-revision")).toBe(name);
    const report = await waitFor("a ready report for the kept instance", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === keep && r.phase === "ready",
      ),
    );
    expect(report.restarts).toBe(0);
    await waitFor("ready", async () => (await fetch(`${second.url}/readyz`)).status === 200);

    // SIGTERM: graceful stop, then exit 0 with nothing left behind.
    second.child.kill("SIGTERM");
    const [code] = await second.exited;
    expect(code).toBe(0);
    expect(await env.ownerContainers()).toEqual([]);
    expect(await env.endpoints(name)).toEqual([]);
    expect(await env.fleet.getAgent(env.agentId)).toBeUndefined();
  });
});
