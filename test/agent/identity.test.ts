/** Agent identity and the reconcile loop's pure parts. */
import { describe, expect, test } from "vitest";
import { agentId, offeredRuntimes } from "../../agent/identity.ts";
import { planReconcile } from "../../agent/reconcile.ts";
import { ID_PATTERN } from "../../src/fleet/schemas.ts";

describe("agentId", () => {
  test("a given id is used as is", () => {
    expect(agentId({ id: "node-7", address: "127.0.0.2" })).toBe("node-7");
  });

  test("a derived id is stable for the same host and address, and differs by address", () => {
    const a = agentId({ hostname: "Worker_01.example", address: "127.0.0.2" });
    expect(agentId({ hostname: "Worker_01.example", address: "127.0.0.2" })).toBe(a);
    expect(agentId({ hostname: "Worker_01.example", address: "127.0.0.3" })).not.toBe(a);
    expect(a).toMatch(/^worker_01\.example-[0-9a-f]{8}$/);
    expect(a).toMatch(ID_PATTERN);
  });

  test("two installs (clusters) on one host and address never share a derived id", () => {
    const base = { hostname: "box", address: "127.0.0.1" };
    const a = agentId({ ...base, clusterId: "0123456789ab" });
    const b = agentId({ ...base, clusterId: "ba9876543210" });
    expect(a).not.toBe(b);
    expect(agentId({ ...base, clusterId: "0123456789ab" })).toBe(a);
    expect(a).toMatch(ID_PATTERN);
  });

  test("containers are offered only when Docker answered; isolates always", () => {
    expect(offeredRuntimes(true)).toEqual(["container", "isolate"]);
    expect(offeredRuntimes(false)).toEqual(["isolate"]);
  });
});

describe("planReconcile", () => {
  const d = (id: string) => ({
    id,
    namespace: "default",
    revision: "r",
    runtime: "isolate" as const,
  });

  test("starts what is desired and missing, stops what runs and is not desired", () => {
    const plan = planReconcile(
      [d("a"), d("b")],
      [
        { id: "b", stopping: false },
        { id: "c", stopping: false },
      ],
    );
    expect(plan.start.map((x) => x.id)).toEqual(["a"]);
    expect(plan.stop).toEqual(["c"]);
  });

  test("an instance already stopping is neither stopped again nor started while it stops", () => {
    const plan = planReconcile(
      [d("a")],
      [
        { id: "a", stopping: true },
        { id: "b", stopping: true },
      ],
    );
    expect(plan).toEqual({ start: [], stop: [], waiting: ["a"] });
  });

  test("a woken instance within its hold is not stopped for being undesired; past it, it is", () => {
    const held = planReconcile([], [{ id: "w", stopping: false, held: true }]);
    expect(held.stop).toEqual([]);
    expect(planReconcile([], [{ id: "w", stopping: false, held: false }]).stop).toEqual(["w"]);
  });
});
