/**
 * The scaler owns the routing tables: the seed walkthrough's Service updates
 * (create, pin hello-00001, hello-00002, 50/50, canary tag) become exactly
 * Knative's hosts and weights, published for the gateways once the revisions
 * they name are Ready; a revision that never becomes ready (missing image)
 * takes no traffic while the previous one keeps serving; a deleted Service's
 * hosts go away. Also what the scaler writes on revisions when it cannot do
 * its job (no room, annotations that no longer parse) and revision GC. Real
 * deploy API, agent (isolates and Docker), gateway and scaler; autoscaler
 * windows shortened (see support.ts) and, for the GC test, Knative's GC
 * retention set to nothing (it only runs when the test asks).
 */
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../agent/server.ts";
import type { Gateway } from "../../gateway/server.ts";
import type { RunningScaler } from "../../scaler/server.ts";
import type { Fleet } from "../../src/fleet/fleet.ts";
import type { TestApi } from "../support/api.ts";
import { missingImage } from "../support/images.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  hit,
  routingSummary,
  SHORT_AUTOSCALER,
  serviceHost,
  startTestCluster,
  type TestCluster,
  waitFor,
  waitRouted,
  workerService,
} from "./support.ts";

const prefix = uniquePrefix("scaler-routes");
let api: TestApi;
let agent: RunningAgent;
let gateway: Gateway;
let scaler: RunningScaler;
let redis: Redis;
/** The scaler's warnings, as JSON lines. */
const scalerLines: string[] = [];
let fleet: Fleet;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster(prefix, {
    agents: { "routes-agent": { containers: true } },
    scaler: {
      logger: pino({ level: "warn" }, { write: (line: string) => void scalerLines.push(line) }),
      autoscaler: { ...SHORT_AUTOSCALER, maxScaleLimit: 10 },
      gc: {
        retainSinceCreateTime: 0,
        retainSinceLastActiveTime: 0,
        minNonActiveRevisions: 0,
        maxNonActiveRevisions: 0,
      },
    },
  });
  ({ api, gateway, scaler, redis, fleet } = cluster);
  agent = cluster.agents[0]!;
});

afterAll(() => cluster?.stop());

async function patchTraffic(name: string, traffic: unknown[]) {
  const r = await api.call(
    "PATCH",
    api.ns("services", name),
    JSON.stringify({ spec: { traffic } }),
    {
      "content-type": "application/merge-patch+json",
    },
  );
  expect(r.status).toBe(200);
  return r.json;
}

async function revision(name: string) {
  return (await api.call("GET", api.ns("revisions", name))).json;
}

const ready = (obj: { status?: { conditions?: { type: string; status: string }[] } }) =>
  obj.status?.conditions?.find((c) => c.type === "Ready")?.status;

