/**
 * Per-namespace quotas (services, revisions kept, worker artifact bytes):
 * a clear 403 naming the quota, its limit and how to raise it; nothing
 * stored by a refused write; concurrent creates never overshoot.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { serviceManifest } from "../support/fixtures.ts";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi({
    config: {
      quotas: {
        services: 2,
        revisions: 3,
        artifactBytes: 12_000,
        namespaces: { roomy: { services: 4, revisions: 10 }, race: { services: 3 } },
      },
    },
  });
});
afterAll(async () => {
  await api?.close();
});

const workerService = (name: string, source: string) => serviceManifest(name, { worker: source });

const names = async (ns: string, plural = "services") =>
  (await api.call("GET", api.ns(plural, undefined, ns))).json.items.map(
    (o: { metadata: { name: string } }) => o.metadata.name,
  );

describe("quotas", () => {
  it("the services quota refuses the next create with a 403 naming it, its limit and how to raise it", async () => {
    for (const n of ["s1", "s2"]) {
      expect(
        (await api.call("POST", api.ns("services", undefined, "q1"), serviceBody(n))).status,
      ).toBe(201);
    }
    const r = await api.call("POST", api.ns("services", undefined, "q1"), serviceBody("s3"));
    expect(r.status).toBe(403);
    expect(r.json).toMatchObject({ kind: "Status", reason: "Forbidden", code: 403 });
    expect(r.json.message).toMatch(
      /exceeded quota services in namespace "q1": requested 1, used 2, limited to 2; .*raise quotas\.services \(or quotas\.namespaces\.q1\.services\) in the cluster config/,
    );
    expect(await names("q1")).toEqual(["s1", "s2"]);
    // Updating an existing service is not a new one.
    const up = await api.call(
      "PUT",
      api.ns("services", "s1", "q1"),
      serviceBody("s1", { env: { A: "b" } }),
    );
    expect(up.status).toBe(200);
  });

  it("a namespace override raises one namespace's quota", async () => {
    for (const n of ["a", "b", "c", "d"]) {
      const r = await api.call("POST", api.ns("services", undefined, "roomy"), serviceBody(n));
      expect(r.status, r.text).toBe(201);
    }
    const r = await api.call("POST", api.ns("services", undefined, "roomy"), serviceBody("e"));
    expect(r.status).toBe(403);
    expect(r.json.message).toMatch(/limited to 4/);
  });

  it("the revisions quota refuses a template change that would keep one too many", async () => {
    const ns = "q2";
    expect(
      (await api.call("POST", api.ns("services", undefined, ns), serviceBody("r"))).status,
    ).toBe(201);
    for (const v of ["2", "3"]) {
      const r = await api.call(
        "PUT",
        api.ns("services", "r", ns),
        serviceBody("r", { env: { V: v } }),
      );
      expect(r.status, r.text).toBe(200);
    }
    const before = (await api.call("GET", api.ns("services", "r", ns))).json;
    const r = await api.call(
      "PUT",
      api.ns("services", "r", ns),
      serviceBody("r", { env: { V: "4" } }),
    );
    expect(r.status).toBe(403);
    expect(r.json.message).toMatch(
      /exceeded quota revisions in namespace "q2": requested 1, used 3, limited to 3; delete old revisions/,
    );
    const after = (await api.call("GET", api.ns("services", "r", ns))).json;
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(await names(ns, "revisions")).toHaveLength(3);
  });

  it("the artifact bytes quota counts the worker bundles a namespace keeps", async () => {
    const ns = "q3";
    const source = `export default { fetch() { return new Response(${JSON.stringify("x".repeat(1500))}); } };`;
    const first = await api.call(
      "POST",
      api.ns("services", undefined, ns),
      workerService("w1", source),
    );
    expect(first.status, first.text).toBe(201);
    const second = await api.call(
      "POST",
      api.ns("services", undefined, ns),
      workerService("w2", source),
    );
    expect(second.status, second.text).toBe(201);
    const third = await api.call(
      "PUT",
      api.ns("services", "w2", ns),
      workerService("w2", `${source}\n// v2`),
    );
    expect(third.status).toBe(403);
    expect(third.json.message).toMatch(
      /exceeded quota artifactBytes in namespace "q3": requested \d+, used \d+, limited to 12000/,
    );
    expect(await names(ns, "revisions")).toHaveLength(2);
  });

  it("concurrent creates cannot both take the last slot", async () => {
    const ns = "race";
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        api.call("POST", api.ns("services", undefined, ns), serviceBody(`c${i}`)),
      ),
    );
    const codes = results.map((r) => r.status);
    console.log(`8 concurrent creates against a quota of 3: ${codes.join(" ")}`);
    expect(codes.filter((c) => c === 201)).toHaveLength(3);
    // A loser is refused by the quota, or (after many lost races) asked to retry; never let in.
    for (const c of codes.filter((c) => c !== 201)) expect([403, 409]).toContain(c);
    expect(codes.filter((c) => c === 403).length).toBeGreaterThan(0);
    expect(await names(ns)).toHaveLength(3);
  });
});
