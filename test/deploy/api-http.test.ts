/** HTTP behaviour of the deploy API: auth, media types, limits, status codes. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE, serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { configurationManifest } from "../support/fixtures.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({
    config: { api: { port: 0, token: "test-token-0123456789abcdef", bodyLimitBytes: 64 * 1024 } },
  });
  const r = await api.call("POST", api.ns("services"), serviceBody("base"));
  expect(r.status).toBe(201);
});
afterAll(async () => {
  await api?.close();
});

function expectStatus(
  r: { status: number; json: { kind: string; code: number; reason: string; message: string } },
  code: number,
  reason: string,
  fragment: string | RegExp,
) {
  expect(r.status).toBe(code);
  expect(r.json.kind).toBe("Status");
  expect(r.json.code).toBe(code);
  expect(r.json.reason).toBe(reason);
  expect(r.json.message).toMatch(fragment);
}

describe("authentication", () => {
  it("a read without a token is 401 with a hint", async () => {
    const res = await fetch(new URL(api.ns("services"), api.url));
    const body = (await res.json()) as { message: string };
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/Bearer/);
    expect(body.message).toMatch(/missing bearer token/);
  });

  it("a write with a wrong token is 401 and stores nothing", async () => {
    const res = await fetch(new URL(api.ns("services"), api.url), {
      method: "POST",
      headers: { authorization: "Bearer not-the-token", "content-type": "application/json" },
      body: JSON.stringify(serviceBody("intruder")),
    });
    expect(res.status).toBe(401);
    expect((await api.call("GET", api.ns("services", "intruder"))).status).toBe(404);
  });

  it("health and readiness need no token", async () => {
    expect((await fetch(new URL("/healthz", api.url))).status).toBe(200);
    expect((await fetch(new URL("/readyz", api.url))).status).toBe(200);
  });

  it("/metrics serves Prometheus text with request counters, to the admin token only", async () => {
    const anonymous = await fetch(new URL("/metrics", api.url));
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toMatch(/skiff_api_http_requests_total/);
    const res = await fetch(new URL("/metrics", api.url), {
      headers: { authorization: `Bearer ${api.token}` },
    });
    const text = await res.text();
    expect(res.headers.get("content-type")).toMatch(/text\/plain/);
    expect(text).toMatch(/skiff_api_http_requests_total\{[^}]*code="201"/);
  });
});

describe("bodies", () => {
  it("YAML bodies are accepted as is", async () => {
    const yaml = [
      "apiVersion: serving.knative.dev/v1",
      "kind: Service",
      "metadata:",
      "  name: from-yaml",
      "spec:",
      "  template:",
      "    spec:",
      "      containers:",
      "        - image: example/app:1",
    ].join("\n");
    const r = await api.call("POST", api.ns("services"), yaml, {
      "content-type": "application/yaml",
    });
    expect(r.status).toBe(201);
    expect(r.json.status.latestCreatedRevisionName).toBe("from-yaml-00001");
  });

  it("responses come as YAML when asked", async () => {
    const r = await api.call("GET", api.ns("services", "base"), undefined, {
      accept: "application/yaml",
    });
    expect(r.headers.get("content-type")).toMatch(/yaml/);
    expect(r.text).toMatch(/^apiVersion: serving.knative.dev\/v1/m);
  });

  it("a missing Content-Type is 415", async () => {
    const r = await api.call("POST", api.ns("services"), JSON.stringify(serviceBody("x1")), {});
    expectStatus(r, 415, "UnsupportedMediaType", /missing Content-Type/);
  });

  it("an unsupported Content-Type is 415 naming the accepted ones", async () => {
    const r = await api.call("POST", api.ns("services"), "a=b", {
      "content-type": "application/x-www-form-urlencoded",
    });
    expectStatus(r, 415, "UnsupportedMediaType", /application\/json or application\/yaml/);
  });

  it("malformed JSON is 400", async () => {
    const r = await api.call("POST", api.ns("services"), "{not json", {
      "content-type": "application/json",
    });
    expectStatus(r, 400, "BadRequest", /not valid JSON/);
  });

  it("several YAML documents in one request are 400", async () => {
    const r = await api.call("POST", api.ns("services"), "a: 1\n---\nb: 2\n", {
      "content-type": "application/yaml",
    });
    expectStatus(r, 400, "BadRequest", /2 YAML documents/);
  });

  it("a body that is not an object is 400", async () => {
    const r = await api.call("POST", api.ns("services"), "[1,2]", {
      "content-type": "application/json",
    });
    expectStatus(r, 400, "BadRequest", /one object/);
  });

  it("a body over the limit is 413", async () => {
    const big = serviceBody("big", { env: { PAD: "x".repeat(70 * 1024) } });
    const r = await api.call("POST", api.ns("services"), big);
    expectStatus(r, 413, "RequestEntityTooLarge", /limit/);
    expect((await api.call("GET", api.ns("services", "big"))).status).toBe(404);
  });
});

describe("status codes", () => {
  it("an unknown object is 404", async () => {
    const r = await api.call("GET", api.ns("services", "nope"));
    expectStatus(r, 404, "NotFound", /services "nope" not found/);
  });

  it("an unknown resource kind is 404", async () => {
    const r = await api.call("GET", `${BASE}/namespaces/default/widgets`);
    expectStatus(r, 404, "NotFound", /not one of services, configurations, revisions, routes/);
  });

  it("replacing a service that does not exist is 404", async () => {
    const r = await api.call("PUT", api.ns("services", "ghost"), serviceBody("ghost"));
    expectStatus(r, 404, "NotFound", /create it with POST/);
  });

  it("creating an existing service is 409 AlreadyExists", async () => {
    const r = await api.call("POST", api.ns("services"), serviceBody("base"));
    expectStatus(r, 409, "AlreadyExists", /already exists/);
  });

  it("a PUT with a stale resourceVersion is 409 Conflict", async () => {
    const current = (await api.call("GET", api.ns("services", "base"))).json;
    const body = serviceBody("base", { env: { TARGET: "first" } });
    const first = await api.call("PUT", api.ns("services", "base"), {
      ...body,
      metadata: { name: "base", resourceVersion: current.metadata.resourceVersion },
    });
    expect(first.status).toBe(200);
    const second = await api.call("PUT", api.ns("services", "base"), {
      ...serviceBody("base", { env: { TARGET: "second" } }),
      metadata: { name: "base", resourceVersion: current.metadata.resourceVersion },
    });
    expectStatus(second, 409, "Conflict", /has been modified/);
    const now = (await api.call("GET", api.ns("services", "base"))).json;
    expect(now.spec.template.spec.containers[0].env[0].value).toBe("first");
  });

  it("writing a service's route is 403: it changes through its service", async () => {
    const r = await api.call("PUT", api.ns("routes", "base"), { spec: { traffic: [] } });
    expectStatus(r, 403, "Forbidden", /owned by Service "base"/);
  });

  it("creating a revision directly is 403", async () => {
    const r = await api.call("POST", api.ns("revisions"), { metadata: { name: "base-99999" } });
    expectStatus(r, 403, "Forbidden", /immutable/);
  });

  it("writing a service-owned configuration is 403", async () => {
    const r = await api.call(
      "PUT",
      api.ns("configurations", "base"),
      configurationManifest("base", { image: "example/other" }),
    );
    expectStatus(r, 403, "Forbidden", /owned by Service "base"/);
  });

  it("a name in the body that differs from the URL is 422", async () => {
    const r = await api.call("PUT", api.ns("services", "base"), serviceBody("other"));
    expect(r.status).toBe(422);
    expect(r.json.details.causes[0].field).toBe("metadata.name");
  });

  it("dryRun=All validates and answers but stores nothing", async () => {
    const r = await api.call("POST", `${api.ns("services")}?dryRun=All`, serviceBody("dry"));
    expect(r.status).toBe(201);
    expect(r.json.status.latestCreatedRevisionName).toBe("dry-00001");
    expect((await api.call("GET", api.ns("services", "dry"))).status).toBe(404);
    expect((await api.call("GET", api.ns("revisions", "dry-00001"))).status).toBe(404);
  });

  it("lists across namespaces and by label selector", async () => {
    const other = await api.call(
      "POST",
      api.ns("services", undefined, "team-b"),
      serviceBody("base"),
    );
    expect(other.status).toBe(201);
    const all = await api.call("GET", `${BASE}/services`);
    const keys = all.json.items.map(
      (s: { metadata: { namespace: string; name: string } }) =>
        `${s.metadata.namespace}/${s.metadata.name}`,
    );
    expect(keys).toContain("default/base");
    expect(keys).toContain("team-b/base");
    const revs = await api.call(
      "GET",
      `${api.ns("revisions")}?labelSelector=serving.knative.dev/service=from-yaml`,
    );
    expect(revs.json.items.map((r: { metadata: { name: string } }) => r.metadata.name)).toEqual([
      "from-yaml-00001",
    ]);
  });
});

describe("deletes", () => {
  it("a routed revision cannot be deleted (409), an unrouted older one can", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("del"))).status).toBe(201);
    // hello-00002 becomes latest; pin traffic to 00001.
    const put = await api.call(
      "PUT",
      api.ns("services", "del"),
      serviceBody("del", {
        env: { TARGET: "v2" },
        traffic: [{ revisionName: "del-00001", percent: 100 }],
      }),
    );
    expect(put.status).toBe(200);
    const routed = await api.call("DELETE", api.ns("revisions", "del-00001"));
    expectStatus(routed, 409, "Conflict", /receives traffic from route "del"/);
    const latest = await api.call("DELETE", api.ns("revisions", "del-00002"));
    expectStatus(latest, 409, "Conflict", /latest revision/);
    // Move traffic to latest; then 00001 is neither routed nor latest.
    const moved = await api.call(
      "PUT",
      api.ns("services", "del"),
      serviceBody("del", { env: { TARGET: "v2" } }),
    );
    expect(moved.status).toBe(200);
    expect(moved.json.status.latestCreatedRevisionName).toBe("del-00002");
    const ok = await api.call("DELETE", api.ns("revisions", "del-00001"));
    expect(ok.status).toBe(200);
    expect((await api.call("GET", api.ns("revisions", "del-00001"))).status).toBe(404);
  });

  it("deleting a service removes its configuration, route and revisions", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("gone"))).status).toBe(201);
    expect((await api.call("DELETE", api.ns("services", "gone"))).status).toBe(200);
    for (const plural of ["services", "configurations", "routes"]) {
      expect((await api.call("GET", api.ns(plural, "gone"))).status).toBe(404);
    }
    expect((await api.call("GET", api.ns("revisions", "gone-00001"))).status).toBe(404);
  });

  it("deleting a service's route directly is 403", async () => {
    const r = await api.call("DELETE", api.ns("routes", "base"));
    expectStatus(r, 403, "Forbidden", /owned by Service "base"/);
  });
});
