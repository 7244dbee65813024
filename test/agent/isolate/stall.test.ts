import { once } from "node:events";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { type IsolateEvent, type SpawnEvent, WorkerdPool } from "../../../agent/isolate/index.ts";
import { alive, keyOnSlot, send } from "./support.ts";

let pool: WorkerdPool | undefined;

afterEach(async () => {
  await pool?.stop();
  pool = undefined;
});

// Close to the defaults (50/150 ms) with some room for a busy shared test machine.
const SNAPPY = { intervalMs: 50, stallMs: 250 };

const hello = (name: string) => `export default { fetch() { return new Response("${name}"); } };`;

describe("WorkerdPool watchdog", () => {
  it("detects an infinite loop, restarts the process on the same port, and serves other revisions again", async () => {
    const registry = new Registry();
    pool = new WorkerdPool({ processes: 2, metrics: registry, watchdog: SNAPPY });
    await pool.start();
    const looper = keyOnSlot(pool, "default/looper", 1);
    const bystander = keyOnSlot(pool, "default/bystander", 1);
    const elsewhere = keyOnSlot(pool, "default/elsewhere", 0);
    pool.register(looper, { code: "export default { fetch() { for (;;) {} } };" });
    pool.register(bystander, { code: hello("bystander") });
    pool.register(elsewhere, { code: hello("elsewhere") });
    expect((await send(pool, bystander)).body).toBe("bystander");
    const before = pool.stats()[1]!;

    const stalled = once(pool, "stall") as Promise<[IsolateEvent]>;
    const respawned = new Promise<SpawnEvent>((resolve) =>
      pool!.on("spawn", (e) => {
        if (e.cause === "stall") resolve(e);
      }),
    );
    const looping = send(pool, looper).then(
      (a) => `answered ${a.status}`,
      (err: Error) => `failed: ${err.message}`,
    );
    const [event] = await stalled;
    expect(event.slot).toBe(1);
    expect(event.pid).toBe(before.pid);
    expect(event.reason).toMatch(/^worker exceeded CPU/);
    expect(event.revisions).toEqual([looper]);
    // The request that looped is lost with its process (the gateway retries or fails it).
    expect(await looping).toMatch(/^failed: /);

    await respawned;
    const after = pool.stats()[1]!;
    expect(after.pid).not.toBe(before.pid);
    expect(after.port).toBe(before.port);
    expect(alive(before.pid!)).toBe(false);
    expect((await send(pool, bystander)).body).toBe("bystander");
    expect((await send(pool, elsewhere)).body).toBe("elsewhere");
    expect(
      await registry.getSingleMetricAsString("skiff_isolate_process_restarts_total"),
    ).toContain('reason="stall"} 1');
  });

  it("queues a request that arrives during a stall and answers it after the restart", async () => {
    pool = new WorkerdPool({ processes: 1, watchdog: SNAPPY });
    await pool.start();
    pool.register("default/spin-00001", { code: "export default { fetch() { for (;;) {} } };" });
    pool.register("default/patient-00001", { code: hello("patient") });
    const stalled = once(pool, "stall");
    const looping = send(pool, "default/spin-00001").catch(() => undefined);
    // Give the loop time to start, then connect while the process is frozen.
    await new Promise((resolve) => setTimeout(resolve, 40));
    const patient = send(pool, "default/patient-00001", { fresh: true });
    await stalled;
    await looping;
    const answer = await patient;
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("patient");
  });

  it("restarts a process aborted by an isolate over its heap limit and reports the reason", async () => {
    pool = new WorkerdPool({ processes: 1, maxHeapMb: 32, watchdog: { stallMs: 5_000 } });
    await pool.start();
    pool.register("default/hog-00001", {
      code: "export default { fetch() { const keep = []; for (;;) keep.push(new Array(100000).fill(1.5)); } };",
    });
    pool.register("default/survivor-00001", { code: hello("survivor") });
    const exited = once(pool, "exit") as Promise<[IsolateEvent]>;
    const respawned = new Promise<void>((resolve) =>
      pool!.on("spawn", (e) => {
        if (e.cause === "exit") resolve();
      }),
    );
    await send(pool, "default/hog-00001").catch(() => undefined);
    const [event] = await exited;
    expect(event.reason).toMatch(/exceeded its memory limit.*process restarted$/);
    expect(event.revisions).toEqual(["default/hog-00001"]);
    await respawned;
    expect((await send(pool, "default/survivor-00001")).body).toBe("survivor");
  });
});
