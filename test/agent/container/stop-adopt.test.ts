/** ContainerRuntime against the real Docker engine: graceful stop and adoption after a restart. */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { ExitEvent } from "../../../agent/container/runtime.ts";
import { InstanceError } from "../../../agent/errors.ts";
import { createHarness, get, type Harness, waitFor } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("sa");
});
afterEach(() => h.cleanup());
afterAll(() => h?.cleanup());

/** Resolves once the instance is serving at least one request (besides /stats itself). */
function inFlight(port: number): Promise<true> {
  return waitFor("a request in flight", async () => {
    const stats = (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as {
      inflight: number;
    };
    return stats.inflight >= 1 || undefined;
  });
}

describe("ContainerRuntime.stop", () => {
  test("a graceful stop lets an in-flight slow request finish before the container dies", async () => {
    const rt = h.runtime();
    const spec = h.spec();
    const started = await rt.start(spec);
    const slow = get(`http://127.0.0.1:${started.port}/?sleep=1500`);
    await inFlight(started.port);
    await rt.stop(spec.instanceId, { graceSeconds: 10 });
    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.body).toContain("Slept for 1500 milliseconds.");
    expect(await h.exists(started.containerId)).toBe(false);
  });

  test("waits for the caller's drained promise before SIGTERM, even with no grace at all", async () => {
    const rt = h.runtime();
    const spec = h.spec();
    const started = await rt.start(spec);
    const slow = get(`http://127.0.0.1:${started.port}/?sleep=800`);
    await inFlight(started.port);
    // graceSeconds 0 means SIGKILL right after SIGTERM: only the drain wait saves the request.
    await rt.stop(spec.instanceId, { drained: slow, graceSeconds: 0 });
    expect((await slow).status).toBe(200);
    expect(await h.exists(started.containerId)).toBe(false);
  });

  test("stop during startup makes start() fail with Stopped and removes the container", async () => {
    const rt = h.runtime();
    const spec = h.spec({}, { STARTUP_DELAY_MS: "60000" });
    const starting = rt.start(spec).then(
      () => undefined,
      (e: unknown) => e,
    );
    await waitFor("the container to be created", async () => (await h.containers()).length === 1);
    await rt.stop(spec.instanceId, { graceSeconds: 0 });
    const err = await starting;
    expect(err).toBeInstanceOf(InstanceError);
    expect((err as InstanceError).failure.reason).toBe("Stopped");
    expect(await h.containers()).toEqual([]);
  });

  test("stops and removes a container of this owner that the runtime does not track", async () => {
    const before = h.runtime();
    const spec = h.spec();
    const started = await before.start(spec);
    await before.close();
    await h.runtime().stop(spec.instanceId, { graceSeconds: 5 });
    expect(await h.exists(started.containerId)).toBe(false);
  });
});

