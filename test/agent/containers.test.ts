/**
 * The agent against a real Docker engine and real Redis: the test plays the
 * scaler (writes desired instances) and reads what the agent publishes, as a
 * gateway would.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Agent } from "../../agent/agent.ts";
import { ensureClusterIdentity } from "../../src/cluster.ts";
import type { Endpoint } from "../../src/fleet/types.ts";
import { hit, host, startTestGateway, TestScaler } from "../gateway/support.ts";
import { sandboxesOf } from "../support/containers.ts";
import { helloImage, missingImage } from "../support/images.ts";
import { metricValue } from "../support/metrics.ts";
import { connect } from "../support/redis.ts";
import {
  type AgentTestEnv,
  agentTestEnv,
  call,
  condition,
  helloService,
  waitFor,
} from "./support.ts";

let env: AgentTestEnv;
let agent: Agent;
let image: string;

beforeAll(async () => {
  env = await agentTestEnv("agc");
  image = await helloImage(env.docker);
  // No network sandboxes: these tests pin an instance's own namespace on the bridge
  // ("network sandboxes" below starts an agent with them).
  agent = await env.startAgent({ containerSandboxes: { count: 0 } });
});
afterAll(() => env?.cleanup());

async function oneEndpoint(revision: string, after = 0) {
  return waitFor(`an endpoint of ${revision}`, async () => {
    const eps = await env.endpoints(revision);
    return eps.length === 1 && (eps[0]?.readyAt ?? 0) > after ? eps[0] : undefined;
  });
}

async function instanceContainers(instanceId: string) {
  return env.docker.listContainers({
    all: true,
    filters: { label: [`skiff.owner=${env.agentId}`, `skiff.instance=${instanceId}`] },
  });
}

/** The hello container probed for readiness on /healthz (its /healthz/fail makes it fail). */
const PROBED = { readinessProbe: { httpGet: { path: "/healthz" } } };

/** Two probed instances of a new Service, once both are published: the pair a gateway test fails one of. */
async function twoProbedInstances(service: string, extra: Record<string, unknown> = {}) {
  const rev = await env.createService(helloService(service, image, {}, extra, PROBED));
  const name = rev.metadata.name;
  const ids = [await env.desire(name, "container"), await env.desire(name, "container")];
  const eps = await waitFor("two endpoints", async () => {
    const list = await env.endpoints(name);
    return list.length === 2 ? list : undefined;
  });
  return { name, ids, eps: eps as [Endpoint, Endpoint] };
}

const resumes = () => metricValue(agent.registry, "skiff_agent_container_resumes_total");

