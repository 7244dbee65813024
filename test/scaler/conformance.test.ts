/**
 * Knative Serving's conformance tests (test/conformance/api/v1) that need
 * revisions running: the real API, scaler, agent (workerd and Docker) and
 * gateway over the run's Redis. Each test is named after the Knative test it
 * follows; what the API answers alone is test/deploy/conformance-api.test.ts.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/server.ts";
import { helloService } from "../agent/support.ts";
import type { TestApi } from "../support/api.ts";
import { helloImage, helloRootImage, missingImage } from "../support/images.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  hit,
  serviceHost,
  startTestCluster,
  type TestCluster,
  waitFor,
  waitRouted,
  workerService,
} from "./support.ts";

const prefix = uniquePrefix("conformance");
let api: TestApi;
let gateway: Gateway;
let redis: Redis;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster(prefix, {
    agents: { "conformance-agent": { containers: true } },
  });
  ({ api, gateway, redis } = cluster);
}, 60_000);

afterAll(() => cluster?.stop());

// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
type Obj = Record<string, any>;

async function get(plural: string, name: string): Promise<Obj> {
  const r = await api.call("GET", api.ns(plural, name));
  expect(r.status, r.text).toBe(200);
  return r.json;
}

const condition = (obj: Obj, type: string) =>
  (
    obj.status.conditions as
      | { type: string; status: string; reason?: string; message?: string }[]
      | undefined
  )?.find((c) => c.type === type);

/** Wait until `plural/name`'s condition `type` has `status`; returns the object. */
function waitCondition(plural: string, name: string, type: string, status: string) {
  return waitFor(
    `${plural}/${name} ${type}=${status}`,
    async () => {
      const obj = await get(plural, name);
      return condition(obj, type)?.status === status ? obj : undefined;
    },
    30_000,
  );
}

/** A worker Configuration answering "Hello {target}! ({K_REVISION})". */
function workerConfiguration(name: string, target: string) {
  const { spec } = workerService(name, { target });
  return { apiVersion: "serving.knative.dev/v1", kind: "Configuration", metadata: { name }, spec };
}

/** A PUT that re-reads and retries on 409 (the scaler's status writes move resourceVersion too). */
async function replace(plural: string, name: string, change: (obj: Obj) => Obj) {
  for (let attempt = 0; ; attempt++) {
    const current = await get(plural, name);
    const r = await api.call("PUT", api.ns(plural, name), change(current));
    if (r.status !== 409 || attempt >= 5) {
      expect(r.status, r.text).toBe(200);
      return r.json as Obj;
    }
  }
}

function route(name: string, traffic: unknown[], resourceVersion?: string) {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Route",
    metadata: { name, ...(resourceVersion ? { resourceVersion } : {}) },
    spec: { traffic },
  };
}

/** Create a container Service and wait until its host serves. */
async function serving(name: string, container: Record<string, unknown>) {
  const r = await api.call(
    "POST",
    api.ns("services"),
    helloService(name, await helloImage(), {}, {}, container),
  );
  expect(r.status, r.text).toBe(201);
  await waitCondition("services", name, "Ready", "True");
  await waitRouted(redis, prefix, gateway, serviceHost(name));
}

