/**
 * Namespaced tokens: an admin token plus tokens scoped to namespaces and a
 * role. Tried as a tenant would: reading and writing another namespace,
 * listing across namespaces, using a revoked token on another replica, an
 * old admin token after a restart with a new one, and looking for secrets in
 * Redis and in the logs.
 */
import { Writable } from "node:stream";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE, serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { connect, uniquePrefix } from "../support/redis.ts";

const TOKENS = "/apis/skiff.dev/v1/tokens";
// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
type Json = any;
const logLines: string[] = [];
const logger = pino(
  { level: "debug" },
  new Writable({
    write(chunk, _enc, done) {
      logLines.push(String(chunk));
      done();
    },
  }),
);

const prefix = uniquePrefix("tokens");
let api: TestApi;
let replica: TestApi;
let redis: Redis;
const secrets: Record<string, string> = {};

/** A call with another bearer token (or none). */
async function as(
  target: TestApi,
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(new URL(path, target.url), {
    method,
    headers,
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

const tokenBody = (name: string, role: string, namespaces: unknown) => ({
  apiVersion: "skiff.dev/v1",
  kind: "Token",
  metadata: { name },
  spec: { role, namespaces },
});

beforeAll(async () => {
  api = await startTestApi({ prefix, logger });
  // A second replica on the same Redis and prefix, started without a token: it uses the stored one.
  replica = await startTestApi({ prefix, token: null, logger });
  redis = connect();
  for (const ns of ["team-a", "team-b"]) {
    for (const name of ["one", "two"]) {
      const r = await api.call("POST", api.ns("services", undefined, ns), serviceBody(name));
      expect(r.status).toBe(201);
    }
  }
  for (const [name, role, namespaces] of [
    ["a-edit", "edit", ["team-a"]],
    ["a-view", "view", ["team-a"]],
  ] as const) {
    const r = await api.call("POST", TOKENS, tokenBody(name, role, namespaces));
    expect(r.status, r.text).toBe(201);
    expect(r.json.status.token).toMatch(/^skf_/);
    secrets[name] = r.json.status.token;
  }
});
afterAll(async () => {
  redis?.disconnect();
  await replica?.close();
  await api?.close();
});

describe("namespaced tokens", () => {
  it("a token for team-a reads and writes team-a", async () => {
    const t = secrets["a-edit"];
    expect((await as(api, t, "GET", api.ns("services", "one", "team-a"))).status).toBe(200);
    const made = await as(
      api,
      t,
      "POST",
      api.ns("services", undefined, "team-a"),
      serviceBody("three"),
    );
    expect(made.status, made.text).toBe(201);
  });

  it("a token for team-a cannot read or change team-b: 403 Status naming what was refused", async () => {
    const t = secrets["a-edit"];
    const read = await as(api, t, "GET", api.ns("services", "one", "team-b"));
    expect(read.status).toBe(403);
    expect(read.json).toMatchObject({ kind: "Status", reason: "Forbidden", code: 403 });
    expect(read.json.message).toMatch(
      /token "a-edit".*cannot get resource "services".*namespace "team-b"/,
    );
    const write = await as(
      api,
      t,
      "POST",
      api.ns("services", undefined, "team-b"),
      serviceBody("intruder"),
    );
    expect(write.status).toBe(403);
    expect(write.json.message).toMatch(/cannot create resource "services".*"team-b"/);
    const del = await as(api, t, "DELETE", api.ns("services", "one", "team-b"));
    expect(del.status).toBe(403);
    const list = await as(api, t, "GET", api.ns("revisions", undefined, "team-b"));
    expect(list.status).toBe(403);
    // Nothing changed in team-b.
    const names = (await api.call("GET", api.ns("services", undefined, "team-b"))).json.items.map(
      (s: Json) => s.metadata.name,
    );
    expect(names).toEqual(["one", "two"]);
  });

  it("a view token reads but cannot write, and the 403 says which role would", async () => {
    const t = secrets["a-view"];
    expect((await as(api, t, "GET", api.ns("services", undefined, "team-a"))).status).toBe(200);
    const r = await as(api, t, "DELETE", api.ns("services", "one", "team-a"));
    expect(r.status).toBe(403);
    expect(r.json.message).toMatch(/role "view" only reads; a token with role "edit" may delete/);
    expect((await api.call("GET", api.ns("services", "one", "team-a"))).status).toBe(200);
  });

  it("cross-namespace lists show only the namespaces a token may see", async () => {
    const mine = await as(api, secrets["a-view"], "GET", `${BASE}/services`);
    expect(mine.status).toBe(200);
    const seen = mine.json.items.map((s: Json) => s.metadata.namespace);
    expect(new Set(seen)).toEqual(new Set(["team-a"]));
    const all = await api.call("GET", `${BASE}/services`);
    expect(new Set(all.json.items.map((s: Json) => s.metadata.namespace))).toEqual(
      new Set(["team-a", "team-b"]),
    );
  });

  it("tokens and /metrics are for the admin token only", async () => {
    const t = secrets["a-edit"];
    expect((await as(api, t, "GET", TOKENS)).status).toBe(403);
    const escalate = await as(api, t, "POST", TOKENS, tokenBody("mine", "edit", ["team-b"]));
    expect(escalate.status).toBe(403);
    expect(escalate.json.message).toMatch(/only the admin token/);
    expect((await as(api, t, "DELETE", `${TOKENS}/a-view`)).status).toBe(403);
    expect((await as(api, t, "GET", "/metrics")).status).toBe(403);
    expect((await as(api, undefined, "GET", "/metrics")).status).toBe(401);
    const metrics = await as(api, api.token, "GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/skiff_api_http_requests_total/);
  });

  it("bad token bodies are 422 with the field named; a duplicate name is 409", async () => {
    const bad = await api.call("POST", TOKENS, tokenBody("x", "owner", ["Team_B"]));
    expect(bad.status).toBe(422);
    const fields = bad.json.details.causes.map((c: Json) => c.field);
    expect(fields).toEqual(expect.arrayContaining(["spec.role", "spec.namespaces[0]"]));
    expect((await api.call("POST", TOKENS, tokenBody("a-view", "view", ["x"]))).status).toBe(409);
  });

  it("the list shows names, roles and namespaces, never a secret; Redis holds only SHA-256", async () => {
    const list = await api.call("GET", TOKENS);
    expect(list.status).toBe(200);
    expect(list.json.items.map((t: Json) => [t.metadata.name, t.spec.role])).toEqual([
      ["a-edit", "edit"],
      ["a-view", "view"],
    ]);
    for (const secret of [...Object.values(secrets), api.token]) {
      expect(list.text).not.toContain(secret);
    }
    const keys = await redis.keys(`${prefix}*`);
    let dump = keys.join("\n");
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === "string") dump += await redis.get(key);
      else if (type === "hash") dump += JSON.stringify(await redis.hgetall(key));
    }
    for (const secret of [...Object.values(secrets), api.token]) {
      expect(dump).not.toContain(secret);
      expect(dump).not.toContain(secret.slice(4, 20));
    }
  });

  it("a revoked token is refused at once by every replica", async () => {
    const made = await api.call("POST", TOKENS, tokenBody("short-lived", "view", ["team-a"]));
    const t = made.json.status.token as string;
    secrets["short-lived"] = t;
    expect((await as(replica, t, "GET", api.ns("services", undefined, "team-a"))).status).toBe(200);
    const revoked = await as(replica, api.token, "DELETE", `${TOKENS}/short-lived`);
    expect(revoked.status).toBe(200);
    // The very next request, on either replica, is refused.
    for (const target of [api, replica]) {
      const r = await as(target, t, "GET", api.ns("services", undefined, "team-a"));
      expect(r.status).toBe(401);
      expect(r.json.message).toMatch(/unknown or revoked/);
    }
    expect((await api.call("DELETE", `${TOKENS}/short-lived`)).status).toBe(404);
  });

  it("a start with a new admin token revokes the old one on every replica", async () => {
    const oldAdmin = api.token;
    const newAdmin = "new-admin-token-0123456789abcdef";
    const third = await startTestApi({ prefix, token: newAdmin, logger });
    try {
      for (const target of [api, replica, third]) {
        expect((await as(target, oldAdmin, "GET", TOKENS)).status).toBe(401);
        expect((await as(target, newAdmin, "GET", TOKENS)).status).toBe(200);
      }
      // Namespaced tokens survive an admin change.
      expect(
        (await as(third, secrets["a-view"], "GET", api.ns("services", undefined, "team-a"))).status,
      ).toBe(200);
    } finally {
      await third.close();
    }
    secrets.oldAdmin = oldAdmin;
    secrets.newAdmin = newAdmin;
  });

  it("no secret ever appears in the logs", async () => {
    // Provoke the paths that log: failed auth, malformed headers, creation, revocation.
    await as(api, "skf_wrong-but-secret-looking-0123456789", "GET", TOKENS);
    await fetch(new URL(TOKENS, api.url), { headers: { authorization: "Basic dXNlcjpwYXNz" } });
    const logs = logLines.join("");
    expect(logs).toMatch(/token created/);
    expect(logs).toMatch(/token revoked/);
    for (const secret of [...Object.values(secrets), "skf_wrong-but-secret-looking-0123456789"]) {
      expect(logs).not.toContain(secret);
    }
  });
});