describe("container instances", () => {
  test("a desired instance starts, is published with a loopback address, answers with its revision and TARGET, and is withdrawn (kept as a paused standby) when no longer desired", async () => {
    const rev = await env.createService(
      helloService("hello", image, { TARGET: "Skiff" }, { containerConcurrency: 4 }),
    );
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");

    const ep = await oneEndpoint(name);
    expect(ep.instanceId).toBe(id);
    expect(ep.containerConcurrency).toBe(4);
    expect(ep.agentId).toBe(env.agentId);
    expect(ep.runtime).toBe("container");
    expect(ep.host).toBe("127.0.0.1");
    const res = await call(ep);
    expect(res.status).toBe(200);
    expect(res.body).toContain("Hello Skiff!");
    expect(res.headers.get("k-revision")).toBe(name);

    const report = (await env.fleet.readInstanceStatuses(env.agentId)).find((r) => r.id === id);
    expect(report?.phase).toBe("ready");
    const [container] = await instanceContainers(id);
    expect(container).toBeDefined();
    // Labelled with the install's cluster id, on the install's own bridge (not the host network).
    const redis = connect();
    const cluster = await ensureClusterIdentity(redis, env.prefix).finally(() => redis.quit());
    expect(container?.Labels["skiff.cluster"]).toBe(cluster.id);
    expect(Object.keys(container?.NetworkSettings?.Networks ?? {})).toEqual([
      `skiff-${cluster.id}`,
    ]);
    expect(container?.Ports).toContainEqual(
      expect.objectContaining({ IP: "127.0.0.1", PrivatePort: 8080, PublicPort: ep.port }),
    );

    await env.undesire(id);
    await waitFor(
      "the endpoint to be withdrawn",
      async () => (await env.endpoints(name)).length === 0,
    );
    await waitFor(
      "the container to be paused as a standby",
      async () => (await instanceContainers(id))[0]?.State === "paused",
    );
    await waitFor("the report to be removed", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).every((r) => r.id !== id),
    );
    expect(agent.instances().some((i) => i.id === id)).toBe(false);
  });

  test("scale to zero pauses the container (reported on the agent record and in metrics, never an endpoint); the next instance resumes it", async () => {
    const rev = await env.createService(helloService("standby", image, { TARGET: "Again" }));
    const name = rev.metadata.name;
    const first = await env.desire(name, "container");
    const ep = await oneEndpoint(name);
    const [container] = await instanceContainers(first);
    await env.undesire(first);
    await waitFor(
      "the container to be paused",
      async () => (await instanceContainers(first))[0]?.State === "paused",
    );
    // A paused instance is never an endpoint nor an instance report (not ready capacity).
    expect(await env.endpoints(name)).toEqual([]);
    expect((await env.fleet.readInstanceStatuses(env.agentId)).map((r) => r.id)).not.toContain(
      first,
    );
    // The agent tells placement where the standby is.
    await waitFor("the agent record to list the standby", async () =>
      (await env.fleet.getAgent(env.agentId))?.standbys?.includes(`default/${name}`),
    );
    expect(await metricValue(agent.registry, "skiff_agent_container_standbys")).toBeGreaterThan(0);
    const resumesBefore = await resumes();

    const second = await env.desire(name, "container");
    const again = await oneEndpoint(name, ep.readyAt);
    expect(again.instanceId).toBe(second);
    expect(again.port).toBe(ep.port);
    const res = await call(again);
    expect(res.body).toContain("Hello Again!");
    // The same container, running, named after the new instance.
    const info = await env.docker.getContainer(container?.Id as string).inspect();
    expect(info.State.Running && !info.State.Paused).toBe(true);
    expect(info.Name.endsWith(`-${second}`)).toBe(true);
    expect(await resumes()).toBe(resumesBefore + 1);
    await waitFor(
      "the agent record to drop the standby",
      async () => !(await env.fleet.getAgent(env.agentId))?.standbys?.includes(`default/${name}`),
    );
    await env.undesire(second);
    await waitFor(
      "the endpoint to be withdrawn",
      async () => (await env.endpoints(name)).length === 0,
    );
  });

  test("the standby of a deleted revision is removed at the next resync (nothing would resume it)", async () => {
    const rev = await env.createService(helloService("pruned", image));
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");
    await oneEndpoint(name);
    const [container] = await instanceContainers(id);
    await env.undesire(id);
    await waitFor(
      "the container to be paused",
      async () => (await instanceContainers(id))[0]?.State === "paused",
    );
    await env.store.transact(async (tx) => {
      tx.delete("revisions", "default", name);
    });
    await waitFor("the standby to be removed", async () => {
      try {
        await env.docker.getContainer(container?.Id as string).inspect();
        return false;
      } catch {
        return true;
      }
    });
  });

  test("the first ready instance makes the Revision and Configuration ready and resolves the Service's traffic", async () => {
    const rev = await env.createService(helloService("ready", image));
    const name = rev.metadata.name;
    expect(condition(rev, "Ready")?.status).toBe("Unknown");
    await env.desire(name, "container");
    await oneEndpoint(name);
    const ready = await waitFor("the revision to be Ready", async () => {
      const r = await env.revision(name);
      return condition(r, "Ready")?.status === "True" ? r : undefined;
    });
    expect(condition(ready, "ContainerHealthy")?.status).toBe("True");
    expect(condition(ready, "ResourcesAvailable")?.status).toBe("True");
    // Service Ready also needs the scaler to publish routing tables (no scaler here).
    const service = await waitFor("the service's configuration to be ready", async () => {
      const s = await env.store.get("services", "default", "ready");
      return s?.status.conditions?.find((c) => c.type === "ConfigurationsReady")?.status === "True"
        ? s
        : undefined;
    });
    expect(service.status.conditions?.find((c) => c.type === "RoutesReady")?.reason).toBe(
      "IngressNotConfigured",
    );
    expect(service.status.latestReadyRevisionName).toBe(name);
    expect(service.status.traffic?.[0]?.revisionName).toBe(name);
    const config = await env.store.get("configurations", "default", "ready");
    expect(config?.status.latestReadyRevisionName).toBe(name);
  });

  test("a missing image puts a readable ImageNotFound message on the Revision, not a hang", async () => {
    const missing = missingImage();
    const rev = await env.createService(helloService("missing", missing));
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");
    const cond = await waitFor("ResourcesAvailable to be False", async () => {
      const c = condition(await env.revision(name), "ResourcesAvailable");
      return c?.status === "False" ? c : undefined;
    });
    expect(cond.reason).toBe("ImageNotFound");
    expect(cond.message).toContain(missing);
    expect(cond.message).toMatch(/not found/);
    const revision = await env.revision(name);
    expect(condition(revision, "Ready")).toMatchObject({
      status: "False",
      reason: "ImageNotFound",
    });
    const service = await waitFor("the service to show the failure", async () => {
      const s = await env.store.get("services", "default", "missing");
      const ready = s?.status.conditions?.find((c) => c.type === "Ready");
      return ready?.status === "False" ? ready : undefined;
    });
    expect(service.message).toContain(missing);
    const report = await waitFor("a backoff report", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === id && r.phase === "backoff",
      ),
    );
    expect(report.reason).toBe("ImageNotFound");
    expect(await env.endpoints(name)).toEqual([]);
    await env.undesire(id);
  });

  test("a container that crashes on start puts its exit code and last log lines on the Revision", async () => {
    const rev = await env.createService(helloService("crash", image, { EXIT_ON_START: "3" }));
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");
    const cond = await waitFor("ContainerHealthy to be False", async () => {
      const c = condition(await env.revision(name), "ContainerHealthy");
      return c?.status === "False" ? c : undefined;
    });
    expect(cond.reason).toBe("ExitCode3");
    expect(cond.message).toMatch(/exited with code 3/);
    expect(cond.message).toContain("EXIT_ON_START=3");
    expect(condition(await env.revision(name), "Ready")).toMatchObject({
      status: "False",
      reason: "ExitCode3",
    });
    expect(await env.endpoints(name)).toEqual([]);
    await env.undesire(id);
  });

  test("a container going over its memory limit puts OOMKilled on its instance status and the Revision", async () => {
    const rev = await env.createService({
      ...helloService("oom", image),
      spec: {
        template: {
          spec: {
            timeoutSeconds: 30,
            containers: [{ image, resources: { limits: { memory: "32Mi" } } }],
          },
        },
      },
    });
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");
    const ep = await oneEndpoint(name);
    await call(ep, "/?bloat=64").catch(() => undefined);
    const report = await waitFor("an OOMKilled report", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === id && r.reason === "OOMKilled",
      ),
    );
    expect(report.message).toContain("memory limit of 32Mi");
    const cond = await waitFor("OOMKilled on the revision", async () => {
      const c = condition(await env.revision(name), "ContainerHealthy");
      return c?.reason === "OOMKilled" ? c : undefined;
    });
    expect(cond.status).toBe("False");
    expect(cond.message).toContain("OOMKilled");
    await env.undesire(id);
  });

  test("a crash after readiness withdraws the endpoint at once and republishes it after the restart", async () => {
    const rev = await env.createService(helloService("flaky", image));
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");
    const first = await oneEndpoint(name);
    const withdrawn: string[] = [];
    const off = await env.fleet.subscribe("endpoints", (m) => withdrawn.push(m));
    await call(first, "/crash?code=7").catch(() => undefined);
    // Watch for the crash on the revision from now on: it is held there only STATUS_HOLD_MS.
    const crashed = waitFor("the crash on the revision", async () => {
      const r = await env.revision(name);
      return condition(r, "ContainerHealthy")?.status === "False" ? r : undefined;
    });
    const second = await oneEndpoint(name, first.readyAt);
    expect(second.instanceId).toBe(id);
    // The withdrawal and the republication were both announced (the second
    // message may still be on its way when the endpoint can be read).
    await expect
      .poll(() => withdrawn.filter((m) => m === `default/${name}`).length)
      .toBeGreaterThanOrEqual(2);
    await off();
    expect((await call(second)).status).toBe(200);
    const report = (await env.fleet.readInstanceStatuses(env.agentId)).find((r) => r.id === id);
    expect(report?.restarts).toBe(1);
    // The revision had served: the crash shows on ContainerHealthy, Ready stays True.
    const revision = await crashed;
    expect(condition(revision, "ContainerHealthy")?.reason).toBe("ExitCode7");
    expect(condition(revision, "Ready")?.status).toBe("True");
    await env.undesire(id);
  });

  test("an instance whose readiness probe starts failing is withdrawn within the probe's window, left running, and republished once it passes again", async () => {
    // Default probe cadence (1 s period, failureThreshold 3): no periodSeconds given.
    const rev = await env.createService(helloService("unready", image, {}, {}, PROBED));
    const name = rev.metadata.name;
    const id = await env.desire(name, "container");
    const first = await oneEndpoint(name);
    const [before] = await instanceContainers(id);

    const failedAt = performance.now();
    expect((await call(first, "/healthz/fail")).status).toBe(200);
    await waitFor(
      "the endpoint to be withdrawn",
      async () => (await env.endpoints(name)).length === 0,
    );
    const withdrawnMs = performance.now() - failedAt;
    // The report is written just after the endpoint is withdrawn.
    const report = await waitFor("the unready report", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === id && r.reason === "ReadinessProbeFailed",
      ),
    );
    expect(report.phase).toBe("starting");
    expect(report.message).toContain("/healthz");
    expect(report.message).toContain("status 503");
    // Unready is not dead: the same container still runs and answers.
    expect((await call(first, "/")).status).toBe(200);

    const okAt = performance.now();
    expect((await call(first, "/healthz/ok")).status).toBe(200);
    const second = await oneEndpoint(name, first.readyAt);
    const republishedMs = performance.now() - okAt;
    expect(second).toMatchObject({ instanceId: id, host: first.host, port: first.port });
    const [after] = await instanceContainers(id);
    expect(after?.Id).toBe(before?.Id);
    const again = await waitFor("the ready report", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === id && r.phase === "ready",
      ),
    );
    expect(again.restarts).toBe(0);
    console.log(
      `unready: endpoint withdrawn ${withdrawnMs.toFixed(0)} ms after /healthz/fail, ` +
        `republished ${republishedMs.toFixed(0)} ms after /healthz/ok (period 1 s, failureThreshold 3)`,
    );
    // Within the probe window (3 failed probes, 1 s apart) plus slack for a busy machine.
    expect(withdrawnMs).toBeLessThan(10_000);
    await env.undesire(id);
  });

  test("an instance of a revision that does not exist is reported failed with a message", async () => {
    const id = await env.desire("nosuch-00001", "container");
    const report = await waitFor("a failed report", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).find(
        (r) => r.id === id && r.phase === "failed",
      ),
    );
    expect(report.reason).toBe("RevisionNotFound");
    expect(report.message).toMatch(/revision "nosuch-00001" not found in namespace "default"/);
    await env.undesire(id);
    await waitFor("the report to go", async () =>
      (await env.fleet.readInstanceStatuses(env.agentId)).every((r) => r.id !== id),
    );
  });
});