describe("Routes and Configurations written directly", () => {
  it("TestRouteCreation: a Configuration's revisions served through a Route, following its latest revision, then split and tagged", async () => {
    const config = await api.call(
      "POST",
      api.ns("configurations"),
      workerConfiguration("byo", "One"),
    );
    expect(config.status, config.text).toBe(201);
    await waitCondition("configurations", "byo", "Ready", "True");

    const created = await api.call(
      "POST",
      api.ns("routes"),
      route("byo-route", [{ configurationName: "byo", percent: 100 }]),
    );
    expect(created.status, created.text).toBe(201);
    const host = serviceHost("byo-route");
    await waitRouted(redis, prefix, gateway, host, (t) => t[0] === "byo-00001:100");
    expect(await hit(gateway.url, host)).toMatchObject({
      status: 200,
      body: "Hello One! (byo-00001)",
    });
    const ready = await waitCondition("routes", "byo-route", "Ready", "True");
    expect(ready.status.url).toBe(`http://${host}`);
    expect(ready.status.traffic).toEqual([
      { revisionName: "byo-00001", latestRevision: true, percent: 100 },
    ]);

    // A new template: the Route follows the Configuration's latest ready revision.
    await replace("configurations", "byo", (c) => {
      c.spec.template.spec.worker.env = [{ name: "TARGET", value: "Two" }];
      return c;
    });
    await waitRouted(redis, prefix, gateway, host, (t) => t[0] === "byo-00002:100");
    expect((await hit(gateway.url, host)).body).toBe("Hello Two! (byo-00002)");

    // The BYO-Route flow: pin the old revision beside the latest, each tagged.
    await replace("routes", "byo-route", (r) =>
      route(
        "byo-route",
        [
          { revisionName: "byo-00001", percent: 50, tag: "old" },
          { configurationName: "byo", percent: 50, tag: "new" },
        ],
        r.metadata.resourceVersion,
      ),
    );
    const oldHost = serviceHost("byo-route", "old");
    const newHost = serviceHost("byo-route", "new");
    await waitRouted(redis, prefix, gateway, oldHost);
    await waitRouted(redis, prefix, gateway, newHost);
    expect((await hit(gateway.url, oldHost)).body).toBe("Hello One! (byo-00001)");
    expect((await hit(gateway.url, newHost)).body).toBe("Hello Two! (byo-00002)");
    const split = await waitFor("byo-route ready at generation 2", async () => {
      const r = await get("routes", "byo-route");
      return r.status.observedGeneration === 2 && condition(r, "Ready")?.status === "True"
        ? r
        : undefined;
    });
    expect(split.status.traffic).toEqual([
      {
        tag: "old",
        revisionName: "byo-00001",
        latestRevision: false,
        percent: 50,
        url: `http://${oldHost}`,
      },
      {
        tag: "new",
        revisionName: "byo-00002",
        latestRevision: true,
        percent: 50,
        url: `http://${newHost}`,
      },
    ]);

    // Deleting the Route takes its hosts away.
    expect((await api.call("DELETE", api.ns("routes", "byo-route"))).status).toBe(200);
    await waitFor("byo-route's hosts gone", async () => {
      await gateway.resync();
      return (await hit(gateway.url, host)).status === 404 ? true : undefined;
    });
  }, 90_000);

  it("TestServiceGenerateName: a Service named by the server becomes Ready and serves", async () => {
    const { metadata: _m, ...body } = workerService("x", { target: "Gen" });
    const r = await api.call("POST", api.ns("services"), {
      ...body,
      metadata: { generateName: "gen-" },
    });
    expect(r.status, r.text).toBe(201);
    const name = r.json.metadata.name as string;
    expect(name).toMatch(/^gen-[a-z0-9]{5}$/);
    await waitCondition("services", name, "Ready", "True");
    const host = serviceHost(name);
    await waitRouted(redis, prefix, gateway, host);
    expect((await hit(gateway.url, host)).body).toBe(`Hello Gen! (${name}-00001)`);
  }, 60_000);
});

describe("a failing latest revision (errorcondition_test.go)", () => {
  /** Knative's IsRouteFailed on the Route, and RoutesReady False on the Service. */
  async function expectRouteFailed(name: string) {
    const rt = await waitCondition("routes", name, "Ready", "False");
    expect(condition(rt, "Ready")).toMatchObject({
      reason: "RevisionMissing",
      message: `Configuration "${name}" does not have any ready Revision.`,
    });
    const svc = await waitCondition("services", name, "RoutesReady", "False");
    expect(condition(svc, "RoutesReady")?.reason).toBe("RevisionMissing");
    expect(condition(svc, "Ready")?.status).toBe("False");
    const config = await get("configurations", name);
    expect(condition(config, "Ready")).toMatchObject({ status: "False", reason: "RevisionFailed" });
    expect(condition(config, "Ready")?.message).toBeTruthy();
  }

  it("TestContainerErrorMsg: a missing image fails the Route and the Service's RoutesReady", async () => {
    const r = await api.call("POST", api.ns("services"), helloService("noimage", missingImage()));
    expect(r.status, r.text).toBe(201);
    const rev = await waitCondition("revisions", "noimage-00001", "Ready", "False");
    expect(condition(rev, "Ready")?.reason).toBe("ImageNotFound");
    await expectRouteFailed("noimage");
  }, 60_000);

  it("TestContainerExitingMsg: a container exiting at start fails the Route and the Service's RoutesReady", async () => {
    const image = await helloImage();
    const r = await api.call(
      "POST",
      api.ns("services"),
      helloService("exiting", image, { EXIT_ON_START: "5" }),
    );
    expect(r.status, r.text).toBe(201);
    const rev = await waitCondition("revisions", "exiting-00001", "Ready", "False");
    expect(condition(rev, "Ready")?.reason).toBe("ExitCode5");
    await expectRouteFailed("exiting");
  }, 60_000);
});

