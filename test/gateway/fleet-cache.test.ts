/**
 * The gateway's endpoint cache reads the fleet's records through src/fleet's
 * one reader. Caches here subscribe to nothing: every write's notice is
 * missed unless a test hands it over, and the resync must repair it.
 */
import { Writable } from "node:stream";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FleetCache } from "../../gateway/fleet-cache.ts";
import { connect, uniquePrefix } from "../support/redis.ts";
import { AGENT_ID, TestScaler } from "./support.ts";

const prefix = uniquePrefix("gw-fleet-cache");
const scaler = new TestScaler(prefix);
let raw: Redis;
const silent = pino({ level: "silent" });

beforeAll(async () => {
  raw = connect();
  await scaler.agent();
});
afterAll(async () => {
  raw?.disconnect();
  await scaler.close();
});

describe("FleetCache", () => {
  test("one bad endpoint record is skipped with one log line; the revision's others still route", async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: "warn" },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
          done();
        },
      }),
    );
    const good = await scaler.endpoint("default", "hello-00001", {
      host: "127.0.0.1",
      port: 20001,
    });
    await raw.hset(scaler.fleet.keys.endpoints("default", "hello-00001"), "bad", '{"port":"x"}');
    const cache = new FleetCache(raw, prefix, log, () => {});
    await cache.resync();
    const eps = cache.endpoints("default/hello-00001");
    expect(eps.map((e) => e.instanceId)).toEqual([good]);
    expect(eps[0]?.agentId).toBe(AGENT_ID);
    expect(lines.filter((l) => l.field === "bad")).toHaveLength(1);
    expect(lines[0]?.revision).toBe("default/hello-00001");
  });

  test("an endpoint published, then withdrawn, with both notices missed, is seen by the next resync", async () => {
    const cache = new FleetCache(raw, prefix, silent, () => {});
    await cache.resync();
    const id = await scaler.endpoint("default", "missed-00001", { host: "127.0.0.1", port: 20002 });
    expect(cache.endpoints("default/missed-00001")).toEqual([]);
    await cache.resync();
    expect(cache.endpoints("default/missed-00001").map((e) => e.instanceId)).toEqual([id]);
    await scaler.withdraw("default", "missed-00001", id);
    await cache.resync();
    expect(cache.endpoints("default/missed-00001")).toEqual([]);
  });

  test("an endpoint a notice withdrew, then put back as it was with its notice missed, routes again after the next resync", async () => {
    const cache = new FleetCache(raw, prefix, silent, () => {});
    const key = scaler.fleet.keys.endpoints("default", "aba-00001");
    const first = await scaler.endpoint("default", "aba-00001", { host: "127.0.0.1", port: 20003 });
    const second = await scaler.endpoint("default", "aba-00001", {
      host: "127.0.0.1",
      port: 20004,
    });
    await cache.resync();
    const json = (await raw.hget(key, second)) as string;
    await scaler.withdraw("default", "aba-00001", second);
    await cache.refreshRevision("default/aba-00001");
    expect(cache.endpoints("default/aba-00001").map((e) => e.instanceId)).toEqual([first]);
    // Byte for byte what the last resync read, so only the notice tells the cache to look again.
    await raw.hset(key, second, json);
    await cache.resync();
    expect(cache.endpoints("default/aba-00001").map((e) => e.instanceId)).toEqual([first, second]);
  });
});