describe("an instance that goes unready behind a gateway", () => {
  test("two instances, one fails its readiness probe under load: no request fails or waits past its timeout, and the gateway stops sending to it", async () => {
    const { name, ids, eps } = await twoProbedInstances("twin");
    const scaler = new TestScaler(env.prefix);
    const gw = await startTestGateway(env.prefix);
    try {
      await scaler.route("default", "twin", [{ revision: name, percent: 100, timeoutSeconds: 30 }]);
      await gw.resync();
      await waitFor("the gateway to serve twin", async () => {
        const res = await hit(gw.url, host("twin")).catch(() => undefined);
        return res?.status === 200;
      });

      // Bounded load: 4 callers until told to stop (at most 60 s or 100k requests; a
      // quiet machine sends several thousand before the withdrawal is even seen).
      const results: { status: number; ms: number }[] = [];
      let stop = false;
      const deadline = Date.now() + 60_000;
      const caller = async () => {
        while (!stop && Date.now() < deadline && results.length < 100_000) {
          const t0 = performance.now();
          const res = await hit(gw.url, host("twin")).catch(() => ({ status: 0 }));
          results.push({ status: res.status, ms: performance.now() - t0 });
        }
      };
      const load = Promise.all([caller(), caller(), caller(), caller()]);

      const [sick, well] = eps;
      const failedAt = performance.now();
      await call(sick, "/healthz/fail");
      await waitFor("the sick endpoint to be withdrawn", async () => {
        const list = await env.endpoints(name);
        return list.length === 1 && list[0]?.instanceId === well.instanceId;
      });
      const withdrawnMs = performance.now() - failedAt;
      // Let the gateway see the withdrawal, then count what still reaches the sick instance.
      const served = async (ep: Endpoint) => JSON.parse((await call(ep, "/stats")).body).served;
      const mark = results.length;
      await waitFor("load after the withdrawal", () => results.length >= mark + 100);
      const sickBefore = await served(sick);
      const wellBefore = await served(well);
      const mark2 = results.length;
      await waitFor("more load", () => results.length >= mark2 + 200);
      const sickAfter = await served(sick);
      const wellAfter = await served(well);
      stop = true;
      await load;

      const failed = results.filter((r) => r.status !== 200);
      const maxMs = Math.max(...results.map((r) => r.ms));
      console.log(
        `unready behind a gateway: ${results.length} requests, ${failed.length} failed, max ${maxMs.toFixed(0)} ms; ` +
          `endpoint withdrawn ${withdrawnMs.toFixed(0)} ms after /healthz/fail; ` +
          `then sick instance served ${sickAfter - sickBefore - 1}, well ${wellAfter - wellBefore - 1}`,
      );
      expect(failed).toEqual([]);
      expect(maxMs).toBeLessThan(30_000);
      // Only the /stats request itself (counted by the app) reached the sick instance.
      expect(sickAfter - sickBefore).toBe(1);
      expect(wellAfter - wellBefore).toBeGreaterThan(100);
      // Not restarted: still the same instance, still running.
      expect((await call(sick, "/")).status).toBe(200);
    } finally {
      await gw.close(1_000);
      await scaler.close();
      for (const id of ids) await env.undesire(id);
    }
  });
});

