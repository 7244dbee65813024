/** ContainerRuntime against the real Docker engine: start, contract, failures. */
import Docker from "dockerode";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { ExitEvent, ReadinessEvent } from "../../../agent/container/runtime.ts";
import { InstanceError } from "../../../agent/errors.ts";
import { AlreadyExistsError } from "../../../src/errors.ts";
import { missingImage } from "../../support/images.ts";
import { createHarness, get, type Harness, waitFor } from "./harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("rt");
});
afterEach(() => h.cleanup());
afterAll(() => h?.cleanup());

/**
 * A real engine whose container starts the test holds until release(): to see
 * what the runtime does while its start slots are busy.
 */
function holdingStarts() {
  const docker = new Docker();
  const getContainer = docker.getContainer.bind(docker);
  const held: (() => void)[] = [];
  const heldIds: string[] = [];
  let holding = true;
  const engine = {
    docker,
    held,
    /** The containers whose start is held. */
    heldIds,
    starts: 0,
    inFlight: 0,
    maxInFlight: 0,
    release() {
      holding = false;
      for (const go of held.splice(0)) go();
    },
  };
  docker.getContainer = (id: string) => {
    const container = getContainer(id);
    const start = container.start.bind(container);
    container.start = (async (...args: unknown[]) => {
      engine.starts++;
      engine.inFlight++;
      engine.maxInFlight = Math.max(engine.maxInFlight, engine.inFlight);
      try {
        if (holding) {
          heldIds.push(id);
          await new Promise<void>((go) => held.push(go));
        }
        return await (start as (...a: unknown[]) => Promise<unknown>)(...args);
      } finally {
        engine.inFlight--;
      }
    }) as typeof container.start;
    return container;
  };
  return engine;
}

async function startFailure(promise: Promise<unknown>): Promise<InstanceError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InstanceError);
  return err as InstanceError;
}

