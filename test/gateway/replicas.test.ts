/**
 * Two gateway processes sharing one Redis, as production runs them: routing
 * on both, the traffic split, the hard concurrency limit held across both,
 * one activation signal for a burst at zero spread over both, and slots that
 * free themselves when a gateway dies holding them.
 */
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gatewayKeys } from "../../src/traffic/keys.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  type Backend,
  type GatewayProcess,
  hit,
  host,
  spawnGateway,
  startBackend,
  TestScaler,
  until,
} from "./support.ts";

const prefix = uniquePrefix("gw-replicas");
const scaler = new TestScaler(prefix);
const backends: Backend[] = [];
let a: GatewayProcess;
let b: GatewayProcess;

async function backend(...args: Parameters<typeof startBackend>): Promise<Backend> {
  const be = await startBackend(...args);
  backends.push(be);
  return be;
}

beforeAll(async () => {
  await scaler.agent();
  [a, b] = await Promise.all([spawnGateway(prefix), spawnGateway(prefix)]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all(backends.map((be) => be.close()));
  await scaler.close();
});

/** Until both gateways answer `host` with something other than 404. */
async function routable(h: string, path = "/"): Promise<void> {
  for (const g of [a, b]) {
    await until(
      `${h} routable on ${g.id}`,
      async () => (await hit(g.url, h, { path })).status !== 404,
    );
  }
}

/** Run `n` calls of `fn`, at most `width` at a time. */
async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

describe("two gateway processes", () => {
  it("both route the service host and its tag hosts", async () => {
    const v1 = await backend("v1");
    const v2 = await backend("v2");
    await scaler.route("default", "both", [
      { revision: "both-00001", percent: 100, tag: "current" },
      { revision: "both-00002", percent: 0, tag: "next" },
    ]);
    await scaler.endpoint("default", "both-00001", v1);
    await scaler.endpoint("default", "both-00002", v2);
    await routable(host("both"));
    for (const g of [a, b]) {
      expect(JSON.parse((await hit(g.url, host("both"))).body).name).toBe("v1");
      expect(JSON.parse((await hit(g.url, host("both", "default", "current"))).body).name).toBe(
        "v1",
      );
      expect(JSON.parse((await hit(g.url, host("both", "default", "next"))).body).name).toBe("v2");
      expect((await hit(g.url, host("nothing"))).status).toBe(404);
    }
  });

  it("splits 50/50 over 1000 requests within 4 sigma of the binomial", async () => {
    const left = await backend("left");
    const right = await backend("right");
    await scaler.route("default", "split", [
      { revision: "split-00001", percent: 50 },
      { revision: "split-00002", percent: 50 },
    ]);
    await scaler.endpoint("default", "split-00001", left);
    await scaler.endpoint("default", "split-00002", right);
    await routable(host("split"));
    await until("both revisions reachable", async () => {
      await Promise.all([hit(a.url, host("split")), hit(b.url, host("split"))]);
      return left.hits > 0 && right.hits > 0;
    });
    const before = { left: left.hits, right: right.hits };
    const names = await pool(1000, 20, async (i) => {
      const res = await hit(i % 2 === 0 ? a.url : b.url, host("split"));
      expect(res.status).toBe(200);
      return JSON.parse(res.body).name as string;
    });
    const lefts = names.filter((n) => n === "left").length;
    // n = 1000, p = 0.5: sigma = sqrt(250) ~ 15.8; 4 sigma ~ 63.
    expect(Math.abs(lefts - 500)).toBeLessThanOrEqual(63);
    expect(left.hits - before.left).toBe(lefts);
    expect(right.hits - before.right).toBe(1000 - lefts);
  });

  it("holds containerConcurrency=1 across both gateways and queues the excess instead of failing", async () => {
    const slow = (name: string) =>
      backend(name, (req, res) => {
        req.resume();
        // A slow instance, so that requests overlap: what is under test.
        setTimeout(() => res.end(name), 25);
      });
    const i1 = await slow("cc-1");
    const i2 = await slow("cc-2");
    await scaler.route("default", "cc", [
      { revision: "cc-00001", percent: 100, containerConcurrency: 1, timeoutSeconds: 30 },
    ]);
    await scaler.endpoint("default", "cc-00001", i1, { containerConcurrency: 1 });
    await scaler.endpoint("default", "cc-00001", i2, { containerConcurrency: 1 });
    await routable(host("cc"));
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => hit(i % 2 === 0 ? a.url : b.url, host("cc"))),
    );
    expect(results.map((r) => r.status)).toEqual(Array(60).fill(200));
    // Each backend counts its own concurrency: never two at once.
    expect(i1.maxInflight).toBe(1);
    expect(i2.maxInflight).toBe(1);
    expect(i1.hits + i2.hits).toBeGreaterThanOrEqual(60);
    expect(i1.hits).toBeGreaterThan(0);
    expect(i2.hits).toBeGreaterThan(0);
  });

  it("sends one activation signal for a burst of 200 at zero over both gateways, and serves all 200 once an endpoint appears", async () => {
    const keys = gatewayKeys(prefix);
    const sub = scaler.redis.duplicate();
    const signals: string[] = [];
    let cold: Backend | undefined;
    sub.on("message", (_channel: string, message: string) => {
      signals.push(message);
      // Play the scaler: start an instance and publish it when told.
      if (message === "default/burst-00001" && !cold) {
        void backend("burst").then(async (be) => {
          cold = be;
          await scaler.endpoint("default", "burst-00001", be);
        });
      }
    });
    await sub.subscribe(keys.activateChannel);
    try {
      await scaler.route("default", "burst", [
        { revision: "burst-00001", percent: 100, timeoutSeconds: 30 },
      ]);
      await routable(host("burst"), "/warm-routing-only");
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => hit(i % 2 === 0 ? a.url : b.url, host("burst"))),
      );
      expect(results.filter((r) => r.status === 200)).toHaveLength(200);
      // No second signal: a marker published now arrives after anything the gateways sent before it.
      await scaler.redis.publish(keys.activateChannel, "marker");
      await until("the marker", () => signals.includes("marker"));
      expect(signals.filter((m) => m !== "marker")).toEqual(["default/burst-00001"]);
      const metrics = await (await request(`${a.adminUrl}/metrics`)).body.text();
      expect(metrics).toMatch(/skiff_gateway_cold_start_wait_seconds_count\{[^}]*\} [1-9]/);
    } finally {
      sub.disconnect();
    }
  });

  it("frees the slots of a gateway that died mid-request once their leases expire", async () => {
    let first = true;
    const be = await backend("heal", (req, res) => {
      req.resume();
      if (first) {
        // Hold the first request; its gateway will die with it.
        first = false;
        return;
      }
      res.end("served");
    });
    await scaler.route("default", "heal", [
      { revision: "heal-00001", percent: 100, containerConcurrency: 1, timeoutSeconds: 20 },
    ]);
    await scaler.endpoint("default", "heal-00001", be, { containerConcurrency: 1 });
    // Started after the writes, so its first resync already knows the route and endpoint.
    const doomed = await spawnGateway(prefix, { slotLeaseMs: 600 });
    const held = hit(doomed.url, host("heal")).catch(() => undefined);
    await until("first request at the instance", () => be.hits === 1);
    await doomed.kill();
    await held;
    const res = await hit(a.url, host("heal"));
    expect(res.status).toBe(200);
    expect(res.body).toBe("served");
  });
});