describe("a hung instance behind a gateway", () => {
  test("two instances, one freezes (docker pause: connections accepted, never answered): no request waits past timeoutSeconds, and the frozen one is withdrawn by its probe", async () => {
    const { name, ids, eps } = await twoProbedInstances("frozen", { timeoutSeconds: 5 });
    const scaler = new TestScaler(env.prefix);
    const gw = await startTestGateway(env.prefix);
    const [sick, well] = eps;
    const [sickContainer] = await instanceContainers(sick.instanceId);
    try {
      await scaler.route("default", "frozen", [
        // A response the pause caught after its headers went out is cut after
        // idleTimeoutSeconds (a started response is never turned into a 504).
        { revision: name, percent: 100, timeoutSeconds: 5, idleTimeoutSeconds: 5 },
      ]);
      await gw.resync();
      await waitFor("the gateway to serve frozen", async () => {
        const res = await hit(gw.url, host("frozen")).catch(() => undefined);
        return res?.status === 200;
      });
      const results: { status: number; ms: number; at: number }[] = [];
      let stop = false;
      const deadline = Date.now() + 60_000;
      const t00 = performance.now();
      const caller = async () => {
        while (!stop && Date.now() < deadline && results.length < 30_000) {
          const t0 = performance.now();
          const res = await hit(gw.url, host("frozen")).catch(() => ({ status: 0 }));
          results.push({ status: res.status, ms: performance.now() - t0, at: t0 - t00 });
        }
      };
      const load = Promise.all([caller(), caller(), caller(), caller()]);
      await waitFor("some load", () => results.length >= 50);
      const frozeAt = performance.now();
      await env.docker.getContainer(sickContainer?.Id ?? "").pause();
      await waitFor("the frozen endpoint to be withdrawn", async () => {
        const list = await env.endpoints(name);
        return list.length === 1 && list[0]?.instanceId === well.instanceId;
      });
      const withdrawnMs = performance.now() - frozeAt;
      const mark = results.length;
      await waitFor(
        "load after the withdrawal",
        () => results.length >= mark + 200 || results.length >= 30_000,
        30_000,
      );
      stop = true;
      await load;
      const failed = results.filter((r) => r.status !== 200);
      const maxMs = Math.max(...results.map((r) => r.ms));
      console.log(
        `hung behind a gateway: ${results.length} requests, ${failed.length} failed ` +
          `(${JSON.stringify(failed.slice(0, 8).map((f) => [f.status, Math.round(f.ms)]))}), max ${maxMs.toFixed(0)} ms; ` +
          `endpoint withdrawn ${withdrawnMs.toFixed(0)} ms after the pause`,
      );
      // Nothing waits past the revision's timeouts (plus slack for a busy machine). The
      // few requests already sent to the frozen instance time out with a 504 (or, when
      // the pause caught a response after its headers, are cut: status 0 here); a zero
      // here needs a retry or hedge in the gateway, not the agent.
      expect(maxMs).toBeLessThan(5_000 + 2_000);
      for (const f of failed) expect([504, 0]).toContain(f.status);
      expect(withdrawnMs).toBeLessThan(20_000);
    } finally {
      await env.docker
        .getContainer(sickContainer?.Id ?? "")
        .unpause()
        .catch(() => {});
      await gw.close(1_000);
      await scaler.close();
      for (const id of ids) await env.undesire(id);
    }
  }, 90_000);
});