describe("the runtime contract (test/conformance/runtime)", () => {
  it("TestProtocols (http1 by name): a port given by name only serves HTTP/1.1 on 8080", async () => {
    await serving("portname", { ports: [{ name: "http1" }] });
    const rev = await get("revisions", "portname-00001");
    expect(rev.spec.containers[0].ports).toEqual([{ name: "http1", containerPort: 8080 }]);
    const info = JSON.parse((await hit(gateway.url, serviceHost("portname"), "/info")).body);
    expect(info.port).toBe("8080");
  }, 60_000);

  it("TestShouldRunAsUserContainerDefault: without a securityContext the image's USER runs", async () => {
    await serving("imageuser", {});
    const status = (await hit(gateway.url, serviceHost("imageuser"), "/status")).body;
    expect(status).toMatch(/^Uid:\s+65532\s/m);
  }, 60_000);

  it("TestMustRunAsUser: securityContext.runAsUser and runAsGroup are the process's uid and gid", async () => {
    await serving("runas", {
      securityContext: { runAsUser: 2020, runAsGroup: 2021, runAsNonRoot: true },
    });
    const status = (await hit(gateway.url, serviceHost("runas"), "/status")).body;
    expect(status).toMatch(/^Uid:\s+2020\s+2020\s+2020\s+2020$/m);
    expect(status).toMatch(/^Gid:\s+2021\s+2021\s+2021\s+2021$/m);
  }, 60_000);

  it("runAsNonRoot with an image that runs as root: the revision fails with a clear condition", async () => {
    const r = await api.call(
      "POST",
      api.ns("services"),
      helloService(
        "rootimage",
        await helloRootImage(),
        {},
        {},
        {
          securityContext: { runAsNonRoot: true },
        },
      ),
    );
    expect(r.status, r.text).toBe(201);
    const rev = await waitCondition("revisions", "rootimage-00001", "Ready", "False");
    expect(condition(rev, "Ready")).toMatchObject({ reason: "CreateContainerConfigError" });
    expect(condition(rev, "Ready")?.message).toMatch(/runAsNonRoot .* will run as root/);
  }, 60_000);
});

describe("probes (runtime/readiness_probe_test.go, liveness_probe_test.go)", () => {
  const served = async (host: string) =>
    JSON.parse((await hit(gateway.url, host, "/stats")).body).served as number;

  it("TestLivenessWithFail: a failing httpGet liveness probe restarts the container", async () => {
    await serving("liveness", {
      livenessProbe: { httpGet: { path: "/healthz" }, periodSeconds: 1, failureThreshold: 3 },
    });
    const host = serviceHost("liveness");
    // The probe has run a few times (each is a request the app counts) with no restart.
    const before = await waitFor("5 liveness checks", async () => {
      const n = await served(host);
      return n >= 6 ? n : undefined;
    });
    expect((await hit(gateway.url, host, "/healthz/fail")).status).toBe(200);
    expect((await hit(gateway.url, host, "/healthz")).status).toBe(503);
    // A new process: /healthz answers again and its request count started over.
    await waitFor("a restarted container", async () => {
      const r = await hit(gateway.url, host, "/healthz");
      return r.status === 200 ? r : undefined;
    });
    expect(await served(host)).toBeLessThan(before + 3);
  }, 60_000);

  it("TestProbeRuntime (exec): exec readiness and liveness probes run in the container; a failing one restarts it", async () => {
    const check = { exec: { command: ["/hello", "check", "/healthz"] } };
    await serving("execprobe", {
      readinessProbe: check,
      livenessProbe: { ...check, periodSeconds: 1, failureThreshold: 2 },
    });
    const host = serviceHost("execprobe");
    expect((await hit(gateway.url, host)).status).toBe(200);
    expect((await hit(gateway.url, host, "/healthz/fail")).status).toBe(200);
    await waitFor("a restarted container", async () => {
      const r = await hit(gateway.url, host, "/healthz");
      return r.status === 200 ? r : undefined;
    });
  }, 60_000);
});