describe("ContainerRuntime.start", () => {
  test("starts an instance that answers with its TARGET and K_REVISION on the data address, then removes it", async () => {
    const rt = h.runtime({ dataAddress: "127.0.0.2" });
    const spec = h.spec({ revision: "hello-00042" }, { TARGET: "Skiff" });
    const started = await rt.start(spec);
    expect(started.host).toBe("127.0.0.2");
    expect(started.port).toBeGreaterThanOrEqual(20000);
    expect(rt.get(spec.instanceId)?.state).toBe("ready");

    const res = await get(`http://127.0.0.2:${started.port}/`);
    expect(res.status).toBe(200);
    expect(res.body).toBe("Hello Skiff!\n");
    expect(res.headers.get("k-revision")).toBe("hello-00042");

    await rt.stop(spec.instanceId, { graceSeconds: 5 });
    expect(await h.exists(started.containerId)).toBe(false);
    expect(rt.list()).toEqual([]);
  });

  test("gives the container the runtime contract: PORT, K_* env, args, a writable /tmp", async () => {
    const rt = h.runtime();
    const spec = h.spec(
      {
        service: "svc",
        configuration: "cfg",
        revision: "cfg-00003",
        container: {
          image: h.image,
          args: ["first", "second"],
          // Reserved names are the runtime's: a user value must not win.
          env: [
            { name: "PORT", value: "1" },
            { name: "K_REVISION", value: "spoofed" },
          ],
        },
      },
      {},
    );
    const started = await rt.start(spec);
    const info = (await (await fetch(`http://127.0.0.1:${started.port}/info`)).json()) as Record<
      string,
      unknown
    >;
    expect(info).toMatchObject({
      port: "8080", // the declared (default) containerPort, not the published host port
      host: null, // no bind hint: the container has its own network namespace
      service: "svc",
      configuration: "cfg",
      revision: "cfg-00003",
      tmpWritable: true,
      uid: 65532, // the image's USER is kept
      argv: ["/hello", "first", "second"],
    });
  });

  test("enforces resources.limits and runs unprivileged on the cluster's bridge with Skiff labels", async () => {
    const rt = h.runtime();
    const spec = h.spec({
      container: { image: h.image, resources: { limits: { cpu: "500m", memory: "64Mi" } } },
    });
    const started = await rt.start(spec);
    const info = await h.docker.getContainer(started.containerId).inspect();
    expect(info.HostConfig.NanoCpus).toBe(500_000_000);
    expect(info.HostConfig.Memory).toBe(64 * 2 ** 20);
    expect(info.HostConfig.NetworkMode).not.toBe("host");
    expect(Object.keys(info.NetworkSettings.Networks)).toEqual([`skiff-${h.clusterId}`]);
    expect(info.HostConfig.PortBindings).toEqual({
      "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: String(started.port) }],
    });
    expect(info.HostConfig.Privileged).toBe(false);
    expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
    expect(info.HostConfig.SecurityOpt).toContain("no-new-privileges:true");
    expect(Object.keys(info.HostConfig.Tmpfs ?? {})).toEqual(["/tmp"]);
    expect(info.Config.Labels).toMatchObject({
      "skiff.instance": spec.instanceId,
      "skiff.revision": spec.revision,
      "skiff.namespace": "default",
      "skiff.owner": h.owner,
      "skiff.cluster": h.clusterId,
      "skiff.port": String(started.port),
    });
    const network = await h.docker.getNetwork(`skiff-${h.clusterId}`).inspect();
    expect(network.Options).toMatchObject({ "com.docker.network.bridge.enable_icc": "false" });
    expect(network.Labels).toMatchObject({ "skiff.cluster": h.clusterId });
  });

  test("the runtime contract: an app listening only on its declared containerPort 8801 becomes ready and sees PORT=8801", async () => {
    const rt = h.runtime();
    // HOST pins the app to its own 0.0.0.0:8801; nothing else in the container listens.
    const spec = h.spec({ container: { image: h.image, ports: [{ containerPort: 8801 }] } });
    const started = await rt.start(spec);
    expect(started.port).not.toBe(8801);
    const info = (await (await fetch(`http://127.0.0.1:${started.port}/info`)).json()) as {
      port: string;
    };
    expect(info.port).toBe("8801");
    const inspect = await h.docker.getContainer(started.containerId).inspect();
    expect(Object.keys(inspect.HostConfig.PortBindings ?? {})).toEqual(["8801/tcp"]);
  });

  test("two instances of one revision each get their own port inside, published on different host ports", async () => {
    const rt = h.runtime();
    const [a, b] = await Promise.all([rt.start(h.spec()), rt.start(h.spec())]);
    expect(a.port).not.toBe(b.port);
    const infos = await Promise.all(
      [a, b].map(
        async (s) =>
          (await (await fetch(`http://127.0.0.1:${s.port}/info`)).json()) as { port: string },
      ),
    );
    expect(infos.map((i) => i.port)).toEqual(["8080", "8080"]);
  });

  test("with startConcurrency 1, a burst creates all its containers at once and docker-starts them one at a time", async () => {
    const engine = holdingStarts();
    const rt = h.runtime({ startConcurrency: 1, docker: engine.docker });
    const starting = [h.spec(), h.spec(), h.spec()].map((s) => rt.start(s));
    await waitFor("the first docker start, held", () => engine.held.length === 1);
    // The one slot is taken, yet the other two containers are created already.
    await waitFor("all three containers created", async () => (await h.containers()).length === 3);
    expect(engine.held.length).toBe(1);
    engine.release();
    const started = await Promise.all(starting);
    expect(engine.maxInFlight).toBe(1);
    expect(engine.starts).toBe(3);
    // Two of them waited for the slot the held start had.
    expect(started.filter((s) => s.timings.queuedMs > 0).length).toBeGreaterThanOrEqual(2);
    for (const s of started) expect((await get(`http://127.0.0.1:${s.port}/`)).status).toBe(200);
  });

  test("an instance stopped while its created container waits for a start slot is never started: Stopped, container removed", async () => {
    const engine = holdingStarts();
    const rt = h.runtime({ startConcurrency: 1, docker: engine.docker });
    const specs = [h.spec(), h.spec()];
    const starting = new Map(specs.map((s) => [s.instanceId, rt.start(s)]));
    await waitFor("one docker start, held", () => engine.held.length === 1);
    const created = await waitFor("both containers created", async () => {
      const all = await h.containers();
      return all.length === 2 && all;
    });
    // The one whose container waits for the slot (not the held start).
    const waiting = created.find((c) => !engine.heldIds.includes(c.Id));
    const id = waiting?.Labels["skiff.instance"];
    if (!id) throw new Error("no container waiting for a slot");
    await rt.stop(id, { graceSeconds: 1 });
    expect((await h.containers()).map((c) => c.Id)).toEqual(engine.heldIds);
    engine.release();
    const err = await startFailure(starting.get(id)!);
    expect(err.failure.reason).toBe("Stopped");
    const other = specs.find((s) => s.instanceId !== id)!;
    await starting.get(other.instanceId);
    // Only the held start ever reached the engine.
    expect(engine.starts).toBe(1);
    expect(rt.get(id)).toBeUndefined();
  });

  test("a burst of starts of one image asks the engine for it once; a later start asks again", async () => {
    const docker = new Docker();
    const getImage = docker.getImage.bind(docker);
    let inspects = 0;
    docker.getImage = (name: string) => {
      const image = getImage(name);
      const inspect = image.inspect.bind(image);
      image.inspect = ((...args: unknown[]) => {
        inspects++;
        return (inspect as (...a: unknown[]) => unknown)(...args);
      }) as typeof image.inspect;
      return image;
    };
    const rt = h.runtime({ docker });
    await Promise.all([h.spec(), h.spec(), h.spec()].map((s) => rt.start(s)));
    expect(inspects).toBe(1);
    await rt.start(h.spec());
    expect(inspects).toBe(2);
  });

  test("rejects a missing image at once with a readable ImageNotFound message and creates nothing", async () => {
    const rt = h.runtime();
    const image = missingImage();
    const err = await startFailure(rt.start(h.spec({ container: { image } })));
    expect(err.failure.reason).toBe("ImageNotFound");
    expect(err.message).toBe(
      `image ${image} not found locally and its registry docker.io is not in images.registries (none listed): add it to the cluster config, or load the image on every agent host (docker load)`,
    );
    expect(await h.containers()).toEqual([]);
  });

  test("does not pull from a registry that is not listed, and says which ones are", async () => {
    const rt = h.runtime({ registries: { "127.0.0.1:1": {} } });
    const image = missingImage();
    const err = await startFailure(rt.start(h.spec({ container: { image } })));
    expect(err.failure.reason).toBe("ImageNotFound");
    expect(err.message).toBe(
      `image ${image} not found locally and its registry docker.io is not in images.registries (127.0.0.1:1): add it to the cluster config, or load the image on every agent host (docker load)`,
    );
  });

  test("reports an unreachable configured registry quickly instead of hanging in a pull", async () => {
    // Nothing listens on 127.0.0.1:1: the reachability check fails at once.
    const rt = h.runtime({ registries: { "127.0.0.1:1": {} }, reachTimeoutMs: 1_000 });
    const image = "127.0.0.1:1/skiff/absent:1";
    const err = await startFailure(rt.start(h.spec({ container: { image } })));
    expect(err.failure.reason).toBe("ImageNotFound");
    expect(err.message).toMatch(
      /^image 127\.0\.0\.1:1\/skiff\/absent:1 not found locally and registry 127\.0\.0\.1:1 is unreachable/,
    );
    expect(await h.containers()).toEqual([]);
  });

  test("waits for an httpGet readiness probe to pass, not just for the port to open", async () => {
    const rt = h.runtime();
    const spec = h.spec(
      { container: { image: h.image, readinessProbe: { httpGet: { path: "/healthz" } } } },
      { HEALTHZ_DELAY_MS: "400" },
    );
    const started = await rt.start(spec);
    // A TCP probe would have passed long before /healthz turns 200.
    expect((await get(`http://127.0.0.1:${started.port}/healthz`)).status).toBe(200);
  });

  test("fails with the exit code and log lines when the container exits before it is ready", async () => {
    const rt = h.runtime();
    const err = await startFailure(rt.start(h.spec({}, { EXIT_ON_START: "4" })));
    expect(err.failure.reason).toBe("ExitCode4");
    expect(err.failure.exitCode).toBe(4);
    expect(err.message).toContain("container exited with code 4");
    expect(err.message).toContain("fatal: EXIT_ON_START=4");
    await waitFor("container removal", async () => (await h.containers()).length === 0);
  });

  // docker-proxy accepts on the published port before the app listens (and then
  // closes): a plain TCP connect there would say ready at once. Both probe paths
  // must wait for the app itself.
  for (const [how, options] of [
    ["inside the container's netns", {}],
    ["through the published port (fallback)", { probeNetns: false }],
  ] as const) {
    test(`a slow starter is ready only once the app accepts: TCP probe ${how}`, async () => {
      const rt = h.runtime(options);
      const spec = h.spec({}, { STARTUP_DELAY_MS: "1500" });
      const started = await rt.start(spec);
      expect(started.timings.readyMs).toBeGreaterThanOrEqual(1000);
      const res = await get(`http://127.0.0.1:${started.port}/`);
      expect(res.status).toBe(200);
      expect(res.body).toBe("Hello World!\n");
    });
  }

  test("fails with ReadinessTimeout and removes the container when the app never listens", async () => {
    const rt = h.runtime({ startupTimeoutMs: 800 });
    const err = await startFailure(rt.start(h.spec({}, { STARTUP_DELAY_MS: "60000" })));
    expect(err.failure.reason).toBe("ReadinessTimeout");
    expect(err.message).toMatch(
      /did not become ready within 0.8s: TCP check of container port 8080 \(published at 127\.0\.0\.1:\d+\) never succeeded/,
    );
    expect(await h.containers()).toEqual([]);
  });

  test("an app listening only on its own 127.0.0.1 is never ready (unreachable through the bridge) and is told how to fix it", async () => {
    const rt = h.runtime({ startupTimeoutMs: 1_500 });
    const err = await startFailure(rt.start(h.spec({}, { HOST: "127.0.0.1" })));
    expect(err.failure.reason).toBe("ReadinessTimeout");
    expect(err.message).toContain("does the app listen on 0.0.0.0:$PORT?");
    expect(err.message).toContain("hello: listening on 127.0.0.1:8080");
  });

  test("fails with StartFailed naming the command when it does not exist in the image", async () => {
    const rt = h.runtime();
    const err = await startFailure(
      rt.start(h.spec({ container: { image: h.image, command: ["/no-such-binary"] } })),
    );
    expect(err.failure.reason).toBe("StartFailed");
    expect(err.message).toContain("/no-such-binary");
    expect(await h.containers()).toEqual([]);
  });
});