describe("network sandboxes", () => {
  test("a cold start joins a ready sandbox: its endpoint is the sandbox's port, counted as joined", async () => {
    const id3 = `${env.agentId}-n`;
    const withPool = await env.startAgent({ id: id3, containerSandboxes: { count: 1 } });
    const ready = () => metricValue(withPool.registry, "skiff_agent_container_sandboxes");
    await waitFor("a sandbox ready", async () => (await ready()) === 1, 20_000);
    // Its record tells placement (the next heartbeat).
    await waitFor(
      "the agent record to report it",
      async () => (await env.fleet.getAgent(id3))?.sandboxes === 1,
    );
    const rev = await env.createService(helloService("joined", image, { TARGET: "Joined" }));
    const name = rev.metadata.name;
    const id = await env.desire(name, "container", id3);
    const ep = await oneEndpoint(name);
    expect((await call(ep)).body).toContain("Hello Joined!");
    const [c] = await env.docker.listContainers({
      all: true,
      filters: { label: [`skiff.owner=${id3}`, `skiff.instance=${id}`] },
    });
    const sandbox = c?.Labels["skiff.sandbox"] as string;
    expect(c?.HostConfig.NetworkMode).toBe(`container:${sandbox}`);
    const sandboxLabels = (await env.docker.getContainer(sandbox).inspect()).Config.Labels;
    expect(Number(sandboxLabels["skiff.port"])).toBe(ep.port);
    const starts = (sandbox: string) =>
      metricValue(withPool.registry, "skiff_agent_container_cold_starts_total", { sandbox });
    expect(await starts("joined")).toBe(1);
    expect(await starts("none")).toBe(0);
    await env.undesire(id, id3);
    await withPool.stop();
    expect(await sandboxesOf(id3)).toEqual([]);
  });
});

