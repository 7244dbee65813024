/**
 * Issue 9, "No tenant reaches another through the data plane" (gateway part):
 * - the gateway proves itself to isolate routers with the cluster secret in
 *   `x-skiff-gateway-auth`, and never hands that secret to a container (tenant
 *   code) or lets a client supply it;
 * - a request's Host alone picks the revision: forged `x-skiff-*` headers,
 *   X-Forwarded-Host, absolute-form targets and duplicate Host headers cannot
 *   change it (the last two are refused with 400 before anything is proxied).
 * Every attempt prints what was sent and what came back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/server.ts";
import { ensureClusterIdentity } from "../../src/cluster.ts";
import {
  type Backend,
  hit,
  startBackend,
  startTestGateway,
  TestScaler,
} from "../gateway/support.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  HOST_A,
  REV_A,
  REV_B,
  rawRequest,
  routeTwoTenants,
  type SharedRouter,
  startSharedRouter,
} from "./gateway-raw.ts";

const prefix = uniquePrefix("sec-host");
const scaler = new TestScaler(prefix);
let gw: Gateway;
let router: SharedRouter;
let container: Backend;
let secret: string;

const HOST_B = "vault.tenant-b.localhost";
const HOST_C = "web.tenant-c.localhost";

beforeAll(async () => {
  await scaler.agent();
  router = await startSharedRouter();
  container = await startBackend("container-c");
  // No clusterSecret option: the gateway reads the install's secret from Redis.
  gw = await startTestGateway(prefix);
  secret = (await ensureClusterIdentity(scaler.redis, prefix)).secret;
  await routeTwoTenants(scaler, router);
  await scaler.route("tenant-c", "web", [{ revision: "web-00001", percent: 100 }]);
  await scaler.endpoint("tenant-c", "web-00001", container);
  await gw.resync();
});

afterAll(async () => {
  await gw?.close(1_000);
  await router?.close();
  await container?.close();
  await scaler.close();
});

const show = (s: string) => s.replace(/\r\n/g, "\\r\\n");

describe("the gateway's proof header", () => {
  it("reaches an isolate endpoint with the cluster secret read from Redis, and a container endpoint never", async () => {
    const before = router.seen.length;
    const a = await hit(gw.url, HOST_A, { headers: { "x-skiff-gateway-auth": "forged" } });
    expect(a.status).toBe(200);
    const seen = router.seen.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.auth).toBe(secret);
    expect(secret).toMatch(/^[0-9a-f]{64}$/);

    const c = await hit(gw.url, HOST_C, { headers: { "x-skiff-gateway-auth": "forged" } });
    expect(c.status).toBe(200);
    const headers = JSON.parse(c.body).headers as Record<string, string>;
    console.log(
      `isolate endpoint got x-skiff-gateway-auth=${seen[0]?.auth?.slice(0, 8)}... (the cluster secret); container endpoint got ${JSON.stringify(headers["x-skiff-gateway-auth"])}`,
    );
    expect(headers["x-skiff-gateway-auth"]).toBeUndefined();
    expect(Object.keys(headers).filter((h) => h.startsWith("x-skiff-"))).toEqual([]);
  });
});

describe("Host alone picks the revision", () => {
  it("ignores forged x-skiff-* headers and X-Forwarded-Host", async () => {
    const before = router.seen.length;
    const res = await hit(gw.url, HOST_A, {
      headers: {
        "x-skiff-revision": REV_B,
        "X-Skiff-Revision-Override": REV_B,
        "x-forwarded-host": HOST_B,
        forwarded: `host=${HOST_B}`,
      },
    });
    console.log(
      `forged x-skiff-revision + X-Forwarded-Host for ${HOST_B} -> ${res.status} ${res.body.trim()}`,
    );
    expect(res.body).toContain(`served revision=${REV_A}`);
    expect(router.seen.slice(before).map((s) => s.revision)).toEqual([REV_A]);

    const c = await hit(gw.url, HOST_C, { headers: { "x-forwarded-host": HOST_B } });
    expect(JSON.parse(c.body).headers["x-forwarded-host"]).toBe(HOST_C);
  });

  const refused: [string, string][] = [
    [
      "absolute-form target naming another tenant",
      `GET http://${HOST_B}/ HTTP/1.1\r\nHost: ${HOST_A}\r\n\r\n`,
    ],
    [
      "absolute-form target naming another tenant, Host of that tenant swapped",
      `GET http://${HOST_A}/ HTTP/1.1\r\nHost: ${HOST_B}\r\n\r\n`,
    ],
    ["two Host headers", `GET / HTTP/1.1\r\nHost: ${HOST_A}\r\nHost: ${HOST_B}\r\n\r\n`],
    ["two identical Host headers", `GET / HTTP/1.1\r\nHost: ${HOST_A}\r\nHost: ${HOST_A}\r\n\r\n`],
    ["a Host header listing two hosts", `GET / HTTP/1.1\r\nHost: ${HOST_A}, ${HOST_B}\r\n\r\n`],
    ["a Host header with a path", `GET / HTTP/1.1\r\nHost: ${HOST_A}/x\r\n\r\n`],
    [
      "two Host headers on an upgrade",
      `GET / HTTP/1.1\r\nHost: ${HOST_A}\r\nHost: ${HOST_B}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    ],
    [
      "absolute-form upgrade naming another tenant",
      `GET http://${HOST_B}/ HTTP/1.1\r\nHost: ${HOST_A}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    ],
  ];
  for (const [name, text] of refused) {
    it(`refuses ${name} with 400 and proxies nothing`, async () => {
      const before = router.seen.length;
      const res = await rawRequest(gw.url, text);
      console.log(`${name}: sent ${show(text)}\n  -> ${show(res.text).slice(0, 200)}`);
      expect(res.status).toBe(400);
      expect(router.seen.length).toBe(before);
    });
  }

  it("routes an absolute-form target that names the same host as Host, by Host", async () => {
    const before = router.seen.length;
    const res = await rawRequest(
      gw.url,
      `GET http://${HOST_A.toUpperCase()}:8080/p?q=1 HTTP/1.1\r\nHost: ${HOST_A}\r\nConnection: close\r\n\r\n`,
    );
    expect(res.status).toBe(200);
    expect(res.text).toContain(`served revision=${REV_A}`);
    expect(router.seen.slice(before)).toMatchObject([{ revision: REV_A, url: "/p?q=1" }]);
  });

  it("keeps routing by Host on a kept-alive connection whatever an instance answered before", async () => {
    // An instance answering with internal and forwarding headers changes nothing for the next request.
    const sneaky = await startBackend("sneaky", (req, res) => {
      req.resume();
      res.setHeader("x-skiff-revision", REV_B);
      res.setHeader("x-forwarded-host", HOST_B);
      res.setHeader("connection", "keep-alive, x-skiff-revision");
      res.end("sneaky\n");
    });
    try {
      await scaler.route("tenant-c", "sneaky", [{ revision: "sneaky-00001", percent: 100 }]);
      await scaler.endpoint("tenant-c", "sneaky-00001", sneaky);
      await gw.resync();
      const host = "sneaky.tenant-c.localhost";
      const first = await hit(gw.url, host);
      expect(first.body).toBe("sneaky\n");
      const before = router.seen.length;
      const next = await hit(gw.url, HOST_A);
      expect(next.body).toContain(`served revision=${REV_A}`);
      expect(router.seen.slice(before).map((s) => s.revision)).toEqual([REV_A]);
    } finally {
      await sneaky.close();
    }
  });
});
