/**
 * Issue 9, attack 2: "an anonymous client reaches any isolate". The gateway
 * used to join client and instance as soon as it had written an upgrade
 * request, before seeing a 101. An instance that answers such a request
 * normally (as workerd does) left a raw tunnel open, and the next request sent
 * down it, with a forged `x-skiff-revision: othernamespace/rev`, reached the
 * other tenant's revision on the shared router socket.
 *
 * Here a stand-in for the agent's workerd router (one port, revision picked by
 * the internal header) serves two tenants; the attacker only knows tenant a's
 * host. Each attack prints what it sent and what came back; tenant b's
 * revision must never be served.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/server.ts";
import { hit, startTestGateway, TestScaler } from "../gateway/support.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  HOST_A,
  REV_A,
  REV_B,
  rawConnect,
  routeTwoTenants,
  type SharedRouter,
  startSharedRouter,
} from "./gateway-raw.ts";

const prefix = uniquePrefix("sec-upgrade");
const scaler = new TestScaler(prefix);
const SECRET = "test-cluster-secret-0123456789abcdef";
let gw: Gateway;
let router: SharedRouter;

beforeAll(async () => {
  await scaler.agent();
  router = await startSharedRouter();
  gw = await startTestGateway(prefix, { clusterSecret: SECRET });
  await routeTwoTenants(scaler, router);
  await gw.resync();
});

afterAll(async () => {
  await gw?.close(1_000);
  await router?.close();
  await scaler.close();
});

const upgradeRequest = `GET / HTTP/1.1\r\nHost: ${HOST_A}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`;
const smuggled = `GET /steal HTTP/1.1\r\nHost: ${HOST_A}\r\nx-skiff-revision: ${REV_B}\r\n\r\n`;

function report(name: string, sent: string[], back: string): void {
  const show = (s: string) => s.replace(/\r\n/g, "\\r\\n");
  console.log(
    `[${name}]\n  sent: ${sent.map(show).join("\n        ")}\n  came back: ${show(back) || "(nothing)"}`,
  );
}

describe("an upgrade the instance does not accept", () => {
  it("is relayed as a plain response and the connection closed: a second request with a forged revision reaches nobody", async () => {
    const before = router.seen.length;
    const c = await rawConnect(gw.url);
    c.send(upgradeRequest);
    expect(await c.waitFor("served revision=")).toBe(true);
    const first = c.received();
    c.send(smuggled);
    const closed = await c.closed(3_000);
    const back = c.received();
    c.destroy();
    report(
      "upgrade answered 200, then a forged request down the same connection",
      [upgradeRequest, smuggled],
      back,
    );
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    expect(first).toContain(`served revision=${REV_A}`);
    expect(first.toLowerCase()).toContain("connection: close");
    expect(closed).toBe(true);
    expect(back).not.toContain(REV_B);
    const reached = router.seen.slice(before);
    console.log(`  the router saw: ${JSON.stringify(reached.map((s) => s.revision))}`);
    expect(reached.map((s) => s.revision)).toEqual([REV_A]);
  });

  it("never forwards bytes sent together with the upgrade request (pipelined in the same packet)", async () => {
    const before = router.seen.length;
    const c = await rawConnect(gw.url);
    c.send(upgradeRequest + smuggled);
    await c.closed(3_000);
    const back = c.received();
    c.destroy();
    report("upgrade and forged request in one write", [upgradeRequest + smuggled], back);
    expect(back).toContain(`served revision=${REV_A}`);
    expect(back).not.toContain(REV_B);
    expect(router.seen.slice(before).map((s) => s.revision)).toEqual([REV_A]);
  });

  it("answers an upgrade request that carries a body with 400 and forwards nothing", async () => {
    const before = router.seen.length;
    const c = await rawConnect(gw.url);
    const withBody =
      `POST / HTTP/1.1\r\nHost: ${HOST_A}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n` +
      `Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`;
    c.send(withBody);
    await c.closed(3_000);
    report("upgrade with a body holding a forged request", [withBody], c.received());
    expect(c.received()).toMatch(/^HTTP\/1\.1 400 /);
    c.destroy();
    expect(router.seen.length).toBe(before);
  });
});

describe("an upgrade the instance accepts (101)", () => {
  it("is joined byte for byte, carries the internal headers from the endpoint record only, and plain requests still work", async () => {
    const before = router.seen.length;
    const c = await rawConnect(gw.url);
    const ws =
      `GET /chat HTTP/1.1\r\nHost: ${HOST_A}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `x-skiff-revision: ${REV_B}\r\nx-skiff-gateway-auth: forged\r\n\r\n`;
    c.send(ws);
    expect(await c.waitFor("\r\n\r\n")).toBe(true);
    expect(c.received()).toMatch(/^HTTP\/1\.1 101 /);
    c.send("ping-through-the-tunnel");
    expect(await c.waitFor("ping-through-the-tunnel")).toBe(true);
    report("websocket upgrade with forged internal headers", [ws], c.received());
    c.destroy();
    const [entry] = router.seen.slice(before);
    expect(entry?.revision).toBe(REV_A);
    expect(entry?.auth).toBe(SECRET);
    expect((await hit(gw.url, HOST_A)).body).toContain(`served revision=${REV_A}`);
  });
});