describe("ContainerRuntime readiness after start", () => {
  test("keeps probing a ready instance and reports it unready, then ready again", async () => {
    const rt = h.runtime({ readyProbePeriodMs: 30 });
    const spec = h.spec({
      container: { image: h.image, readinessProbe: { httpGet: { path: "/healthz" } } },
    });
    const started = await rt.start(spec);
    const events: ReadinessEvent[] = [];
    rt.on("readiness", (e) => events.push(e));

    await get(`http://127.0.0.1:${started.port}/healthz/fail`);
    await waitFor("unready", () => rt.get(spec.instanceId)?.state === "unready");
    expect(events).toEqual([
      expect.objectContaining({
        instanceId: spec.instanceId,
        ready: false,
        message: expect.stringMatching(/\/healthz failed 3 times in a row \(last: status 503\)/),
      }),
    ]);

    await get(`http://127.0.0.1:${started.port}/healthz/ok`);
    await waitFor("ready again", () => rt.get(spec.instanceId)?.state === "ready");
    expect(events.map((e) => e.ready)).toEqual([false, true]);
  });

  test("refuses to start a second instance with the same id", async () => {
    const rt = h.runtime();
    const spec = h.spec();
    await rt.start(spec);
    await expect(rt.start(spec)).rejects.toBeInstanceOf(AlreadyExistsError);
    expect(await h.containers()).toHaveLength(1);
  });
});