describe("graceful stop", () => {
  test("withdraws the endpoint first, lets an in-flight slow request finish, then stops the container and deregisters", async () => {
    const id2 = `${env.agentId}-g`;
    const stopping = await env.startAgent({ id: id2, address: "127.0.0.2", drainDelayMs: 200 });
    const rev = await env.createService(helloService("drain", image));
    const name = rev.metadata.name;
    const instance = await env.desire(name, "container", id2);
    const ep = await oneEndpoint(name);
    expect(ep.host).toBe("127.0.0.2");

    let finished = false;
    const slow = call(ep, "/?sleep=1500").finally(() => {
      finished = true;
    });
    await waitFor("the slow request to be in flight", async () => {
      const stats = await call(ep, "/stats");
      return (JSON.parse(stats.body) as { inflight: number }).inflight >= 1;
    });
    const stopped = stopping.stop();
    await waitFor(
      "the endpoint to be withdrawn",
      async () => (await env.endpoints(name)).length === 0,
    );
    expect(finished).toBe(false);

    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.body).toContain("Slept for 1500 milliseconds.");
    await stopped;
    expect(await env.ownerContainers(id2)).toEqual([]);
    // Its network sandboxes too (the one the instance ran in, and the ready ones).
    expect(await sandboxesOf(id2)).toEqual([]);
    expect(await env.fleet.getAgent(id2)).toBeUndefined();
    expect(await env.fleet.readInstanceStatuses(id2)).toEqual([]);
    expect(instance).toBeTruthy();
  });
});
