/** ContainerRuntime against the real Docker engine: network sandboxes started ahead of need. */
import Docker from "dockerode";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type {
  ContainerRuntime,
  ContainerRuntimeOptions,
  ExitEvent,
} from "../../../agent/container/runtime.ts";
import { sandboxesOf } from "../../support/containers.ts";
import { createHarness, get, type Harness, waitFor } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("nsb");
});
afterEach(() => h.cleanup());
afterAll(() => h?.cleanup());

const sandboxIds = async () => (await sandboxesOf(h.owner)).map((c) => c.Id).sort();
const networkMode = async (containerId: string) =>
  (await h.docker.getContainer(containerId).inspect()).HostConfig.NetworkMode;

/** A runtime whose pool is full: `count` sandboxes ready (the first start fills it). */
async function withReady(
  count: number,
  options: ContainerRuntimeOptions = {},
): Promise<ContainerRuntime> {
  const rt = h.runtime({ ...options, sandboxes: { count } });
  // adopt() fills the pool, as an agent's start does.
  await rt.adopt();
  await waitFor(`${count} sandboxes ready`, () => rt.readySandboxes() === count, 20_000);
  return rt;
}

describe("network sandboxes", () => {
  test("a cold start joins a ready sandbox: it serves on the sandbox's published port", async () => {
    const rt = await withReady(1);
    const [sandbox] = await sandboxIds();
    const spec = h.spec({}, { TARGET: "sandboxed" });
    const started = await rt.start(spec);
    expect(await networkMode(started.containerId)).toBe(`container:${sandbox}`);
    const labels = (await h.docker.getContainer(sandbox as string).inspect()).Config.Labels;
    expect(started.port).toBe(Number(labels["skiff.port"]));
    const res = await get(`http://127.0.0.1:${started.port}/`);
    expect(res.status).toBe(200);
    expect(res.body).toContain("sandboxed");
    // The pool is topped up for the next start: a new sandbox, never the one in use.
    await waitFor("the pool refilled", () => rt.readySandboxes() === 1, 20_000);
    expect(await sandboxIds()).toHaveLength(2);
  });

  test("stopping the instance removes its sandbox and frees its port", async () => {
    const rt = await withReady(1);
    const [sandbox] = await sandboxIds();
    const spec = h.spec();
    const started = await rt.start(spec);
    await rt.stop(spec.instanceId, { graceSeconds: 1 });
    expect(await h.exists(started.containerId)).toBe(false);
    expect(await h.exists(sandbox as string)).toBe(false);
    // Nothing listens on the port any more (the sandbox's docker-proxy went with it).
    await expect(get(`http://127.0.0.1:${started.port}/`)).rejects.toThrow();
  });

  test("a container declaring another port starts on the bridge, without a sandbox", async () => {
    const rt = await withReady(1);
    const spec = h.spec({
      container: { image: h.image, ports: [{ containerPort: 9090 }] },
    });
    const started = await rt.start(spec);
    expect(await networkMode(started.containerId)).not.toMatch(/^container:/);
    expect((await get(`http://127.0.0.1:${started.port}/`)).status).toBe(200);
    expect(rt.readySandboxes()).toBe(1);
  });

  test("a sandbox killed under its instance takes the instance down: its exit is reported", async () => {
    const rt = await withReady(1);
    const [sandbox] = await sandboxIds();
    const spec = h.spec();
    const started = await rt.start(spec);
    const exited = new Promise<ExitEvent>((resolve) => rt.once("exit", resolve));
    await h.docker.getContainer(sandbox as string).kill();
    const event = await exited;
    expect(event.instanceId).toBe(spec.instanceId);
    await waitFor("the instance and its sandbox removed", async () => {
      const gone = !(await h.exists(started.containerId)) && !(await h.exists(sandbox as string));
      return gone;
    });
  });

  test("a sandbox killed under a paused standby drops the standby", async () => {
    const rt = await withReady(1, { standby: { minFreeMemoryBytes: 0 } });
    const [sandbox] = await sandboxIds();
    const spec = h.spec();
    const started = await rt.start(spec);
    await rt.stop(spec.instanceId, { standby: true });
    expect(rt.standbys()).toMatchObject([{ containerId: started.containerId }]);
    await h.docker.getContainer(sandbox as string).kill();
    await waitFor("the standby dropped", () => rt.standbys().length === 0);
    await waitFor("its container removed", async () => !(await h.exists(started.containerId)));
  });

  test("a ready sandbox that dies leaves the pool and another takes its place", async () => {
    const rt = await withReady(1);
    const [dead] = await sandboxIds();
    await h.docker.getContainer(dead as string).kill();
    await waitFor("the dead one removed", async () => !(await h.exists(dead as string)));
    await waitFor("a new one ready", () => rt.readySandboxes() === 1, 20_000);
    const [fresh] = await sandboxIds();
    expect(fresh).not.toBe(dead);
    // The next start joins the live one.
    const started = await rt.start(h.spec());
    expect(await networkMode(started.containerId)).toBe(`container:${fresh}`);
  });

  test("a start whose sandbox died after it was taken runs without one", async () => {
    const docker = new Docker();
    const rt = await withReady(1, { docker });
    const [sandbox] = await sandboxIds();
    // The sandbox dies between the instance's create and its docker start: a real
    // kill, put at that moment by wrapping the start (the race itself is too short
    // to hit by chance).
    const getContainer = docker.getContainer.bind(docker);
    let killed = false;
    docker.getContainer = (id: string) => {
      const c = getContainer(id);
      const start = c.start.bind(c);
      c.start = (async (...args: unknown[]) => {
        if (!killed && id !== sandbox) {
          killed = true;
          await getContainer(sandbox as string).kill();
        }
        return (start as (...a: unknown[]) => unknown)(...args);
      }) as typeof c.start;
      return c;
    };
    const spec = h.spec();
    const started = await rt.start(spec);
    expect(killed).toBe(true);
    expect(await networkMode(started.containerId)).not.toMatch(/^container:/);
    expect((await get(`http://127.0.0.1:${started.port}/`)).status).toBe(200);
  });

  test("the sandbox runs a pause loop as nobody, with no capabilities, on a read-only root", async () => {
    await withReady(1);
    const [sandbox] = await sandboxIds();
    const info = await h.docker.getContainer(sandbox as string).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.Config.User).toBe("65534:65534");
    expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.Privileged).toBe(false);
    // Published on the data address only.
    expect(Object.values(info.HostConfig.PortBindings ?? {}).flat()).toEqual([
      expect.objectContaining({ HostIp: "127.0.0.1" }),
    ]);
  });

  test("closing removes the ready sandboxes; after a restart an instance keeps its own", async () => {
    const before = await withReady(1);
    const [own] = await sandboxIds();
    const spec = h.spec();
    const started = await before.start(spec);
    await waitFor("the pool refilled", () => before.readySandboxes() === 1, 20_000);
    await before.close();
    expect(await sandboxIds()).toEqual([own]);

    const after = h.runtime({ sandboxes: { count: 0 } });
    const adopted = await after.adopt();
    expect(adopted.running).toMatchObject([{ instanceId: spec.instanceId, port: started.port }]);
    expect((await get(`http://127.0.0.1:${started.port}/`)).status).toBe(200);
    // Its sandbox still goes with it.
    await after.stop(spec.instanceId, { graceSeconds: 1 });
    expect(await sandboxIds()).toEqual([]);
  });

  test("after a restart, an instance whose sandbox is gone is reported exited, not adopted", async () => {
    const before = await withReady(1);
    const [sandbox] = await sandboxIds();
    const spec = h.spec();
    const started = await before.start(spec);
    await before.close();
    // Removed while no agent watched: the instance lost its published port.
    await h.docker.getContainer(sandbox as string).remove({ force: true });

    const after = h.runtime({ sandboxes: { count: 0 } });
    const exited = new Promise<ExitEvent>((resolve) => after.once("exit", resolve));
    const adopted = await after.adopt();
    expect(adopted.running.filter((r) => r.ready)).toEqual([]);
    expect((await exited).instanceId).toBe(spec.instanceId);
    await waitFor("the instance removed", async () => !(await h.exists(started.containerId)));
  });

  test("after a crash, the next adopt removes unbound sandboxes: never handed out again", async () => {
    // Never closed before the next runtime adopts: as after a crash.
    const crashed = await withReady(1);
    const [left] = await sandboxIds();
    const after = h.runtime({ sandboxes: { count: 1 } });
    await after.adopt();
    await waitFor("the unbound sandbox removed", async () => !(await h.exists(left as string)));
    const started = await after.start(h.spec());
    expect(await networkMode(started.containerId)).not.toBe(`container:${left}`);
    await crashed.close();
  });

  test("count 0 starts none", async () => {
    const off = h.runtime({ sandboxes: { count: 0 } });
    await off.adopt();
    const started = await off.start(h.spec());
    expect(await networkMode(started.containerId)).not.toMatch(/^container:/);
    expect(await sandboxIds()).toEqual([]);
  });
});
