/**
 * planActivation / viewAfter: placing an activated revision from the last
 * pass's view, before the full pass. Pure; views are built in the test.
 */
import { describe, expect, it } from "vitest";
import {
  type LastView,
  planActivation,
  unplacedSignals,
  viewAfter,
} from "../../scaler/controllers/fast-activation.ts";
import type { RevisionScaling } from "../../scaler/controllers/revision-autoscalers.ts";
import type { PlacedInstance, ResourceRequests } from "../../scaler/placement.ts";
import type { AgentRecord } from "../../src/fleet/types.ts";
import { parseScaling } from "../../src/model/scaling.ts";

const MIB = 1024 * 1024;
const small: ResourceRequests = { cpuMillis: 10, memoryBytes: 16 * MIB };

function agent(id: string, runtimes: AgentRecord["runtimes"] = ["isolate"]): AgentRecord {
  return {
    id,
    address: "127.0.0.1",
    runtimes,
    capacity: { cpuMillis: 4_000, memoryBytes: 8_192 * MIB, maxInstances: 100 },
    labels: {},
    startedAt: "2026-01-01T00:00:00Z",
    heartbeatAt: 0,
    version: "test",
  };
}

function inst(id: string, agentId: string, revision: string): PlacedInstance {
  return { id, agentId, revision: `default/${revision}`, requests: small, ready: true, since: 0 };
}

function scaling(annotations: Record<string, string> = {}): RevisionScaling {
  return {
    settings: parseScaling(annotations, { containerConcurrency: 0 }),
    needs: { runtime: "isolate", requests: small },
  } as RevisionScaling;
}

let n = 0;
const newId = (rev: string) => `${rev}-${++n}`;
const NOW = 100_000;

/** What a fast activation would add: the signalled revisions the view lacks, placed on `agents`. */
function plan(
  last: LastView | undefined,
  signalled: string[],
  known = new Map<string, RevisionScaling>(),
  agents: AgentRecord[] = [agent("a"), agent("c", ["container"])],
) {
  const refs = unplacedSignals(last, new Set(signalled), NOW, 4_000);
  if (refs === undefined || !last) return new Map();
  return planActivation({
    agents,
    last,
    refs,
    scaling: (ref) => {
      const s = known.get(ref);
      return s ? { namespace: "default", revision: ref.slice("default/".length), s } : undefined;
    },
    nowMs: NOW,
    newId,
  }).add;
}

describe("planActivation", () => {
  const view: LastView = { placed: [], atMs: NOW - 1_000 };

  it("places one instance of a signalled revision with nothing placed, on an agent offering its runtime", () => {
    const add = plan(view, ["default/x"], new Map([["default/x", scaling()]]));
    expect([...add.keys()]).toEqual(["a"]);
    expect(add.get("a")).toEqual([
      expect.objectContaining({ namespace: "default", revision: "x", runtime: "isolate" }),
    ]);
  });

  it("leaves a revision the last view has instances of to the full pass", () => {
    const placed = { ...view, placed: [inst("x-1", "a", "x")] };
    expect(plan(placed, ["default/x"], new Map([["default/x", scaling()]])).size).toBe(0);
  });

  it("places nothing from a view older than maxAgeMs, or before the first pass", () => {
    const known = new Map([["default/x", scaling()]]);
    expect(plan({ ...view, atMs: NOW - 5_000 }, ["default/x"], known).size).toBe(0);
    expect(plan(undefined, ["default/x"], known).size).toBe(0);
  });

  it("places nothing for a revision no pass has built an autoscaler for", () => {
    expect(plan(view, ["default/new"]).size).toBe(0);
  });

  it("starts max(activation-scale, min-scale) instances, within max-scale", () => {
    const known = new Map([
      [
        "default/x",
        scaling({
          "autoscaling.knative.dev/activation-scale": "3",
          "autoscaling.knative.dev/max-scale": "2",
        }),
      ],
    ]);
    const twoAgents = [agent("a"), agent("b")];
    expect([...plan(view, ["default/x"], known, twoAgents).values()].flat()).toHaveLength(2);
  });
});

describe("planActivation's handled", () => {
  it("is true only when every revision it was given got placed", () => {
    const last: LastView = { placed: [], atMs: NOW };
    const scalingOf = (ref: string) =>
      ref === "default/x" ? { namespace: "default", revision: "x", s: scaling() } : undefined;
    const run = (refs: string[]) =>
      planActivation({ agents: [agent("a")], last, refs, scaling: scalingOf, nowMs: NOW, newId })
        .handled;
    expect(run(["default/x"])).toBe(true);
    // No autoscaler yet for "new": the full pass must place it.
    expect(run(["default/x", "default/new"])).toBe(false);
  });
});

describe("planActivation with a woken standby", () => {
  const last: LastView = { placed: [], atMs: NOW };
  const run = (agents: AgentRecord[], annotations: Record<string, string> = {}) =>
    planActivation({
      agents,
      last,
      refs: ["default/x"],
      scaling: (ref) =>
        ref === "default/x"
          ? { namespace: "default", revision: "x", s: scaling(annotations) }
          : undefined,
      nowMs: NOW,
      newId,
      claims: new Map([["default/x", { agentId: "b", instanceId: "x-woken" }]]),
    });

  it("adopts the instance the claiming agent started instead of placing a new one", () => {
    const { add, handled } = run([agent("a"), agent("b")]);
    expect(handled).toBe(true);
    expect([...add.entries()]).toEqual([
      ["b", [{ id: "x-woken", namespace: "default", revision: "x", runtime: "isolate" }]],
    ]);
  });

  it("places the rest of max(activation-scale, min-scale) beside the adopted one", () => {
    const { add } = run([agent("a"), agent("b")], { "autoscaling.knative.dev/min-scale": "2" });
    const ids = [...add.values()].flat().map((d) => d.id);
    expect(ids).toHaveLength(2);
    expect(ids).toContain("x-woken");
  });

  it("passes over a claim of a draining or unknown agent: placement decides as without it", () => {
    for (const agents of [[agent("a"), { ...agent("b"), draining: true }], [agent("a")]]) {
      const { add, handled } = run(agents);
      expect(handled).toBe(true);
      const placed = [...add.values()].flat();
      expect(placed).toHaveLength(1);
      expect(placed[0]?.id).not.toBe("x-woken");
    }
  });
});

describe("viewAfter", () => {
  it("drops the plan's removals and adds its additions, with their requests", () => {
    const after = viewAfter(
      [inst("x-1", "a", "x"), inst("y-1", "a", "y")],
      {
        add: new Map([
          ["a", [{ id: "z-1", namespace: "default", revision: "z", runtime: "isolate" }]],
        ]),
        remove: new Map([["a", ["y-1"]]]),
      },
      (ref) => (ref === "default/z" ? small : undefined),
      NOW,
    );
    expect(after.placed.map((i) => i.id)).toEqual(["x-1", "z-1"]);
    expect(after.placed[1]).toMatchObject({ agentId: "a", revision: "default/z", ready: false });
    expect(after.atMs).toBe(NOW);
  });
});