describe("walkthrough routing", () => {
  const hello = serviceHost("hello");
  const canary = serviceHost("hello", "canary");

  it("publishes hello's host once hello-00001 is ready, and the gateway serves it", async () => {
    const r = await api.call("POST", api.ns("services"), workerService("hello"));
    expect(r.status).toBe(201);
    await waitRouted(redis, prefix, gateway, hello, (t) => t[0] === "hello-00001:100");
    expect(await routingSummary(redis, prefix)).toEqual({ [hello]: ["hello-00001:100"] });
    const answer = await hit(gateway.url, hello);
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("Hello World! (hello-00001)");
    const route = (await api.call("GET", api.ns("routes", "hello"))).json;
    expect(route.status.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: true, percent: 100 },
    ]);
    expect(ready(route)).toBe("True");
  });

  it("pinning to hello-00001 and minting hello-00002 keeps all traffic on hello-00001", async () => {
    await patchTraffic("hello", [{ revisionName: "hello-00001", percent: 100 }]);
    // Read-modify-write as clients do: the scaler's status writes move the
    // resourceVersion too, so a 409 means read again and retry (as `skiff` does).
    let r = { status: 409 };
    for (let attempt = 0; attempt < 5 && r.status === 409; attempt++) {
      const svc = (await api.call("GET", api.ns("services", "hello"))).json;
      svc.spec.template.spec.worker.env = [{ name: "TARGET", value: "Knative" }];
      r = await api.call("PUT", api.ns("services", "hello"), {
        apiVersion: svc.apiVersion,
        kind: svc.kind,
        metadata: { name: "hello", resourceVersion: svc.metadata.resourceVersion },
        spec: svc.spec,
      });
    }
    expect(r.status).toBe(200);
    // hello-00002 comes up once (initial scale) and becomes Ready, but takes no traffic.
    await waitFor("hello-00002 ready", async () => ready(await revision("hello-00002")) === "True");
    await scaler.resyncNow();
    expect(await routingSummary(redis, prefix)).toEqual({ [hello]: ["hello-00001:100"] });
    expect((await hit(gateway.url, hello)).body).toBe("Hello World! (hello-00001)");
  });

  it("a 50/50 split between hello-00001 and @latest publishes both at 50", async () => {
    await patchTraffic("hello", [
      { revisionName: "hello-00001", percent: 50 },
      { latestRevision: true, percent: 50 },
    ]);
    await waitRouted(redis, prefix, gateway, hello, (t) => t.length === 2);
    expect(await routingSummary(redis, prefix)).toEqual({
      [hello]: ["hello-00001:50", "hello-00002:50"],
    });
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 2; i++) seen.add((await hit(gateway.url, hello)).body);
    expect(seen).toEqual(new Set(["Hello World! (hello-00001)", "Hello Knative! (hello-00002)"]));
  });

  it("tagging hello-00002 as canary adds its own host at 100%, with the tag URL in status", async () => {
    const svc = await patchTraffic("hello", [
      { revisionName: "hello-00001", percent: 50 },
      { latestRevision: true, percent: 50 },
      { revisionName: "hello-00002", percent: 0, tag: "canary" },
    ]);
    expect(svc.status.traffic).toContainEqual({
      revisionName: "hello-00002",
      latestRevision: false,
      percent: 0,
      tag: "canary",
      url: `http://${canary}`,
    });
    await waitRouted(redis, prefix, gateway, canary);
    expect(await routingSummary(redis, prefix)).toEqual({
      [hello]: ["hello-00001:50", "hello-00002:50"],
      [canary]: ["hello-00002:100"],
    });
    expect((await hit(gateway.url, canary)).body).toBe("Hello Knative! (hello-00002)");
  });
});

describe("a revision that never becomes ready", () => {
  it("takes no @latest traffic (missing image) and the previous revision keeps serving", async () => {
    expect((await api.call("POST", api.ns("services"), workerService("stable"))).status).toBe(201);
    const host = serviceHost("stable");
    await waitRouted(redis, prefix, gateway, host);

    const svc = (await api.call("GET", api.ns("services", "stable"))).json;
    const r = await api.call("PUT", api.ns("services", "stable"), {
      apiVersion: svc.apiVersion,
      kind: svc.kind,
      metadata: { name: "stable", resourceVersion: svc.metadata.resourceVersion },
      spec: {
        template: { spec: { timeoutSeconds: 30, containers: [{ image: missingImage() }] } },
        traffic: [{ latestRevision: true, percent: 100 }],
      },
    });
    expect(r.status).toBe(200);
    const failed = await waitFor("stable-00002 failed", async () => {
      const rev = await revision("stable-00002");
      const c = rev.status?.conditions?.find((x: { type: string }) => x.type === "Ready");
      return c?.status === "False" ? c : undefined;
    });
    expect(failed.reason).toBe("ImageNotFound");
    await scaler.resyncNow();
    expect(await routingSummary(redis, prefix)).toMatchObject({ [host]: ["stable-00001:100"] });
    const answer = await hit(gateway.url, host);
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("Hello World! (stable-00001)");
    const service = (await api.call("GET", api.ns("services", "stable"))).json;
    expect(service.status.latestReadyRevisionName).toBe("stable-00001");
    expect(service.status.latestCreatedRevisionName).toBe("stable-00002");
  });

  it("a route pinned to it keeps its previous tables and says why it is not ready", async () => {
    await patchTraffic("stable", [{ revisionName: "stable-00002", percent: 100 }]);
    await scaler.resyncNow();
    const host = serviceHost("stable");
    expect((await routingSummary(redis, prefix))[host]).toEqual(["stable-00001:100"]);
    const route = (await api.call("GET", api.ns("routes", "stable"))).json;
    expect(ready(route)).not.toBe("True");
    expect((await hit(gateway.url, host)).body).toBe("Hello World! (stable-00001)");
  });
});

const desiredOf = async (rev: string) =>
  (await fleet.readDesired(agent.agent.id)).filter((d) => d.revision === rev);