describe("ContainerRuntime exit events", () => {
  test("reports a crash of a ready instance with its exit code and last log lines, then removes it", async () => {
    const rt = h.runtime();
    const spec = h.spec();
    const started = await rt.start(spec);
    const exited = new Promise<ExitEvent>((resolve) => rt.once("exit", resolve));
    await get(`http://127.0.0.1:${started.port}/crash?code=3`).catch(() => {});
    const ev = await exited;
    expect(ev).toMatchObject({
      instanceId: spec.instanceId,
      containerId: started.containerId,
      revision: spec.revision,
      reason: "ExitCode3",
      exitCode: 3,
      oomKilled: false,
    });
    expect(ev.message).toContain("container exited with code 3");
    expect(ev.message).toContain("crash requested: exiting with code 3");
    expect(rt.get(spec.instanceId)).toBeUndefined();
    await waitFor("container removal", async () => !(await h.exists(started.containerId)));
  });

  test("reports OOMKilled when the instance goes over its memory limit", async () => {
    const rt = h.runtime();
    const spec = h.spec({
      container: { image: h.image, resources: { limits: { memory: "32Mi" } } },
    });
    const started = await rt.start(spec);
    const exited = new Promise<ExitEvent>((resolve) => rt.once("exit", resolve));
    await get(`http://127.0.0.1:${started.port}/?bloat=64`).catch(() => {});
    const ev = await exited;
    expect(ev.reason).toBe("OOMKilled");
    expect(ev.oomKilled).toBe(true);
    expect(ev.exitCode).toBe(137);
    expect(ev.message).toContain("memory limit of 32Mi");
  });
});
