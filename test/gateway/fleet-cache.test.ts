/** The gateway's endpoint cache reads the fleet's records through src/fleet's one reader. */
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
});
