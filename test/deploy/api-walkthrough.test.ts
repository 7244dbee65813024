/**
 * The seed walkthrough's control-plane half over raw HTTP: create, pin, new
 * revision, split, tag — each step checked in the stored objects.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceBody, startTestApi, type TestApi } from "../support/api.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  await api?.close();
});

async function getService(name: string) {
  const r = await api.call("GET", api.ns("services", name));
  expect(r.status).toBe(200);
  return r.json;
}

async function patchService(name: string, patch: unknown) {
  return api.call("PATCH", api.ns("services", name), JSON.stringify(patch), {
    "content-type": "application/merge-patch+json",
  });
}

describe("walkthrough over HTTP", () => {
  it("create makes revision hello-00001 with 100% to the latest revision", async () => {
    const r = await api.call("POST", api.ns("services"), serviceBody("hello"));
    expect(r.status).toBe(201);
    expect(r.json.metadata.generation).toBe(1);
    expect(r.json.status.latestCreatedRevisionName).toBe("hello-00001");
    expect(r.json.status.url).toBe("http://hello.default.localhost");
    expect(r.json.spec.traffic).toEqual([{ latestRevision: true, percent: 100 }]);
    const rev = await api.call("GET", api.ns("revisions", "hello-00001"));
    expect(rev.status).toBe(200);
    expect(rev.json.metadata.labels["serving.knative.dev/service"]).toBe("hello");
    expect(rev.json.spec.containers[0].env).toEqual([{ name: "TARGET", value: "World" }]);
    const route = await api.call("GET", api.ns("routes", "hello"));
    expect(route.json.spec.traffic).toEqual([
      { configurationName: "hello", latestRevision: true, percent: 100 },
    ]);
  });

  it("pinning traffic to hello-00001 changes the route but mints no revision", async () => {
    const r = await patchService("hello", {
      spec: { traffic: [{ revisionName: "hello-00001", percent: 100 }] },
    });
    expect(r.status).toBe(200);
    expect(r.json.metadata.generation).toBe(2);
    expect(r.json.status.latestCreatedRevisionName).toBe("hello-00001");
    const revs = await api.call("GET", api.ns("revisions"));
    expect(revs.json.items.map((x: { metadata: { name: string } }) => x.metadata.name)).toEqual([
      "hello-00001",
    ]);
  });

  it("changing the env mints hello-00002 while traffic stays pinned to hello-00001", async () => {
    const svc = await getService("hello");
    svc.spec.template.spec.containers[0].env = [{ name: "TARGET", value: "Knative" }];
    const r = await api.call("PUT", api.ns("services", "hello"), {
      apiVersion: svc.apiVersion,
      kind: svc.kind,
      metadata: { name: "hello", resourceVersion: svc.metadata.resourceVersion },
      spec: svc.spec,
    });
    expect(r.status).toBe(200);
    expect(r.json.status.latestCreatedRevisionName).toBe("hello-00002");
    expect(r.json.spec.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
    expect(r.json.status.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
    const rev2 = await api.call("GET", api.ns("revisions", "hello-00002"));
    expect(rev2.json.spec.containers[0].env).toEqual([{ name: "TARGET", value: "Knative" }]);
  });

  it("a 50/50 split between hello-00001 and @latest is stored as given", async () => {
    const r = await patchService("hello", {
      spec: {
        traffic: [
          { revisionName: "hello-00001", percent: 50 },
          { latestRevision: true, percent: 50 },
        ],
      },
    });
    expect(r.status).toBe(200);
    expect(r.json.spec.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 50 },
      { latestRevision: true, percent: 50 },
    ]);
    expect(r.json.status.latestCreatedRevisionName).toBe("hello-00002");
  });

  it("tagging hello-00002 as canary puts the tag and its URL in the route", async () => {
    const r = await patchService("hello", {
      spec: {
        traffic: [
          { revisionName: "hello-00001", percent: 50 },
          { latestRevision: true, percent: 50 },
          { revisionName: "hello-00002", percent: 0, tag: "canary" },
        ],
      },
    });
    expect(r.status).toBe(200);
    const route = await api.call("GET", api.ns("routes", "hello"));
    const canary = route.json.status.traffic.find((t: { tag?: string }) => t.tag === "canary");
    expect(canary).toMatchObject({
      revisionName: "hello-00002",
      percent: 0,
      url: "http://canary-hello.default.localhost",
    });
    const svc = await getService("hello");
    expect(svc.status.traffic).toEqual(route.json.status.traffic);
  });
});
