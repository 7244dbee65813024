/**
 * Kubernetes discovery, tables and OpenAPI on the deploy API, as a hostile
 * client sees them: what needs a token, and what a namespaced token learns.
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tlsMaterial } from "../../deploy/api/tls.ts";
import { createToken, serviceBody, startTestApi, type TestApi } from "../support/api.ts";

const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

let api: TestApi;
let teamToken: string;
beforeAll(async () => {
  api = await startTestApi();
  for (const ns of ["default", "secret-team"]) {
    const r = await api.call("POST", api.ns("services", undefined, ns), serviceBody("hello"));
    expect(r.status).toBe(201);
  }
  teamToken = await createToken(api, "team-a", "view", ["team-a"]);
});
afterAll(async () => {
  await api?.close();
});

async function get(path: string, token: string | undefined, accept = "application/json") {
  const headers: Record<string, string> = { accept };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(new URL(path, api.url), { headers });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  const json: any = await res.json();
  return { status: res.status, json };
}

describe("discovery", () => {
  it("/version is public; everything else needs a token, as on Kubernetes", async () => {
    expect((await get("/version", undefined)).json).toMatchObject({ major: "1", minor: "32" });
    for (const path of [
      "/api",
      "/api/v1",
      "/api/v1/namespaces",
      "/apis",
      "/apis/serving.knative.dev",
      "/apis/serving.knative.dev/v1",
      "/openapi/v2",
      "/openapi/v3",
    ]) {
      const r = await get(path, undefined);
      expect(r.status, path).toBe(401);
      expect(r.json.kind, path).toBe("Status");
    }
  });

  it("lists the group and its resources with Knative's names", async () => {
    const groups = await get("/apis", api.token);
    expect(groups.json.groups.map((g: { name: string }) => g.name)).toEqual([
      "serving.knative.dev",
    ]);
    const list = (await get("/apis/serving.knative.dev/v1", api.token)).json;
    const ksvc = list.resources.find((r: { name: string }) => r.name === "services");
    expect(ksvc).toMatchObject({
      kind: "Service",
      singularName: "service",
      namespaced: true,
      shortNames: ["kservice", "ksvc"],
      categories: ["all", "knative", "serving"],
    });
    expect(ksvc.verbs).toContain("watch");
  });

  it("a namespaced token sees only its own namespaces, and others' as not found", async () => {
    const admin = await get("/api/v1/namespaces", api.token);
    expect(admin.json.items.map((n: { metadata: { name: string } }) => n.metadata.name)).toEqual([
      "default",
      "secret-team",
    ]);
    const mine = await get("/api/v1/namespaces", teamToken, TABLE);
    expect(mine.json.kind).toBe("Table");
    expect(mine.json.rows.map((r: { cells: string[] }) => r.cells[0])).toEqual(["team-a"]);
    const other = await get("/api/v1/namespaces/secret-team", teamToken);
    expect(other.status).toBe(404);
    expect(JSON.stringify(other.json)).not.toContain("team-a");
  });
});

describe("namespaces as resources", () => {
  const create = (body: unknown, token = api.token, query = "") =>
    fetch(new URL(`/api/v1/namespaces${query}`, api.url), {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
    }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
  const ns = (name: unknown) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  const names = async () =>
    (await get("/api/v1/namespaces", api.token)).json.items.map(
      (n: { metadata: { name: string } }) => n.metadata.name,
    );

  it("the core v1 resource list offers create on namespaces", async () => {
    const list = (await get("/api/v1", api.token)).json;
    expect(list.resources).toEqual([
      expect.objectContaining({
        name: "namespaces",
        kind: "Namespace",
        namespaced: false,
        shortNames: ["ns"],
        verbs: ["create", "get", "list"],
      }),
    ]);
  });

  it("the admin creates a namespace, listed (and got) while empty; a second create is a 409", async () => {
    const r = await create(ns("created-empty"));
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ kind: "Namespace", metadata: { name: "created-empty" } });
    expect(r.json.metadata.creationTimestamp).toMatch(/Z$/);
    expect(await names()).toContain("created-empty");
    const one = await get("/api/v1/namespaces/created-empty", api.token);
    expect(one.json.metadata.uid).toBe(r.json.metadata.uid);
    const again = await create(ns("created-empty"));
    expect(again.status).toBe(409);
    expect(again.json.reason).toBe("AlreadyExists");
  });

  it("a namespaced token may not create one, even its own; a bad name is a 422; dryRun creates nothing", async () => {
    const refused = await create(ns("team-a"), teamToken);
    expect(refused.status).toBe(403);
    expect(refused.json.message).toMatch(/creating namespaces is forbidden/);
    const bad = await create(ns("Not_A_Label"));
    expect(bad.status).toBe(422);
    expect(bad.json.details.causes[0].field).toBe("metadata.name");
    const dry = await create(ns("dry-only"), api.token, "?dryRun=All");
    expect(dry.status).toBe(201);
    expect(await names()).not.toContain("dry-only");
  });
});

describe("namespaces in protobuf (what kubectl create ns sends)", () => {
  // Length-delimited field `n` (lengths below 128: one byte).
  const field = (n: number, bytes: number[]) => [(n << 3) | 2, bytes.length, ...bytes];
  const str = (s: string) => [...new TextEncoder().encode(s)];
  const post = (bytes: number[]) =>
    fetch(new URL("/api/v1/namespaces", api.url), {
      method: "POST",
      headers: {
        authorization: `Bearer ${api.token}`,
        "content-type": "application/vnd.kubernetes.protobuf",
      },
      body: new Uint8Array(bytes),
      // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
    }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
  const MAGIC = [0x6b, 0x38, 0x73, 0x00];

  it("a runtime.Unknown envelope holding a Namespace creates it", async () => {
    const typeMeta = field(1, [...field(1, str("v1")), ...field(2, str("Namespace"))]);
    const raw = field(2, field(1, field(1, str("from-protobuf"))));
    const r = await post([...MAGIC, ...typeMeta, ...raw]);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect(r.json.metadata.name).toBe("from-protobuf");
  });

  it("garbage, a missing envelope or a length past the end is a 400, never a crash", async () => {
    for (const bytes of [
      [1, 2, 3],
      [...MAGIC, 0x12, 0x7f, 1],
      [...MAGIC, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
      [...MAGIC, 0x0b],
    ]) {
      const r = await post(bytes);
      expect(r.status, JSON.stringify(bytes)).toBe(400);
      expect(r.json.message).toMatch(/the protobuf body is not a Namespace/);
    }
    // An envelope without a name: the name is required, as in JSON.
    expect((await post([...MAGIC])).status).toBe(422);
  });
});

describe("OpenAPI", () => {
  it("v3: an index, then the group's document with each kind's GVK, merge patch only", async () => {
    const index = (await get("/openapi/v3", api.token)).json;
    const url = index.paths["apis/serving.knative.dev/v1"].serverRelativeURL as string;
    const doc = (await get(url, api.token)).json;
    const svc = doc.components.schemas["dev.knative.serving.v1.Service"];
    expect(svc["x-kubernetes-group-version-kind"]).toEqual([
      { group: "serving.knative.dev", version: "v1", kind: "Service" },
    ]);
    const container =
      svc.properties.spec.properties.template.properties.spec.properties.containers.items;
    expect(container.required).toEqual(["image"]);
    expect(Object.keys(container.properties)).toContain("readinessProbe");
    const patch =
      doc.paths["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"].patch;
    expect(Object.keys(patch.requestBody.content)).toEqual([
      "application/merge-patch+json",
      "application/json-patch+json",
      "application/apply-patch+yaml",
    ]);
    expect(patch.parameters.map((p: { name: string }) => p.name)).toContain("fieldValidation");
  });

  it("v2: JSON for a client that accepts it, a 404 for one that wants protobuf only", async () => {
    const v2 = (await get("/openapi/v2", api.token)).json;
    expect(v2.swagger).toBe("2.0");
    expect(
      v2.definitions["dev.knative.serving.v1.Route"]["x-kubernetes-group-version-kind"],
    ).toEqual([{ group: "serving.knative.dev", version: "v1", kind: "Route" }]);
    const pb = await get(
      "/openapi/v2",
      api.token,
      "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    );
    expect(pb.status).toBe(404);
  });
});

describe("tables", () => {
  it("answer a Table with Knative's columns only when asked for one", async () => {
    const table = (await get(api.ns("services"), api.token, TABLE)).json;
    expect(table).toMatchObject({ kind: "Table", apiVersion: "meta.k8s.io/v1" });
    expect(table.columnDefinitions.map((c: { name: string }) => c.name)).toEqual([
      "Name",
      "URL",
      "LatestCreated",
      "LatestReady",
      "Ready",
      "Reason",
    ]);
    expect(table.rows[0].cells.slice(0, 3)).toEqual([
      "hello",
      "http://hello.default.localhost",
      "hello-00001",
    ]);
    expect(table.rows[0].object.kind).toBe("PartialObjectMetadata");
    expect((await get(api.ns("services"), api.token)).json.kind).toBe("ServiceList");
  });

  it("across namespaces hold only the rows of the token's namespaces", async () => {
    const all = await get("/apis/serving.knative.dev/v1/services", teamToken, TABLE);
    expect(all.status).toBe(200);
    expect(all.json.rows).toEqual([]);
  });
});

describe("field selectors", () => {
  it("pick objects by name and namespace in lists and watches, authorized as the namespace's path", async () => {
    const all = "/apis/serving.knative.dev/v1/services";
    const list = await get(`${all}?fieldSelector=metadata.namespace%3Dsecret-team`, api.token);
    expect(
      list.json.items.map((o: { metadata: { namespace: string } }) => o.metadata.namespace),
    ).toEqual(["secret-team"]);
    const theirs = await get(`${all}?fieldSelector=metadata.namespace%3Dsecret-team`, teamToken);
    expect(theirs.status).toBe(403);
    const abort = new AbortController();
    const res = await fetch(
      new URL(
        `${all}?watch=true&fieldSelector=metadata.name%3Dhello,metadata.namespace%3Dsecret-team`,
        api.url,
      ),
      { headers: { authorization: `Bearer ${api.token}` }, signal: abort.signal },
    );
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    abort.abort();
    const first = JSON.parse(new TextDecoder().decode(value).split("\n")[0]!);
    expect(first).toMatchObject({
      type: "ADDED",
      object: { metadata: { name: "hello", namespace: "secret-team" } },
    });
    expect((await get(`${all}?fieldSelector=spec.x%3Dy`, api.token)).status).toBe(400);
  });
});

describe("generated TLS material", () => {
  it("keeps the CA, renews the serving certificate when a listen name is missing, keys 0600", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-tls-"));
    try {
      const first = tlsMaterial({}, dir, "127.0.0.1");
      expect(statSync(join(dir, "ca.key")).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, "api.key")).mode & 0o777).toBe(0o600);
      const cert = new X509Certificate(first.cert);
      expect(cert.checkIssued(new X509Certificate(first.ca!))).toBe(true);
      expect(cert.checkHost("localhost")).toBe("localhost");
      expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
      expect(tlsMaterial({}, dir, "127.0.0.1").cert).toBe(first.cert);
      const moved = tlsMaterial({}, dir, "10.1.2.3");
      expect(moved.cert).not.toBe(first.cert);
      expect(moved.ca).toBe(first.ca);
      expect(new X509Certificate(moved.cert).checkIP("10.1.2.3")).toBe("10.1.2.3");
      expect(readFileSync(join(dir, "api.crt"), "utf8")).toBe(moved.cert);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