describe("ContainerRuntime.adopt", () => {
  test("a new runtime (agent restarted) adopts the running containers with their specs and endpoints", async () => {
    const before = h.runtime({ dataAddress: "127.0.0.2" });
    const a = h.spec({ revision: "hello-00001" }, { TARGET: "A" });
    const b = h.spec({ revision: "hello-00002" }, { TARGET: "B" });
    const [sa, sb] = await Promise.all([before.start(a), before.start(b)]);
    await before.close(); // the old agent is gone without stopping anything

    const after = h.runtime({ dataAddress: "127.0.0.2" });
    const { running, exited } = await after.adopt();
    expect(exited).toEqual([]);
    const byId = new Map(running.map((r) => [r.instanceId, r]));
    expect(byId.get(a.instanceId)).toMatchObject({
      containerId: sa.containerId,
      host: "127.0.0.2",
      port: sa.port,
      ready: true,
      spec: { revision: "hello-00001", namespace: "default" },
    });
    expect(byId.get(b.instanceId)).toMatchObject({
      containerId: sb.containerId,
      port: sb.port,
      ready: true,
    });
    expect(
      after
        .list()
        .map((i) => i.instanceId)
        .sort(),
    ).toEqual([a.instanceId, b.instanceId].sort());
    expect((await get(`http://127.0.0.2:${sa.port}/`)).body).toBe("Hello A!\n");

    // Adopting again is a no-op: nothing is duplicated.
    expect((await after.adopt()).running).toEqual([]);

    // The adopted instances are watched: a crash is an exit event, a stop removes.
    const exitedEvent = new Promise<ExitEvent>((resolve) => after.once("exit", resolve));
    await get(`http://127.0.0.2:${sa.port}/crash?code=9`).catch(() => {});
    expect(await exitedEvent).toMatchObject({ instanceId: a.instanceId, reason: "ExitCode9" });
    await after.stop(b.instanceId, { graceSeconds: 5 });
    expect(await h.exists(sb.containerId)).toBe(false);
  });

  test("does not adopt containers that belong to another owner", async () => {
    const mine = h.runtime();
    await mine.start(h.spec());
    const stranger = h.runtime({ owner: `${h.owner}-other` });
    expect(await stranger.adopt()).toEqual({ running: [], exited: [] });
  });

  test("two installs (cluster ids) on one engine never adopt or stop each other's containers, even with the same agent id", async () => {
    const mine = h.runtime();
    const other = h.runtime({ clusterId: `${h.clusterId}x` });
    const spec = h.spec();
    // The same instance id in both clusters: a stop by id must only ever touch its own.
    const [a, b] = await Promise.all([mine.start(spec), other.start({ ...spec })]);
    const labels = async (id: string) =>
      (await h.docker.getContainer(id).inspect()).Config.Labels["skiff.cluster"];
    expect(await labels(a.containerId)).toBe(h.clusterId);
    expect(await labels(b.containerId)).toBe(`${h.clusterId}x`);
    await Promise.all([mine.close(), other.close()]);

    // Restarted agents of each install: each adopts exactly its own.
    const mineAgain = h.runtime();
    const otherAgain = h.runtime({ clusterId: `${h.clusterId}x` });
    const adoptedMine = await mineAgain.adopt();
    expect(adoptedMine.running.map((r) => r.containerId)).toEqual([a.containerId]);
    const adoptedOther = await otherAgain.adopt();
    expect(adoptedOther.running.map((r) => r.containerId)).toEqual([b.containerId]);

    // A fresh runtime of one install stopping that id (untracked path) leaves the other's alone.
    await h.runtime().stop(spec.instanceId, { graceSeconds: 0 });
    // (mineAgain sees the exit too and may be removing it at the same moment)
    await waitFor("the container's removal", async () => !(await h.exists(a.containerId)));
    expect((await h.docker.getContainer(b.containerId).inspect()).State.Running).toBe(true);
    expect((await get(`http://127.0.0.1:${b.port}/`)).status).toBe(200);
  });

  test("recovers the published host port on adopt from Docker, not only from the labels", async () => {
    const before = h.runtime({ dataAddress: "127.0.0.2" });
    const spec = h.spec({ container: { image: h.image, ports: [{ containerPort: 8801 }] } });
    const started = await before.start(spec);
    await before.close();
    const after = h.runtime({ dataAddress: "127.0.0.2" });
    const { running } = await after.adopt();
    expect(running).toMatchObject([
      { instanceId: spec.instanceId, host: "127.0.0.2", port: started.port, ready: true },
    ]);
    expect(after.get(spec.instanceId)).toMatchObject({ state: "ready", port: started.port });
  });

  test("reports a container that died while the agent was away, then removes it", async () => {
    const before = h.runtime();
    const spec = h.spec();
    const started = await before.start(spec);
    await before.close();
    await get(`http://127.0.0.1:${started.port}/crash?code=5`).catch(() => {});
    await waitFor("the container to exit", async () => {
      const info = await h.docker.getContainer(started.containerId).inspect();
      return !info.State.Running;
    });

    const after = h.runtime();
    const { running, exited } = await after.adopt();
    expect(running).toEqual([]);
    expect(exited).toHaveLength(1);
    expect(exited[0]).toMatchObject({
      instanceId: spec.instanceId,
      reason: "ExitCode5",
      exitCode: 5,
    });
    expect(exited[0]?.message).toContain("crash requested: exiting with code 5");
    expect(await h.exists(started.containerId)).toBe(false);
  });
});
