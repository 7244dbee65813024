import { describe, expect, it } from "vitest";
import {
  chooseVictims,
  defaultPlacementOptions,
  type PlacedInstance,
  place,
  placementOptionsSchema,
  revisionNeeds,
} from "../../scaler/placement.ts";
import { ValidationError } from "../../src/errors.ts";
import type { AgentRecord, RuntimeKind } from "../../src/fleet/types.ts";

const MIB = 1024 * 1024;

function agent(id: string, over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id,
    address: "127.0.0.1",
    runtimes: ["container", "isolate"],
    capacity: { cpuMillis: 4000, memoryBytes: 4096 * MIB, maxInstances: 100 },
    labels: {},
    startedAt: "2026-01-01T00:00:00Z",
    heartbeatAt: 0,
    version: "test",
    ...over,
  };
}

const small = { cpuMillis: 100, memoryBytes: 128 * MIB };
const rev = (
  key = "default/hello-00001",
  runtime: RuntimeKind = "container",
  requests = small,
) => ({
  key,
  runtime,
  requests,
});

let seq = 0;
function inst(
  agentId: string,
  revision: string,
  over: Partial<PlacedInstance> = {},
): PlacedInstance {
  seq++;
  return { id: `i${String(seq).padStart(3, "0")}`, agentId, revision, requests: small, ...over };
}

const counts = (ids: string[]) =>
  Object.fromEntries(
    [...new Set(ids)].sort().map((id) => [id, ids.filter((x) => x === id).length]),
  );

