/**
 * Reading the gateways' counters (real Redis, written in the documented
 * RevisionCounters format exactly as gateway/counters.ts publishes them):
 * rates come from the cumulative deltas between reads, gateways add up, a
 * counter restart or a crashed gateway never produces a negative or stale
 * number.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { GatewayMetricsSource } from "../../scaler/metrics-source.ts";
import { silentLogger } from "../../src/logging.ts";
import { gatewayKeys, type RevisionCounters } from "../../src/traffic/keys.ts";
import { connect, uniquePrefix } from "../support/redis.ts";

const redis: Redis = connect();
afterAll(() => redis.disconnect());

let prefix: string;
let source: GatewayMetricsSource;
beforeEach(() => {
  prefix = uniquePrefix("scaler-ms");
  source = new GatewayMetricsSource({ redis, prefix, logger: silentLogger });
});

function counters(over: Partial<RevisionCounters>): RevisionCounters {
  return {
    v: 1,
    at: 0,
    since: 0,
    periodMs: 500,
    inflight: 0,
    queued: 0,
    avgInflight: 0,
    requests: 0,
    completed: 0,
    windowRequests: 0,
    concurrencyMs: 0,
    instances: {},
    ...over,
  };
}

/** Publish one gateway's counters the way CounterPublisher does. */
async function publish(gw: string, revisions: Record<string, Partial<RevisionCounters>>) {
  const k = gatewayKeys(prefix);
  const fields = Object.entries(revisions).flatMap(([ref, c]) => [
    ref,
    JSON.stringify(counters(c)),
  ]);
  const m = redis.multi();
  if (fields.length > 0) m.hset(k.metrics(gw), ...fields);
  m.hset(k.metrics(gw), "_gateway", JSON.stringify({ id: gw, at: Date.now() }));
  m.pexpire(k.metrics(gw), 60_000);
  m.zadd(k.gateways, Date.now(), gw);
  await m.exec();
}

describe("GatewayMetricsSource", () => {
  it("takes a new series' own last-period averages, then rates from cumulative deltas", async () => {
    await publish("gw1", {
      "default/a": { since: 1_000, at: 10_000, avgInflight: 3, windowRequests: 5, periodMs: 500 },
    });
    const first = (await source.read()).get("default/a");
    expect(first).toMatchObject({ concurrency: 3, rps: 10 });

    // Over the next 2 s: 8 000 request-ms in flight (4 on average), 30 requests (15/s).
    await publish("gw1", {
      "default/a": { since: 1_000, at: 12_000, concurrencyMs: 8_000, requests: 30, inflight: 4 },
    });
    expect((await source.read()).get("default/a")).toEqual({
      concurrency: 4,
      rps: 15,
      inflight: 4,
      queued: 0,
    });
  });

  it("adds up the gateways", async () => {
    for (const [gw, c, r] of [
      ["gw1", 1_000, 10],
      ["gw2", 3_000, 30],
    ] as const) {
      await publish(gw, { "default/a": { since: 0, at: 1_000, queued: 1 } });
      await source.read();
      await publish(gw, {
        "default/a": { since: 0, at: 2_000, concurrencyMs: c, requests: r, queued: 1 },
      });
    }
    const load = (await source.read()).get("default/a");
    expect(load).toEqual({ concurrency: 4, rps: 40, inflight: 0, queued: 2 });
  });

  it("a gateway whose counters restarted (new since) counts its new values over [since, at]", async () => {
    await publish("gw1", {
      "default/a": { since: 0, at: 5_000, concurrencyMs: 50_000, requests: 500 },
    });
    await source.read();
    await publish("gw1", {
      "default/a": { since: 9_000, at: 10_000, concurrencyMs: 2_000, requests: 7 },
    });
    expect((await source.read()).get("default/a")).toMatchObject({ concurrency: 2, rps: 7 });
  });

  it("repeats a gateway's last rate while it has published nothing new", async () => {
    await publish("gw1", { "default/a": { since: 0, at: 1_000 } });
    await source.read();
    await publish("gw1", {
      "default/a": { since: 0, at: 2_000, concurrencyMs: 6_000, requests: 2 },
    });
    expect((await source.read()).get("default/a")).toMatchObject({ concurrency: 6, rps: 2 });
    expect((await source.read()).get("default/a")).toMatchObject({ concurrency: 6, rps: 2 });
  });

  it("drops a gateway whose counters expired (it crashed) and counts nothing for it", async () => {
    await publish("gw1", { "default/a": { since: 0, at: 1_000, avgInflight: 2 } });
    await publish("gw2", { "default/a": { since: 0, at: 1_000, avgInflight: 5 } });
    expect((await source.read()).get("default/a")?.concurrency).toBe(7);
    await redis.del(gatewayKeys(prefix).metrics("gw2"));
    expect((await source.read()).get("default/a")?.concurrency).toBe(2);
    expect(await redis.zrange(gatewayKeys(prefix).gateways, "0", "-1")).toEqual(["gw1"]);
    expect(source.gateways).toEqual(["gw1"]);
  });

  it("ignores malformed fields instead of failing the read", async () => {
    await publish("gw1", { "default/a": { since: 0, at: 1_000, avgInflight: 1 } });
    await redis.hset(gatewayKeys(prefix).metrics("gw1"), "default/b", "{not json");
    const loads = await source.read();
    expect([...loads.keys()]).toEqual(["default/a"]);
  });
});
