/** The Redis store: the shared contract, plus what is specific to Redis (key layout, channel, errors). */
import { Writable } from "node:stream";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { UnavailableError, ValidationError } from "../../../src/errors.ts";
import type { Logger } from "../../../src/logging.ts";
import { createRegistry } from "../../../src/metrics.ts";
import { createRedisStore, type RedisStore } from "../../../src/store/redis-store.ts";
import type { StoreEvent } from "../../../src/store/store.ts";
import { connect, redisUrl, uniquePrefix } from "../../support/redis.ts";
import { freePort } from "../../support/redis-server.ts";
import { describeStoreContract } from "./contract.ts";
import { revision, service } from "./fixtures.ts";

describeStoreContract("redis", () =>
  createRedisStore({ url: redisUrl(), prefix: uniquePrefix("store") }),
);

describe("RedisStore specifics", () => {
  let raw: Redis;
  const stores: RedisStore[] = [];
  const open = async (prefix = uniquePrefix("store"), extra: { logger?: Logger } = {}) => {
    const s = await createRedisStore({ url: redisUrl(), prefix, ...extra });
    stores.push(s);
    return s;
  };

  beforeAll(() => {
    raw = connect();
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await raw.quit();
  });

  it("lays out keys as documented in docs/architecture.md#resource-store-redis-keys", async () => {
    const p = uniquePrefix("keys");
    const store = await open(p);
    const { resourceVersion } = await store.transact(async (tx) => {
      tx.put(service("default", "hello"));
      tx.put(revision("default", "hello-00001"));
      tx.putArtifact("default", "hello-00001", "bundle");
    });
    const keys = (await raw.keys(`${p}*`)).sort();
    expect(keys).toEqual(
      [
        `${p}artifact:default:hello-00001`,
        `${p}cv:revisions:default`,
        `${p}cv:services:default`,
        `${p}idx:revisions:default`,
        `${p}idx:services:default`,
        `${p}ns:revisions`,
        `${p}ns:services`,
        `${p}obj:revisions:default:hello-00001`,
        `${p}obj:services:default:hello`,
        `${p}rv`,
      ].sort(),
    );
    const hash = await raw.hgetall(`${p}obj:services:default:hello`);
    expect(Object.keys(hash).sort()).toEqual(["json", "rv"]);
    expect(hash.rv).toBe(resourceVersion);
    expect(JSON.parse(hash.json!).metadata).not.toHaveProperty("resourceVersion");
    expect(await raw.get(`${p}rv`)).toBe(resourceVersion);
    expect(await raw.get(`${p}cv:services:default`)).toBe(resourceVersion);
    expect(await raw.smembers(`${p}idx:services:default`)).toEqual(["hello"]);
    expect(await raw.smembers(`${p}ns:services`)).toEqual(["default"]);
  });

  it("deleting a namespace's last revision removes its index entries and artifact", async () => {
    const p = uniquePrefix("keys");
    const store = await open(p);
    await store.transact(async (tx) => {
      tx.put(revision("default", "hello-00001"));
      tx.putArtifact("default", "hello-00001", "bundle");
    });
    const { resourceVersion } = await store.transact(async (tx) =>
      tx.delete("revisions", "default", "hello-00001"),
    );
    expect((await raw.keys(`${p}*`)).sort()).toEqual([`${p}cv:revisions:default`, `${p}rv`]);
    expect(await raw.get(`${p}cv:revisions:default`)).toBe(resourceVersion);
  });

  it("publishes one JSON message per written object on {prefix}events", async () => {
    const p = uniquePrefix("chan");
    const store = await open(p);
    const sub = connect();
    const messages: string[] = [];
    sub.on("message", (_channel: string, m: string) => messages.push(m));
    await sub.subscribe(`${p}events`);
    try {
      const { resourceVersion } = await store.transact(async (tx) => tx.put(service("ns1", "web")));
      await vi.waitFor(() => expect(messages).toHaveLength(1), { timeout: 5000 });
      expect(JSON.parse(messages[0]!)).toEqual({
        type: "put",
        kind: "services",
        namespace: "ns1",
        name: "web",
        resourceVersion,
      });
    } finally {
      await sub.quit();
    }
  });

  it("logs and ignores malformed event messages, then keeps delivering good ones", async () => {
    const p = uniquePrefix("bad");
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const store = await open(p, { logger: pino({ level: "warn" }, sink) });
    const events: StoreEvent[] = [];
    await store.watch((e) => events.push(e));
    await raw.publish(`${p}events`, "not json");
    await raw.publish(`${p}events`, JSON.stringify({ type: "put", kind: "nonsense", name: "x" }));
    await store.transact(async (tx) => tx.put(service("default", "good")));
    await vi.waitFor(() => expect(events.map((e) => e.name)).toEqual(["good"]), { timeout: 5000 });
    expect(lines.filter((l) => l.includes("ignoring malformed store event"))).toHaveLength(2);
  });

  it("counts commits attempted and transactions by outcome, so contention shows as attempts per commit", async () => {
    const registry = createRegistry({ component: "test" });
    const counted = await createRedisStore({
      url: redisUrl(),
      prefix: uniquePrefix("metrics"),
      registry,
    });
    try {
      await counted.transact(async (tx) => tx.put(service("default", "a")));
      let runs = 0;
      await counted.transact(async (tx) => {
        runs++;
        const svc = (await tx.get("services", "default", "a"))!;
        if (runs === 1) {
          await counted.transact(async (other) => {
            const fresh = (await other.get("services", "default", "a"))!;
            fresh.metadata.labels = { other: "1" };
            other.put(fresh);
          });
        }
        tx.put(svc);
      });
      const text = await registry.metrics();
      // 3 committed (a, the other writer, the re-run) from 4 attempts (one lost race).
      expect(text).toMatch(/skiff_store_commit_attempts_total\{component="test"\} 4/);
      expect(text).toMatch(
        /skiff_store_transactions_total\{outcome="committed",component="test"\} 3/,
      );
    } finally {
      await counted.close();
    }
  });

  it("stores with different prefixes on one Redis do not see each other", async () => {
    const a = await open();
    const b = await open();
    await a.transact(async (tx) => tx.put(service("default", "mine")));
    expect(await b.get("services", "default", "mine")).toBeUndefined();
    expect(await b.list("services")).toEqual([]);
  });

  it("commits still work after Redis forgot the scripts (EVALSHA falls back to EVAL)", async () => {
    const store = await open();
    await store.transact(async (tx) => tx.put(service("default", "before")));
    await raw.script("FLUSH");
    await store.transact(async (tx) => tx.put(service("default", "after")));
    expect((await store.list("services", "default")).map((s) => s.metadata.name)).toEqual([
      "after",
      "before",
    ]);
  });

  it("rejects names that would break the key layout with a ValidationError naming the field", async () => {
    const store = await open();
    const err = await store
      .transact(async (tx) => tx.put(service("default", "a:b")))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err).toMatchObject({ causes: [{ field: "metadata.name" }] });
  });

  it("rejects options giving both url and redis, or neither", async () => {
    const conn = connect();
    try {
      await expect(createRedisStore({ url: redisUrl(), redis: conn })).rejects.toBeInstanceOf(
        ValidationError,
      );
      await expect(createRedisStore({})).rejects.toThrow(/exactly one of url and redis/);
    } finally {
      await conn.quit();
    }
  });

  it("rejects a connection that uses ioredis keyPrefix", async () => {
    const conn = new Redis(redisUrl(), { keyPrefix: "x:", lazyConnect: true });
    await expect(createRedisStore({ redis: conn })).rejects.toThrow(/keyPrefix/);
    conn.disconnect();
  });

  it("uses a caller's connection and leaves it open on close", async () => {
    const conn = connect();
    try {
      const store = await createRedisStore({ redis: conn, prefix: uniquePrefix("own") });
      await store.transact(async (tx) => tx.put(service("default", "x")));
      await store.watch(() => {});
      await store.close();
      expect(await conn.ping()).toBe("PONG");
    } finally {
      await conn.quit();
    }
  });

  it("turns an unreachable Redis into UnavailableError (503)", async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const store = await createRedisStore({ url, prefix: uniquePrefix("down") });
    stores.push(store);
    const err = await store.get("services", "default", "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).toMatchObject({ status: 503 });
    await expect(store.ping()).rejects.toBeInstanceOf(UnavailableError);
  });
});