describe("deleting a Service", () => {
  it("removes every host its Route had, and its instances", async () => {
    expect((await api.call("POST", api.ns("services"), workerService("gone"))).status).toBe(201);
    await waitRouted(redis, prefix, gateway, serviceHost("gone"));
    expect(await desiredOf("gone-00001")).toHaveLength(1);
    expect((await api.call("DELETE", api.ns("services", "gone"))).status).toBe(200);
    await waitFor(
      "gone unrouted",
      async () => !(await routingSummary(redis, prefix))[serviceHost("gone")],
    );
    await gateway.resync();
    expect((await hit(gateway.url, serviceHost("gone"))).status).toBe(404);
    await waitFor(
      "gone-00001 instances removed",
      async () => (await desiredOf("gone-00001")).length === 0,
    );
  });
});

describe("what the scaler cannot do shows on the revision", () => {
  it("instances that fit on no agent: ResourcesAvailable False, reason InsufficientCapacity", async () => {
    const body = {
      apiVersion: "serving.knative.dev/v1",
      kind: "Service",
      metadata: { name: "huge" },
      spec: {
        template: {
          spec: {
            containers: [{ image: missingImage(), resources: { requests: { cpu: "500" } } }],
          },
        },
      },
    };
    const created = await api.call("POST", api.ns("services"), body);
    expect(created.status, created.text).toBe(201);
    const cond = await waitFor("huge-00001 unplaceable", async () => {
      const c = (await revision("huge-00001")).status?.conditions?.find(
        (x: { type: string }) => x.type === "ResourcesAvailable",
      );
      return c?.status === "False" ? c : undefined;
    });
    expect(cond.reason).toBe("InsufficientCapacity");
    expect(cond.message).toMatch(/could not be placed: no agent has room \(routes-agent: cpu/);
    expect(ready(await revision("huge-00001"))).toBe("False");
    expect(await desiredOf("huge-00001")).toEqual([]);
    // A steady state, not news on every pass: logged once however many passes.
    for (let i = 0; i < 5; i++) await scaler.tickNow();
    const logged = scalerLines.filter(
      (l) => l.includes("huge-00001") && l.includes("could not be placed"),
    );
    expect(logged).toHaveLength(1);
  });

  it("annotations that no longer parse (the cluster's max-scale limit is 10): a warning, scaling goes on", async () => {
    const body = workerService("capped", {
      annotations: { "autoscaling.knative.dev/max-scale": "50" },
    });
    expect((await api.call("POST", api.ns("services"), body)).status).toBe(201);
    const cond = await waitFor("capped-00001 warned", async () => {
      const rev = await revision("capped-00001");
      return rev.status?.conditions?.find((x: { type: string }) => x.type === "ScalingConfigured");
    });
    expect(cond).toMatchObject({ status: "False", severity: "Warning" });
    expect(cond.message).toMatch(/max-scale.*10/);
    await waitRouted(redis, prefix, gateway, serviceHost("capped"));
    expect((await hit(gateway.url, serviceHost("capped"))).body).toBe(
      "Hello World! (capped-00001)",
    );
  });
});

describe("revision GC", () => {
  it("deletes revisions nothing routes, keeping the latest, routed and no-gc ones", async () => {
    expect((await api.call("POST", api.ns("services"), workerService("gc"))).status).toBe(201);
    for (const [target, annotations] of [
      ["two", { "serving.knative.dev/no-gc": "true" }],
      ["three", undefined],
    ] as const) {
      const next = workerService("gc", { target, ...(annotations ? { annotations } : {}) });
      // Read-modify-write as any client must: the scaler and agents write the
      // Service's status meanwhile, so a stale resourceVersion gets 409: read again.
      const r = await waitFor("gc updated", async () => {
        const svc = (await api.call("GET", api.ns("services", "gc"))).json;
        const put = await api.call("PUT", api.ns("services", "gc"), {
          ...next,
          metadata: { name: "gc", resourceVersion: svc.metadata.resourceVersion },
        });
        return put.status === 409 ? undefined : put;
      });
      expect(r.status, r.text).toBe(200);
    }
    await waitFor("gc-00003 routed", async () => {
      return (await routingSummary(redis, prefix))[serviceHost("gc")]?.[0] === "gc-00003:100";
    });
    await scaler.resyncNow();
    await scaler.collectNow();
    const names = (await api.call("GET", api.ns("revisions"))).json.items
      .map((x: { metadata: { name: string } }) => x.metadata.name)
      .filter((n: string) => n.startsWith("gc-"));
    expect(names.sort()).toEqual(["gc-00002", "gc-00003"]);
    // Other services' routed revisions survived the same pass.
    expect((await api.call("GET", api.ns("revisions", "hello-00001"))).status).toBe(200);
  });
});