describe("place", () => {
  it("spreads a revision's instances across hosts", () => {
    const p = place({
      agents: [agent("a"), agent("b"), agent("c")],
      current: [],
      revision: rev(),
      count: 6,
    });
    expect(counts(p.agentIds)).toEqual({ a: 2, b: 2, c: 2 });
    expect(p.unplaced).toBe(0);
  });

  it("puts new instances on the hosts with the fewest of this revision first", () => {
    const current = [inst("a", "default/hello-00001"), inst("a", "default/hello-00001")];
    const p = place({ agents: [agent("a"), agent("b")], current, revision: rev(), count: 2 });
    expect(p.agentIds).toEqual(["b", "b"]);
  });

  it("breaks a tie in spread by load: the least loaded host first", () => {
    const busy = [inst("a", "default/other", { requests: { cpuMillis: 3000, memoryBytes: MIB } })];
    const p = place({ agents: [agent("a"), agent("b")], current: busy, revision: rev(), count: 1 });
    expect(p.agentIds).toEqual(["b"]);
  });

  it("prefers an agent holding a paused standby of the revision, even a busier one, once per standby", () => {
    const busy = [inst("b", "default/other", { requests: { cpuMillis: 3000, memoryBytes: MIB } })];
    const agents = [
      agent("a", { standbys: ["other-ns/hello-00001"] }),
      agent("b", { standbys: ["default/hello-00001"] }),
    ];
    const one = place({ agents, current: busy, revision: rev(), count: 1 });
    expect(one.agentIds).toEqual(["b"]);
    // The second instance spreads as usual: one standby serves one start.
    const two = place({ agents, current: busy, revision: rev(), count: 2 });
    expect(two.agentIds).toEqual(["b", "a"]);
    // A standby of the same revision name in another namespace attracts nothing.
    const other = place({ agents, current: busy, revision: rev("third/hello-00001"), count: 1 });
    expect(other.agentIds).toEqual(["a"]);
  });

  it("prefers, among equally spread hosts, one reporting ready network sandboxes for a container start, once per sandbox", () => {
    const busy = [inst("b", "default/other", { requests: { cpuMillis: 3000, memoryBytes: MIB } })];
    const agents = [agent("a"), agent("b", { sandboxes: 1 })];
    expect(place({ agents, current: busy, revision: rev(), count: 1 }).agentIds).toEqual(["b"]);
    // Spread still comes first; its one sandbox used, b is the busier host again.
    expect(place({ agents, current: busy, revision: rev(), count: 3 }).agentIds).toEqual([
      "b",
      "a",
      "a",
    ]);
    // A worker revision has no use for them: the least loaded host.
    const worker = rev("default/hello-00001", "isolate");
    expect(place({ agents, current: busy, revision: worker, count: 1 }).agentIds).toEqual(["a"]);
  });

  it("is deterministic: equal hosts are taken in id order, whatever the input order", () => {
    const agents = [agent("c"), agent("a"), agent("b")];
    const p1 = place({ agents, current: [], revision: rev(), count: 4 });
    const p2 = place({ agents: [...agents].reverse(), current: [], revision: rev(), count: 4 });
    expect(p1.agentIds).toEqual(["a", "b", "c", "a"]);
    expect(p2.agentIds).toEqual(p1.agentIds);
  });

  it("only uses agents that offer the revision's runtime", () => {
    const agents = [
      agent("docker", { runtimes: ["container"] }),
      agent("v8", { runtimes: ["isolate"] }),
    ];
    const p = place({ agents, current: [], revision: rev("default/w-00001", "isolate"), count: 3 });
    expect(p.agentIds).toEqual(["v8", "v8", "v8"]);
  });

  it("reports RuntimeUnavailable when no live agent offers the runtime", () => {
    const p = place({
      agents: [agent("v8", { runtimes: ["isolate"] })],
      current: [],
      revision: rev(),
      count: 2,
    });
    expect(p).toMatchObject({
      agentIds: [],
      unplaced: 2,
      problem: { reason: "RuntimeUnavailable" },
    });
    expect(p.problem!.message).toContain("container");
  });

  it("skips draining agents", () => {
    const p = place({
      agents: [agent("a", { draining: true }), agent("b")],
      current: [],
      revision: rev(),
      count: 2,
    });
    expect(p.agentIds).toEqual(["b", "b"]);
  });

  it("reports NoAgents when every agent is draining", () => {
    const p = place({
      agents: [agent("a", { draining: true })],
      current: [],
      revision: rev(),
      count: 1,
    });
    expect(p.problem).toMatchObject({
      reason: "NoAgents",
      message: "every live agent is draining",
    });
  });

  it("places fewer when CPU runs out, and says which host lacks what", () => {
    const agents = [
      agent("a", { capacity: { cpuMillis: 250, memoryBytes: 4096 * MIB, maxInstances: 100 } }),
    ];
    const p = place({ agents, current: [], revision: rev(), count: 5 });
    expect(p.agentIds).toEqual(["a", "a"]);
    expect(p.unplaced).toBe(3);
    expect(p.problem!.reason).toBe("InsufficientCapacity");
    expect(p.problem!.message).toContain("a: cpu 200m of 250m requested, needs 100m more");
  });

  it("places fewer when memory runs out", () => {
    const agents = [
      agent("a", { capacity: { cpuMillis: 4000, memoryBytes: 300 * MIB, maxInstances: 100 } }),
    ];
    const p = place({ agents, current: [], revision: rev(), count: 3 });
    expect(p.agentIds).toHaveLength(2);
    expect(p.problem!.message).toContain("memory");
  });

  it("respects maxInstances, counting instances of other revisions", () => {
    const agents = [
      agent("a", { capacity: { cpuMillis: 4000, memoryBytes: 4096 * MIB, maxInstances: 3 } }),
    ];
    const current = [inst("a", "default/other"), inst("a", "default/other")];
    const p = place({ agents, current, revision: rev(), count: 2 });
    expect(p.agentIds).toEqual(["a"]);
    expect(p.problem!.message).toContain("3/3 instances");
  });

  it("re-placing after an agent died is placing the missing count on the others", () => {
    const key = "default/hello-00001";
    const current = [inst("a", key), inst("b", key), inst("dead", key)];
    const p = place({
      agents: [agent("a"), agent("b"), agent("c")],
      current,
      revision: rev(key),
      count: 1,
    });
    expect(p.agentIds).toEqual(["c"]);
  });

  it("places nothing for a count of zero", () => {
    expect(place({ agents: [agent("a")], current: [], revision: rev(), count: 0 })).toEqual({
      agentIds: [],
      unplaced: 0,
    });
  });
});

