/**
 * Knative Serving's conformance tests (test/conformance/api/v1), the parts a
 * deploy API answers on its own: each test is named after the Knative test
 * it follows. Serving through the gateway is test/e2e/conformance.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken, serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { configurationManifest } from "../support/fixtures.ts";

const CREATOR = "serving.knative.dev/creator";
const MODIFIER = "serving.knative.dev/lastModifier";
const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
const MERGE = { "content-type": "application/merge-patch+json" };

let api: TestApi;
/** A namespaced token "alice" (edit in default), calling the same API. */
let alice: TestApi["call"];

beforeAll(async () => {
  api = await startTestApi();
  const secret = await createToken(api, "alice", "edit", ["default"]);
  alice = async (method, path, body, headers = {}) => {
    const h = { authorization: `Bearer ${secret}`, ...headers };
    const payload = typeof body === "string" ? body : JSON.stringify(body);
    const res = await fetch(new URL(path, api.url), {
      method,
      headers: { "content-type": "application/json", ...h },
      ...(body === undefined ? {} : { body: payload }),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, headers: res.headers, text, json };
  };
});
afterAll(async () => {
  await api?.close();
});

async function get(plural: string, name: string) {
  const r = await api.call("GET", api.ns(plural, name));
  expect(r.status, r.text).toBe(200);
  return r.json;
}

/** Knative's validateAnnotations: creator and lastModifier (and `extra`) on Service, Route and Configuration. */
async function annotationsOf(name: string) {
  const out: Record<string, Record<string, string>> = {};
  for (const plural of ["services", "configurations", "routes"]) {
    out[plural] = (await get(plural, name)).metadata.annotations ?? {};
  }
  return out;
}

describe("user-info annotations (TestServiceCreateAndUpdate's validateAnnotations)", () => {
  it("TestServiceCreateAndUpdate: creator and lastModifier on the Service, its Configuration and Route; a spec change moves lastModifier", async () => {
    const created = await api.call("POST", api.ns("services"), serviceBody("ui"));
    expect(created.status, created.text).toBe(201);
    for (const [plural, anns] of Object.entries(await annotationsOf("ui"))) {
      expect(anns[CREATOR], plural).toBe("skiff:admin");
      expect(anns[MODIFIER], plural).toBe("skiff:admin");
    }
    expect((await get("revisions", "ui-00001")).metadata.annotations[CREATOR]).toBe("skiff:admin");

    // Another token changes the template: it is the last modifier, not the creator.
    const changed = await alice(
      "PATCH",
      api.ns("services", "ui"),
      { spec: { template: { spec: { containers: [{ image: "example/ui:2" }] } } } },
      MERGE,
    );
    expect(changed.status, changed.text).toBe(200);
    for (const [plural, anns] of Object.entries(await annotationsOf("ui"))) {
      expect(anns[CREATOR], plural).toBe("skiff:admin");
      expect(anns[MODIFIER], plural).toBe("alice");
    }
    expect((await get("revisions", "ui-00002")).metadata.annotations[CREATOR]).toBe("alice");

    // Metadata alone (Knative: no spec change) leaves lastModifier as it was.
    const labelled = await api.call(
      "PATCH",
      api.ns("services", "ui"),
      { metadata: { labels: { team: "a" } } },
      MERGE,
    );
    expect(labelled.status, labelled.text).toBe(200);
    expect(labelled.json.metadata.annotations[MODIFIER]).toBe("alice");
  });

  it("TestServiceCreateAndUpdate: a client cannot forge them (creator is immutable, lastModifier follows the spec)", async () => {
    // On create the server's values win over the body's, as Knative's defaulting overwrites them.
    const body = serviceBody("forged");
    const forged = {
      ...body,
      metadata: { name: "forged", annotations: { [CREATOR]: "mallory", [MODIFIER]: "mallory" } },
    };
    const created = await alice("POST", api.ns("services"), forged);
    expect(created.status, created.text).toBe(201);
    expect(created.json.metadata.annotations[CREATOR]).toBe("alice");
    expect(created.json.metadata.annotations[MODIFIER]).toBe("alice");

    const creator = await alice(
      "PATCH",
      api.ns("services", "forged"),
      { metadata: { annotations: { [CREATOR]: "skiff:admin" } } },
      MERGE,
    );
    expect(creator.status, creator.text).toBe(422);
    expect(creator.json.details.causes[0].field).toBe(`metadata.annotations.${CREATOR}`);
    expect(creator.json.message).toMatch(/immutable/);

    const modifier = await alice(
      "PATCH",
      api.ns("services", "forged"),
      { metadata: { annotations: { [MODIFIER]: "skiff:admin" } } },
      MERGE,
    );
    expect(modifier.status, modifier.text).toBe(422);
    expect(modifier.json.details.causes[0].field).toBe(`metadata.annotations.${MODIFIER}`);

    // Removing them is a no-op (a PUT of a hand-written manifest keeps them).
    const current = await get("services", "forged");
    const put = await api.call("PUT", api.ns("services", "forged"), {
      ...serviceBody("forged", { env: { TARGET: "again" } }),
      metadata: { name: "forged", resourceVersion: current.metadata.resourceVersion },
    });
    expect(put.status, put.text).toBe(200);
    expect(put.json.metadata.annotations[CREATOR]).toBe("alice");
    expect(put.json.metadata.annotations[MODIFIER]).toBe("skiff:admin");
  });

  it("TestConfigurationCreateAndUpdate / TestRouteCreation: stand-alone Configurations and Routes carry them too", async () => {
    const config = await alice("POST", api.ns("configurations"), configurationManifest("solo"));
    expect(config.status, config.text).toBe(201);
    expect(config.json.metadata.annotations).toEqual({ [CREATOR]: "alice", [MODIFIER]: "alice" });
    const route = await api.call("POST", api.ns("routes"), {
      apiVersion: "serving.knative.dev/v1",
      kind: "Route",
      metadata: { name: "solo" },
      spec: { traffic: [{ configurationName: "solo", percent: 100 }] },
    });
    expect(route.status, route.text).toBe(201);
    expect(route.json.metadata.annotations).toEqual({
      [CREATOR]: "skiff:admin",
      [MODIFIER]: "skiff:admin",
    });
  });
});

describe("TestAnnotationPropagation", () => {
  it("Service annotations reach its Route and Configuration, and leave them when removed (kubectl's apply record stays on the Service)", async () => {
    const body = serviceBody("juicy");
    const created = await api.call("POST", api.ns("services"), {
      ...body,
      metadata: { name: "juicy", annotations: { [LAST_APPLIED]: "{}" } },
    });
    expect(created.status, created.text).toBe(201);
    const added = await api.call(
      "PATCH",
      api.ns("services", "juicy"),
      { metadata: { annotations: { juicy: "jamba" } } },
      MERGE,
    );
    expect(added.status, added.text).toBe(200);
    let anns = await annotationsOf("juicy");
    expect(anns.services).toMatchObject({ juicy: "jamba", [LAST_APPLIED]: "{}" });
    expect(anns.configurations?.juicy).toBe("jamba");
    expect(anns.routes?.juicy).toBe("jamba");
    expect(anns.configurations?.[LAST_APPLIED]).toBeUndefined();
    expect(anns.routes?.[LAST_APPLIED]).toBeUndefined();

    const removed = await api.call(
      "PATCH",
      api.ns("services", "juicy"),
      { metadata: { annotations: { juicy: null } } },
      MERGE,
    );
    expect(removed.status, removed.text).toBe(200);
    anns = await annotationsOf("juicy");
    for (const plural of ["services", "configurations", "routes"]) {
      expect(anns[plural]?.juicy, plural).toBeUndefined();
      expect(anns[plural]?.[CREATOR], plural).toBe("skiff:admin");
    }
  });
});

describe("metadata.generateName", () => {
  const named = (prefix: string) => new RegExp(`^${prefix}[a-z0-9]{5}$`);

  it("TestServiceGenerateName: the server completes the name; the Configuration and Route take it", async () => {
    const { metadata: _m, ...body } = serviceBody("x");
    const r = await api.call("POST", api.ns("services"), {
      ...body,
      metadata: { generateName: "gen-svc-" },
    });
    expect(r.status, r.text).toBe(201);
    const name = r.json.metadata.name as string;
    expect(name).toMatch(named("gen-svc-"));
    expect((await get("configurations", name)).metadata.name).toBe(name);
    expect((await get("routes", name)).metadata.name).toBe(name);
    expect(r.json.status.latestCreatedRevisionName).toBe(`${name}-00001`);
  });

  it("TestConfigurationGenerateName and TestRouteGenerateName", async () => {
    const { metadata: _m, ...config } = configurationManifest("x");
    const c = await api.call("POST", api.ns("configurations"), {
      ...config,
      metadata: { generateName: "gen-cfg-" },
    });
    expect(c.status, c.text).toBe(201);
    expect(c.json.metadata.name).toMatch(named("gen-cfg-"));
    const r = await api.call("POST", api.ns("routes"), {
      apiVersion: "serving.knative.dev/v1",
      kind: "Route",
      metadata: { generateName: "gen-rt-" },
      spec: { traffic: [{ configurationName: c.json.metadata.name, percent: 100 }] },
    });
    expect(r.status, r.text).toBe(201);
    expect(r.json.metadata.name).toMatch(named("gen-rt-"));
    expect(r.json.status.url).toBe(`http://${r.json.metadata.name}.default.localhost`);
  });
});

describe("Routes written directly (TestRouteCreation, BYO Route)", () => {
  it("TestRouteCreation: create, update and delete a Route over a Configuration's revisions", async () => {
    const config = await api.call("POST", api.ns("configurations"), configurationManifest("byo"));
    expect(config.status, config.text).toBe(201);
    const created = await api.call("POST", api.ns("routes"), {
      apiVersion: "serving.knative.dev/v1",
      kind: "Route",
      metadata: { name: "byo-route" },
      spec: { traffic: [{ configurationName: "byo", percent: 100 }] },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json.spec.traffic).toEqual([
      { configurationName: "byo", latestRevision: true, percent: 100 },
    ]);
    // Nothing is ready yet: Unknown, waiting for the configuration (Knative's RevisionMissing).
    const ready = created.json.status.conditions.find((c: { type: string }) => c.type === "Ready");
    expect(ready).toMatchObject({ status: "Unknown", reason: "RevisionMissing" });

    const current = await get("routes", "byo-route");
    const updated = await api.call("PUT", api.ns("routes", "byo-route"), {
      apiVersion: "serving.knative.dev/v1",
      kind: "Route",
      metadata: { name: "byo-route", resourceVersion: current.metadata.resourceVersion },
      spec: { traffic: [{ revisionName: "byo-00001", percent: 100, tag: "pinned" }] },
    });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.json.metadata.generation).toBe(2);
    // Knative's status form: no configurationName, a url per tagged target.
    expect(updated.json.status.traffic).toEqual([
      {
        tag: "pinned",
        revisionName: "byo-00001",
        latestRevision: false,
        percent: 100,
        url: "http://pinned-byo-route.default.localhost",
      },
    ]);

    // A Route's traffic is validated like a Service's, with configurationName allowed.
    const bad = await api.call("PUT", api.ns("routes", "byo-route"), {
      apiVersion: "serving.knative.dev/v1",
      kind: "Route",
      metadata: { name: "byo-route" },
      spec: { traffic: [{ configurationName: "byo", revisionName: "byo-00001", percent: 100 }] },
    });
    expect(bad.status).toBe(422);

    expect((await api.call("DELETE", api.ns("routes", "byo-route"))).status).toBe(200);
    expect((await api.call("GET", api.ns("routes", "byo-route"))).status).toBe(404);
  });

  it("a Service's own Route stays read-only, and a view token cannot write Routes", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("owned"))).status).toBe(201);
    const put = await api.call("PUT", api.ns("routes", "owned"), {
      metadata: { name: "owned" },
      spec: { traffic: [] },
    });
    expect(put.status).toBe(403);
    expect(put.json.message).toMatch(/owned by Service "owned"/);
    // The name is the Service's: a stand-alone Route cannot take it.
    const clash = await api.call("POST", api.ns("routes"), {
      metadata: { name: "owned" },
      spec: { traffic: [] },
    });
    expect(clash.status).toBe(409);
    const viewer = await createToken(api, "viewer", "view", ["default"]);
    const r = await fetch(new URL(api.ns("routes"), api.url), {
      method: "POST",
      headers: { authorization: `Bearer ${viewer}`, "content-type": "application/json" },
      body: JSON.stringify({ metadata: { name: "v" }, spec: { traffic: [] } }),
    });
    expect(r.status).toBe(403);
  });
});

describe("status.traffic as Knative reports it (TestServiceWithTrafficSplit)", () => {
  it("targets naming the same revision, tag and latestRevision merge; tagged targets get their url; no configurationName", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("split"))).status).toBe(201);
    const r = await api.call(
      "PATCH",
      api.ns("services", "split"),
      {
        spec: {
          traffic: [
            { revisionName: "split-00001", percent: 60 },
            { revisionName: "split-00001", percent: 40 },
            { revisionName: "split-00001", percent: 0, tag: "blue" },
          ],
        },
      },
      MERGE,
    );
    expect(r.status, r.text).toBe(200);
    expect(r.json.status.traffic).toEqual([
      { revisionName: "split-00001", latestRevision: false, percent: 100 },
      {
        tag: "blue",
        revisionName: "split-00001",
        latestRevision: false,
        percent: 0,
        url: "http://blue-split.default.localhost",
      },
    ]);
    expect((await get("routes", "split")).status.traffic).toEqual(r.json.status.traffic);
  });
});
