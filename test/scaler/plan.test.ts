/**
 * planScale: from desired counts and what is placed to per-agent desired-set
 * changes. Pure; agents and instances are built in the test.
 */
import { describe, expect, it } from "vitest";
import type { PlacedInstance, ResourceRequests } from "../../scaler/placement.ts";
import { planScale, type RevisionWant } from "../../scaler/plan.ts";
import type { AgentRecord } from "../../src/fleet/types.ts";

const MIB = 1024 * 1024;
const small: ResourceRequests = { cpuMillis: 10, memoryBytes: 16 * MIB };

function agent(id: string, over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id,
    address: "127.0.0.1",
    runtimes: ["isolate", "container"],
    capacity: { cpuMillis: 4_000, memoryBytes: 8_192 * MIB, maxInstances: 100 },
    labels: {},
    startedAt: "2026-01-01T00:00:00Z",
    heartbeatAt: 0,
    version: "test",
    ...over,
  };
}

function want(revision: string, desired: number): RevisionWant {
  return { namespace: "default", revision, desired, runtime: "isolate", requests: small };
}

function inst(id: string, agentId: string, revision: string, ready = true): PlacedInstance {
  return { id, agentId, revision: `default/${revision}`, requests: small, ready, since: 0 };
}

let n = 0;
const newId = (rev: string) => `${rev}-${++n}`;

describe("planScale", () => {
  it("adds the missing instances, spread over the agents, with fresh ids", () => {
    const plan = planScale({
      agents: [agent("a"), agent("b")],
      placed: [inst("x1", "a", "x")],
      wants: new Map([["default/x", want("x", 3)]]),
      newId,
      nowMs: 0,
    });
    expect(plan.add.get("b")?.length).toBe(1);
    expect(plan.add.get("a")?.length ?? 0).toBe(1);
    const added = [...plan.add.values()].flat();
    expect(new Set(added.map((d) => d.id)).size).toBe(2);
    expect(added[0]).toMatchObject({ namespace: "default", revision: "x", runtime: "isolate" });
    expect(plan.remove.size).toBe(0);
    expect(plan.scale.get("default/x")).toBe(3);
  });

  it("does not count instances on a draining agent and replaces them elsewhere", () => {
    const plan = planScale({
      agents: [agent("a", { draining: true }), agent("b")],
      placed: [inst("x1", "a", "x")],
      wants: new Map([["default/x", want("x", 1)]]),
      newId,
      nowMs: 0,
    });
    expect([...plan.add.keys()]).toEqual(["b"]);
    expect(plan.remove.size).toBe(0);
  });

  it("scales down by removing instances that are not ready first, keeping the spread", () => {
    const plan = planScale({
      agents: [agent("a"), agent("b")],
      placed: [
        inst("x1", "a", "x"),
        inst("x2", "a", "x"),
        inst("x3", "b", "x", false),
        inst("x4", "b", "x"),
      ],
      wants: new Map([["default/x", want("x", 2)]]),
      newId,
      nowMs: 0,
    });
    const removed = [...plan.remove.entries()].flatMap(([a, ids]) => ids.map((id) => `${a}:${id}`));
    expect(removed).toHaveLength(2);
    expect(removed).toContain("b:x3");
    expect(removed.filter((r) => r.startsWith("a:"))).toHaveLength(1);
    expect(plan.scale.get("default/x")).toBe(2);
  });

  it("removes every instance of a deleted revision and leaves unlisted revisions alone", () => {
    const plan = planScale({
      agents: [agent("a")],
      placed: [inst("gone1", "a", "gone"), inst("keep1", "a", "keep")],
      wants: new Map(),
      remove: new Set(["default/gone"]),
      newId,
      nowMs: 0,
    });
    expect(plan.remove.get("a")).toEqual(["gone1"]);
    expect(plan.add.size).toBe(0);
  });

  it("room taken by one revision is not offered to the next, and the shortfall is reported", () => {
    const plan = planScale({
      agents: [
        agent("a", { capacity: { cpuMillis: 4_000, memoryBytes: 8_192 * MIB, maxInstances: 2 } }),
      ],
      placed: [],
      wants: new Map([
        ["default/a", want("a", 2)],
        ["default/b", want("b", 1)],
      ]),
      newId,
      nowMs: 0,
    });
    expect(plan.add.get("a")?.map((d) => d.revision)).toEqual(["a", "a"]);
    expect(plan.problems.get("default/b")).toMatchObject({
      reason: "InsufficientCapacity",
      unplaced: 1,
    });
    expect(plan.problems.get("default/b")?.message).toMatch(/2\/2 instances/);
    expect(plan.scale.get("default/b")).toBe(0);
  });

  it("moves instances off an agent that no longer offers their runtime", () => {
    const plan = planScale({
      agents: [agent("a", { runtimes: ["isolate"] }), agent("b")],
      placed: [{ ...inst("x1", "a", "x"), requests: small }],
      wants: new Map([["default/x", { ...want("x", 1), runtime: "container" }]]),
      newId,
      nowMs: 0,
    });
    expect(plan.remove.get("a")).toEqual(["x1"]);
    expect(plan.add.get("b")?.map((d) => d.runtime)).toEqual(["container"]);
  });

  it("reports NoAgents when no agent is alive", () => {
    const plan = planScale({
      agents: [],
      placed: [],
      wants: new Map([["default/x", want("x", 1)]]),
      newId,
      nowMs: 0,
    });
    expect(plan.problems.get("default/x")?.reason).toBe("NoAgents");
  });
});
