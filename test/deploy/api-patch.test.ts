/**
 * PATCH beyond merge patch: JSON Patch (RFC 6902, kubectl patch --type json)
 * and server-side apply (application/apply-patch+yaml, kubectl apply
 * --server-side): field managers, conflicts, force.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceBody, serviceYaml, startTestApi, type TestApi } from "../support/api.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({
    config: { api: { port: 0, token: "test-token-0123456789abcdef", bodyLimitBytes: 64 * 1024 } },
  });
});
afterAll(async () => {
  await api?.close();
});

function jsonPatch(name: string, ops: unknown) {
  return api.call("PATCH", api.ns("services", name), JSON.stringify(ops), {
    "content-type": "application/json-patch+json",
  });
}

function apply(name: string, body: unknown, query = "fieldManager=alice") {
  return api.call("PATCH", `${api.ns("services", name)}?${query}`, JSON.stringify(body), {
    "content-type": "application/apply-patch+yaml",
  });
}

const ENV = "/spec/template/spec/containers/0/env/0/value";

describe("JSON Patch (application/json-patch+json)", () => {
  beforeAll(async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("jp"))).status).toBe(201);
  });

  it("replace, add and test apply in order: a new revision with the patched template", async () => {
    const r = await jsonPatch("jp", [
      { op: "test", path: "/status/latestCreatedRevisionName", value: "jp-00001" },
      { op: "replace", path: ENV, value: "Patched" },
      { op: "add", path: "/metadata/labels", value: { team: "a" } },
    ]);
    expect(r.status, r.text).toBe(200);
    expect(r.json.spec.template.spec.containers[0].env[0].value).toBe("Patched");
    expect(r.json.metadata.labels).toEqual({ team: "a" });
    expect(r.json.status.latestCreatedRevisionName).toBe("jp-00002");
  });

  it("a path that does not exist is a 422 naming the operation and path; nothing changes", async () => {
    const before = (await api.call("GET", api.ns("services", "jp"))).json;
    const r = await jsonPatch("jp", [
      { op: "replace", path: ENV, value: "Never" },
      { op: "replace", path: "/spec/template/spec/nope/x", value: 1 },
    ]);
    expect(r.status).toBe(422);
    expect(r.json.reason).toBe("Invalid");
    expect(r.json.message).toMatch(
      /json patch operation 1 \(replace \/spec\/template\/spec\/nope\/x\) does not apply: the path does not exist/,
    );
    const after = (await api.call("GET", api.ns("services", "jp"))).json;
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
  });

  it("a failed test is a 422 and writes nothing", async () => {
    const r = await jsonPatch("jp", [
      { op: "test", path: ENV, value: "World" },
      { op: "replace", path: ENV, value: "Never" },
    ]);
    expect(r.status).toBe(422);
    expect(r.json.message).toMatch(/operation 0 \(test .*\) does not apply: the value at the path/);
  });

  it("a malformed patch is a 400: not a list, an unknown op, a missing value, a bad pointer", async () => {
    const cases: [unknown, RegExp][] = [
      [{ op: "replace" }, /a json patch .* is a list of operations/],
      [[{ op: "frobnicate", path: "/spec" }], /operation 0 is malformed: "op" must be one of/],
      [[{ op: "replace", path: ENV }], /operation 0 is malformed: "replace" needs "value"/],
      [[{ op: "copy", path: "/spec/x" }], /"copy" needs "from"/],
      [[{ op: "replace", path: "spec", value: 1 }], /operation 0 \(replace spec\) is malformed/],
    ];
    for (const [ops, message] of cases) {
      const r = await jsonPatch("jp", ops);
      expect(r.status, JSON.stringify(ops)).toBe(400);
      expect(r.json.kind).toBe("Status");
      expect(r.json.message).toMatch(message);
    }
  });

  it("the patched object is validated like any write (a 422 naming the field)", async () => {
    const r = await jsonPatch("jp", [
      { op: "replace", path: "/spec/template/spec/containers/0/image", value: 42 },
    ]);
    expect(r.status).toBe(422);
    expect(r.json.details.causes[0].field).toBe("spec.template.spec.containers[0].image");
  });

  it("__proto__ paths are refused (no prototype pollution)", async () => {
    const r = await jsonPatch("jp", [{ op: "add", path: "/__proto__/polluted", value: "yes" }]);
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/__proto__/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("copies that would grow the object past the body limit are refused (doubling bomb)", async () => {
    const ops = Array.from({ length: 40 }, () => ({
      op: "copy",
      from: "/spec/template",
      path: "/spec/template/metadata/annotations",
    }));
    const r = await jsonPatch("jp", ops);
    expect(r.status).toBe(413);
    expect(r.json.message).toMatch(/copies more than 65536 bytes/);
  });

  it("a JSON Patch of a missing object is a 404; on POST the type is a 415", async () => {
    expect((await jsonPatch("absent", [{ op: "remove", path: "/metadata/labels" }])).status).toBe(
      404,
    );
    const r = await api.call("POST", api.ns("services"), "[]", {
      "content-type": "application/json-patch+json",
    });
    expect(r.status).toBe(415);
  });
});

describe("server-side apply (application/apply-patch+yaml)", () => {
  it("creates a missing object and records the manager's fields", async () => {
    const r = await apply("ssa", serviceBody("ssa"));
    expect(r.status, r.text).toBe(201);
    const [entry, ...rest] = r.json.metadata.managedFields;
    expect(rest).toEqual([]);
    expect(entry).toMatchObject({
      manager: "alice",
      operation: "Apply",
      apiVersion: "serving.knative.dev/v1",
      fieldsType: "FieldsV1",
    });
    expect(entry.fieldsV1).toEqual({
      "f:spec": { "f:template": { "f:spec": { "f:containers": {} } } },
    });
  });

  it("YAML bodies apply too, and a re-apply of the same configuration changes nothing", async () => {
    const yaml = serviceYaml("ssa");
    const r = await api.call("PATCH", `${api.ns("services", "ssa")}?fieldManager=alice`, yaml, {
      "content-type": "application/apply-patch+yaml",
    });
    expect(r.status, r.text).toBe(200);
    expect(r.json.metadata.generation).toBe(1);
    expect(r.json.status.latestCreatedRevisionName).toBe("ssa-00001");
  });

  it("another manager's fields merge in; the first manager's stay", async () => {
    const r = await apply(
      "ssa",
      {
        apiVersion: "serving.knative.dev/v1",
        kind: "Service",
        metadata: { name: "ssa", labels: { team: "b" } },
      },
      "fieldManager=bob",
    );
    expect(r.status, r.text).toBe(200);
    expect(r.json.metadata.labels).toEqual({ team: "b" });
    expect(r.json.spec.template.spec.containers[0].image).toBe(
      "ghcr.io/knative/helloworld-go:latest",
    );
    expect(r.json.metadata.managedFields.map((e: { manager: string }) => e.manager)).toEqual([
      "alice",
      "bob",
    ]);
  });

  it("a field another manager owns with a different value is a 409 naming it and the manager", async () => {
    const body = serviceBody("ssa", { env: { TARGET: "Bob" } });
    const r = await apply("ssa", body, "fieldManager=bob");
    expect(r.status).toBe(409);
    expect(r.json.reason).toBe("Conflict");
    expect(r.json.message).toMatch(
      /^Apply failed with 1 conflict: conflict with "alice": \.spec\.template\.spec\.containers/,
    );
    expect(r.json.details.causes).toEqual([
      {
        reason: "FieldManagerConflict",
        message: 'conflict with "alice"',
        field: ".spec.template.spec.containers",
      },
    ]);
    const svc = (await api.call("GET", api.ns("services", "ssa"))).json;
    expect(svc.spec.template.spec.containers[0].env[0].value).toBe("World");
  });

  it("the same value is shared ownership, not a conflict", async () => {
    const r = await apply("ssa", serviceBody("ssa"), "fieldManager=carol");
    expect(r.status, r.text).toBe(200);
    expect(r.json.metadata.managedFields.map((e: { manager: string }) => e.manager)).toEqual([
      "alice",
      "bob",
      "carol",
    ]);
  });

  it("force=true takes the field over from every other owner", async () => {
    const body = serviceBody("ssa", { env: { TARGET: "Bob" } });
    const r = await apply("ssa", body, "fieldManager=bob&force=true");
    expect(r.status, r.text).toBe(200);
    expect(r.json.spec.template.spec.containers[0].env[0].value).toBe("Bob");
    const managers = Object.fromEntries(
      r.json.metadata.managedFields.map((e: { manager: string; fieldsV1: unknown }) => [
        e.manager,
        e.fieldsV1,
      ]),
    );
    // alice and carol owned only the containers: they are gone from the list.
    expect(Object.keys(managers)).toEqual(["bob"]);
    expect(managers.bob).toEqual({
      "f:spec": { "f:template": { "f:spec": { "f:containers": {} } } },
    });
  });

  it("a field its manager no longer applies is removed", async () => {
    const body = serviceBody("ssa", { env: { TARGET: "Bob" } });
    const r = await apply("ssa", body, "fieldManager=bob");
    expect(r.status, r.text).toBe(200);
    expect(r.json.metadata.labels).toBeUndefined();
  });

  it("fieldManager is required, force only with apply, and the result is validated", async () => {
    const none = await apply("ssa", serviceBody("ssa"), "");
    expect(none.status).toBe(400);
    expect(none.json.message).toMatch(/fieldManager is required/);
    const force = await api.call(
      "PATCH",
      `${api.ns("services", "ssa")}?force=true`,
      JSON.stringify({ metadata: { labels: { a: "b" } } }),
      { "content-type": "application/merge-patch+json" },
    );
    expect(force.status).toBe(400);
    const invalid = await apply(
      "ssa",
      { apiVersion: "serving.knative.dev/v1", kind: "Service", spec: { template: { bogus: 1 } } },
      "fieldManager=bob",
    );
    expect(invalid.status).toBe(422);
    expect(invalid.text).toMatch(/bogus/);
  });

  it("an apply naming more than 1000 fields is refused before any work (ownership sets stay small)", async () => {
    const labels = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`k${i}`, "v"]));
    const r = await apply(
      "ssa",
      { apiVersion: "serving.knative.dev/v1", kind: "Service", metadata: { name: "ssa", labels } },
      "fieldManager=bob",
    );
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/sets 1001 fields; at most 1000/);
  });

  it("dryRun=All applies nothing", async () => {
    const r = await apply("ssa-dry", serviceBody("ssa-dry"), "fieldManager=alice&dryRun=All");
    expect(r.status).toBe(201);
    expect((await api.call("GET", api.ns("services", "ssa-dry"))).status).toBe(404);
  });
});
