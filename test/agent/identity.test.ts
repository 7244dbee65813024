/** Agent identity and the reconcile loop's pure parts. */
import { describe, expect, test } from "vitest";
import { agentId, offeredRuntimes } from "../../agent/identity.ts";
import { planReconcile, type ReconcileReason, SerialRunner } from "../../agent/reconcile.ts";
import { ID_PATTERN } from "../../src/fleet/schemas.ts";
import { waitFor } from "../support/wait.ts";

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
});

describe("SerialRunner", () => {
  test("never runs two passes at once and coalesces triggers that arrive during a pass", async () => {
    let running = 0;
    let maxRunning = 0;
    const passes: ReconcileReason[][] = [];
    // Each pass holds until the test releases it, so the triggers below surely arrive during the first.
    const release = Promise.withResolvers<void>();
    const runner = new SerialRunner(
      async (reasons) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        passes.push(reasons);
        await release.promise;
        running--;
      },
      () => {},
    );
    const first = runner.trigger("start");
    await waitFor("the first pass running", () => passes.length === 1);
    const later = [
      runner.trigger("message"),
      runner.trigger("message"),
      runner.trigger("interval"),
    ];
    release.resolve();
    await Promise.all([first, ...later]);
    expect(maxRunning).toBe(1);
    expect(passes).toEqual([["start"], ["message", "interval"]]);
    await runner.stop();
  });

  test("a pass that throws is reported and does not stop later passes", async () => {
    const errors: unknown[] = [];
    let n = 0;
    const runner = new SerialRunner(
      async () => {
        n++;
        if (n === 1) throw new Error("boom");
      },
      (err) => errors.push(err),
    );
    await runner.trigger("start");
    await runner.trigger("manual");
    expect(n).toBe(2);
    expect(errors).toHaveLength(1);
    await runner.stop();
  });
});