describe("chooseVictims", () => {
  const key = "default/hello-00001";

  it("removes from the host with the most instances of the revision first, keeping the spread", () => {
    const current = [inst("a", key), inst("a", key), inst("a", key), inst("b", key)];
    const victims = chooseVictims({
      agents: [agent("a"), agent("b")],
      current,
      revision: key,
      count: 2,
    });
    const left = current.filter((i) => !victims.includes(i.id)).map((i) => i.agentId);
    expect(counts(left)).toEqual({ a: 1, b: 1 });
  });

  it("prefers instances that are not ready yet", () => {
    const ready = inst("a", key, { ready: true });
    const starting = inst("b", key, { ready: false });
    const current = [ready, inst("a", key, { ready: true }), starting];
    expect(
      chooseVictims({ agents: [agent("a"), agent("b")], current, revision: key, count: 1 }),
    ).toEqual([starting.id]);
  });

  it("prefers instances on agents that are gone or draining", () => {
    const onDraining = inst("d", key, { ready: true });
    const current = [inst("a", key, { ready: false }), onDraining];
    const victims = chooseVictims({
      agents: [agent("a"), agent("d", { draining: true })],
      current,
      revision: key,
      count: 1,
    });
    expect(victims).toEqual([onDraining.id]);
  });

  it("between equal hosts, trims the more loaded one, then the newest instance", () => {
    const a1 = inst("a", key, { ready: true, since: 1 });
    const b1 = inst("b", key, { ready: true, since: 1 });
    const b2 = inst("b", key, { ready: true, since: 5 });
    const a2 = inst("a", key, { ready: true, since: 9 });
    const other = inst("b", "default/other", { requests: { cpuMillis: 2000, memoryBytes: MIB } });
    const victims = chooseVictims({
      agents: [agent("a"), agent("b")],
      current: [a1, b1, b2, a2, other],
      revision: key,
      count: 1,
    });
    expect(victims).toEqual([b2.id]);
  });

  it("only picks instances of the given revision and never more than exist", () => {
    const current = [inst("a", key), inst("a", "default/other")];
    const victims = chooseVictims({ agents: [agent("a")], current, revision: key, count: 5 });
    expect(victims).toEqual([current[0]!.id]);
  });
});

describe("revisionNeeds", () => {
  it("takes a container's requests, else its limits, else the defaults", () => {
    expect(
      revisionNeeds({
        containers: [{ image: "x", resources: { requests: { cpu: "250m", memory: "64Mi" } } }],
      }),
    ).toEqual({ runtime: "container", requests: { cpuMillis: 250, memoryBytes: 64 * MIB } });
    expect(
      revisionNeeds({
        containers: [{ image: "x", resources: { limits: { cpu: "1", memory: "1Gi" } } }],
      }),
    ).toEqual({ runtime: "container", requests: { cpuMillis: 1000, memoryBytes: 1024 * MIB } });
    expect(revisionNeeds({ containers: [{ image: "x" }] })).toEqual({
      runtime: "container",
      requests: defaultPlacementOptions.container,
    });
  });

  it("gives a worker the isolate runtime and small defaults", () => {
    expect(revisionNeeds({ worker: { source: "export default {}" } })).toEqual({
      runtime: "isolate",
      requests: { cpuMillis: 10, memoryBytes: 16 * MIB },
    });
    expect(
      revisionNeeds({ worker: { source: "", resources: { limits: { memory: "32Mi" } } } }).requests,
    ).toEqual({ cpuMillis: 10, memoryBytes: 32 * MIB });
  });

  it("takes its defaults from a validated options object", () => {
    const opts = placementOptionsSchema.parse({ container: { cpuMillis: 500 } });
    expect(revisionNeeds({ containers: [{ image: "x" }] }, opts).requests).toEqual({
      cpuMillis: 500,
      memoryBytes: 128 * MIB,
    });
    expect(() => placementOptionsSchema.parse({ isolate: { memoryBytes: -1 } })).toThrow();
  });

  it("reports a bad quantity against its field", () => {
    try {
      revisionNeeds({ containers: [{ image: "x", resources: { requests: { cpu: "lots" } } }] });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).causes[0]!.field).toBe(
        "spec.containers[0].resources.requests.cpu",
      );
    }
  });
});
