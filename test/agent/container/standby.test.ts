/** ContainerRuntime against the real Docker engine: paused standbys (pause on stop, resume on start). */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { ContainerRuntimeOptions } from "../../../agent/container/runtime.ts";
import { createHarness, get, type Harness, waitFor } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("sb");
});
afterEach(() => h.cleanup());
afterAll(() => h?.cleanup());

/** Standbys on whatever memory this shared machine has left. */
const on = (standby: NonNullable<ContainerRuntimeOptions["standby"]> = {}) =>
  h.runtime({ standby: { minFreeMemoryBytes: 0, ...standby } });

async function state(containerId: string): Promise<{ paused: boolean; name: string } | undefined> {
  try {
    const info = await h.docker.getContainer(containerId).inspect();
    return { paused: info.State.Paused, name: info.Name };
  } catch {
    return undefined;
  }
}

describe("paused standby", () => {
  test("a stop with standby pauses the container; a new instance of the same spec resumes it and serves", async () => {
    const rt = on();
    const first = h.spec({}, { TARGET: "standby" });
    const started = await rt.start(first);
    const slow = get(`http://127.0.0.1:${started.port}/?sleep=500`);
    // The drain rules of a normal stop still apply: the in-flight request finishes first.
    await rt.stop(first.instanceId, { drained: slow, standby: true });
    expect((await slow).status).toBe(200);
    expect(await state(started.containerId)).toMatchObject({ paused: true });
    // Not an instance any more (never ready capacity), but held as a standby.
    expect(rt.list()).toEqual([]);
    expect(rt.standbys()).toMatchObject([
      { containerId: started.containerId, namespace: "default", revision: first.revision },
    ]);

    const second = { ...first, instanceId: `${first.instanceId}-b` };
    const resumed = await rt.start(second);
    expect(resumed.resumed).toBe(true);
    expect(resumed.containerId).toBe(started.containerId);
    expect(resumed.port).toBe(started.port);
    expect(rt.standbys()).toEqual([]);
    expect(rt.get(second.instanceId)?.state).toBe("ready");
    const res = await get(`http://127.0.0.1:${resumed.port}/`);
    expect(res.status).toBe(200);
    expect(res.body).toContain("standby");
    // Its name now carries the new instance id (what adoption reads after a restart).
    expect(await state(started.containerId)).toEqual({
      paused: false,
      name: `/skiff-${h.clusterId}-${second.instanceId}`,
    });
    // A normal stop of the resumed instance removes it.
    await rt.stop(second.instanceId, { graceSeconds: 1 });
    expect(await h.exists(started.containerId)).toBe(false);
  });

  test("a stop without standby, with standbys off, or with memory tight removes the container", async () => {
    const cases = [
      { rt: on(), standby: false },
      { rt: on({ retentionMs: 0 }), standby: true },
      { rt: on({ maxStandbys: 0 }), standby: true },
      // Tight: less memory available than the threshold (no host has 4 PiB).
      { rt: on({ minFreeMemoryBytes: 2 ** 52 }), standby: true },
    ];
    for (const { rt, standby } of cases) {
      const spec = h.spec();
      const started = await rt.start(spec);
      await rt.stop(spec.instanceId, { standby });
      expect(await h.exists(started.containerId)).toBe(false);
      expect(rt.standbys()).toEqual([]);
    }
  });

  test("retention expiry removes the standby and frees its port", async () => {
    const rt = on({ retentionMs: 400 });
    const spec = h.spec();
    const started = await rt.start(spec);
    await rt.stop(spec.instanceId, { standby: true });
    expect(await state(started.containerId)).toMatchObject({ paused: true });
    await waitFor("the standby to expire", async () => !(await h.exists(started.containerId)));
    expect(rt.standbys()).toEqual([]);
    // The next start creates a container.
    const next = await rt.start({ ...spec, instanceId: `${spec.instanceId}-b` });
    expect(next.resumed).toBeUndefined();
    expect(next.containerId).not.toBe(started.containerId);
  });

  test("maxStandbys: the oldest standby makes room for the newest", async () => {
    const rt = on({ maxStandbys: 1 });
    const a = h.spec();
    const b = h.spec();
    const [sa, sb] = await Promise.all([rt.start(a), rt.start(b)]);
    await rt.stop(a.instanceId, { standby: true });
    await rt.stop(b.instanceId, { standby: true });
    expect(rt.standbys().map((s) => s.containerId)).toEqual([sb.containerId]);
    expect(await h.exists(sa.containerId)).toBe(false);
  });

  test("a different spec never resumes a standby (same revision, other env)", async () => {
    const rt = on();
    const spec = h.spec({}, { TARGET: "one" });
    const started = await rt.start(spec);
    await rt.stop(spec.instanceId, { standby: true });
    const other = h.spec({ revision: spec.revision }, { TARGET: "two" });
    const fresh = await rt.start(other);
    expect(fresh.resumed).toBeUndefined();
    expect(fresh.containerId).not.toBe(started.containerId);
    expect((await get(`http://127.0.0.1:${fresh.port}/`)).body).toContain("two");
    // The standby is untouched, still paused.
    expect(await state(started.containerId)).toMatchObject({ paused: true });
    expect(rt.standbys()).toHaveLength(1);
  });

  test("a standby whose image tag has moved since the pause is removed, not resumed", async () => {
    const rt = on();
    const repo = `skiff-test/standby-moved`;
    const tag = h.owner;
    await h.docker.getImage(h.image).tag({ repo, tag });
    const spec = h.spec({ container: { image: `${repo}:${tag}` } });
    try {
      const started = await rt.start(spec);
      await rt.stop(spec.instanceId, { standby: true });
      // The tag now names another image (same files, one more label): a new build pushed under it.
      const scratch = await h.docker.createContainer({
        Image: h.image,
        Labels: { "skiff.owner": h.owner },
      });
      await scratch.commit({ repo, tag, changes: "LABEL skiff.test=moved" });
      await scratch.remove({ force: true });
      const next = await rt.start({ ...spec, instanceId: `${spec.instanceId}-b` });
      expect(next.resumed).toBeUndefined();
      expect(next.containerId).not.toBe(started.containerId);
      expect(await h.exists(started.containerId)).toBe(false);
      expect(rt.standbys()).toEqual([]);
    } finally {
      await h.cleanup();
      await h.docker
        .getImage(`${repo}:${tag}`)
        .remove({ force: true })
        .catch(() => {});
    }
  });

  test("hostile: a standby of namespace A is never resumed for namespace B (same revision, same everything else)", async () => {
    const rt = on();
    const a = h.spec({ namespace: "tenant-a" }, { SECRET: "a-only" });
    const started = await rt.start(a);
    await rt.stop(a.instanceId, { standby: true });
    const b = { ...a, instanceId: `${a.instanceId}-b`, namespace: "tenant-b" };
    const fresh = await rt.start(b);
    expect(fresh.resumed).toBeUndefined();
    expect(fresh.containerId).not.toBe(started.containerId);
    expect(await state(started.containerId)).toMatchObject({ paused: true });
  });

  test("a restarted runtime adopts a paused standby (and resumes it), or removes it when standbys are off", async () => {
    const before = on();
    const spec = h.spec();
    const started = await before.start(spec);
    await before.stop(spec.instanceId, { standby: true });
    await before.close();
    expect(await state(started.containerId)).toMatchObject({ paused: true });

    const after = on();
    const adopted = await after.adopt();
    expect(adopted).toEqual({ running: [], exited: [] });
    expect(after.standbys().map((s) => s.containerId)).toEqual([started.containerId]);
    const resumed = await after.start({ ...spec, instanceId: `${spec.instanceId}-r` });
    expect(resumed.containerId).toBe(started.containerId);
    expect((await get(`http://127.0.0.1:${resumed.port}/`)).status).toBe(200);
    await after.stop(`${spec.instanceId}-r`, { standby: true });
    await after.close();

    const off = on({ retentionMs: 0 });
    expect(await off.adopt()).toEqual({ running: [], exited: [] });
    expect(off.standbys()).toEqual([]);
    expect(await h.exists(started.containerId)).toBe(false);
  });

  test("a resumed container is adopted after a restart under its new instance id", async () => {
    const before = on();
    const spec = h.spec();
    await before.start(spec);
    await before.stop(spec.instanceId, { standby: true });
    const second = { ...spec, instanceId: `${spec.instanceId}-2` };
    const resumed = await before.start(second);
    await before.close();

    const after = on();
    const { running } = await after.adopt();
    expect(running.map((r) => [r.instanceId, r.containerId, r.spec.instanceId])).toEqual([
      [second.instanceId, resumed.containerId, second.instanceId],
    ]);
    // Stopping the old instance id touches nothing; the current one stops it.
    await after.stop(spec.instanceId, { graceSeconds: 0 });
    expect(await h.exists(resumed.containerId)).toBe(true);
    await after.stop(second.instanceId, { graceSeconds: 0 });
    expect(await h.exists(resumed.containerId)).toBe(false);
  });

  test("a standby that is not ready after resuming is replaced by a new container (no failure)", async () => {
    const rt = on({ resumeTimeoutMs: 500 });
    // Readiness probed by HTTP, rarely once ready: the probe has not seen the failure when it stops.
    const spec = h.spec({
      container: {
        image: h.image,
        readinessProbe: { httpGet: { path: "/healthz" }, periodSeconds: 3600 },
      },
    });
    const started = await rt.start(spec);
    expect((await get(`http://127.0.0.1:${started.port}/healthz/fail`)).status).toBe(200);
    await rt.stop(spec.instanceId, { standby: true });
    expect(await state(started.containerId)).toMatchObject({ paused: true });
    const next = await rt.start({ ...spec, instanceId: `${spec.instanceId}-b` });
    expect(next.resumed).toBeUndefined();
    expect(next.containerId).not.toBe(started.containerId);
    expect(await h.exists(started.containerId)).toBe(false);
    expect((await get(`http://127.0.0.1:${next.port}/healthz`)).status).toBe(200);
  });

  test("a standby killed while paused is forgotten, and the next start creates a container", async () => {
    const rt = on();
    const spec = h.spec();
    const started = await rt.start(spec);
    await rt.stop(spec.instanceId, { standby: true });
    await h.docker.getContainer(started.containerId).kill();
    await waitFor("the standby to be dropped", () => rt.standbys().length === 0);
    const next = await rt.start({ ...spec, instanceId: `${spec.instanceId}-b` });
    expect(next.resumed).toBeUndefined();
    expect((await get(`http://127.0.0.1:${next.port}/`)).status).toBe(200);
  });
});
