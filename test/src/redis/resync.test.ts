/** watchAndResync against a real Redis: events, periodic and reconnect-triggered resyncs. */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type ResyncReason,
  type WatchAndResync,
  watchAndResync,
} from "../../../src/redis/resync.ts";
import { createRedisStore, type RedisStore } from "../../../src/store/redis-store.ts";
import type { StoreEvent } from "../../../src/store/store.ts";
import { connect, redisUrl, uniquePrefix } from "../../support/redis.ts";
import { gate, service } from "../store/fixtures.ts";

const NS = "default";

describe("watchAndResync", () => {
  let raw: Redis;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(() => {
    raw = connect();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await raw.quit();
  });

  /** A store plus a second store (another process, in effect) on the same prefix. */
  async function stores(redis?: Redis): Promise<{ store: RedisStore; writer: RedisStore }> {
    const prefix = uniquePrefix("resync");
    const store = await createRedisStore(redis ? { redis, prefix } : { url: redisUrl(), prefix });
    const writer = await createRedisStore({ url: redisUrl(), prefix });
    cleanups.push(
      () => store.close(),
      () => writer.close(),
    );
    return { store, writer };
  }

  async function start(options: Parameters<typeof watchAndResync>[0]): Promise<WatchAndResync> {
    const w = await watchAndResync(options);
    cleanups.push(() => w.stop());
    return w;
  }

  const put = (s: RedisStore, name: string) => s.transact(async (tx) => tx.put(service(NS, name)));

  it("subscribes before the first resync, so a change made during it still arrives as an event", async () => {
    const { store, writer } = await stores();
    const events: string[] = [];
    const reasons: ResyncReason[] = [];
    await start({
      store,
      onEvent: (e) => {
        events.push(e.name);
      },
      resync: async (reason) => {
        reasons.push(reason);
        await put(writer, "during-start");
      },
    });
    expect(reasons).toEqual(["start"]);
    await vi.waitFor(() => expect(events).toEqual(["during-start"]), { timeout: 5000 });
  });

  it("passes committed changes to onEvent in commit order", async () => {
    const { store, writer } = await stores();
    const events: StoreEvent[] = [];
    await start({ store, onEvent: (e) => void events.push(e), resync: () => {} });
    const versions: string[] = [];
    for (const name of ["one", "two", "three"])
      versions.push((await put(writer, name)).resourceVersion);
    await vi.waitFor(() => expect(events).toHaveLength(3), { timeout: 5000 });
    expect(events.map((e) => [e.name, e.resourceVersion])).toEqual([
      ["one", versions[0]],
      ["two", versions[1]],
      ["three", versions[2]],
    ]);
  });

  it("resyncs again every interval", async () => {
    const { store } = await stores();
    const reasons: ResyncReason[] = [];
    await start({
      store,
      intervalMs: 10,
      onEvent: () => {},
      resync: (reason) => void reasons.push(reason),
    });
    await vi.waitFor(() => expect(reasons.length).toBeGreaterThanOrEqual(4), { timeout: 5000 });
    expect(reasons[0]).toBe("start");
    expect(new Set(reasons.slice(1))).toEqual(new Set(["interval"]));
  });

  it("picks up a change published while the subscriber was disconnected, by resyncing after resubscribe", async () => {
    // Our own connection, so the subscriber (its duplicate) has a findable name
    // and reconnects only after 500 ms: the write below lands while it is away.
    const name = `resync-${randomBytes(4).toString("hex")}`;
    const conn = new Redis(redisUrl(), { connectionName: name, retryStrategy: () => 500 });
    cleanups.push(() => conn.quit());
    const { store, writer } = await stores(conn);
    const events: string[] = [];
    const resyncs: { reason: ResyncReason; names: string[] }[] = [];
    await start({
      store,
      intervalMs: 600_000,
      onEvent: (e) => void events.push(e.name),
      resync: async (reason) => {
        const names = (await store.list("services", NS)).map((s) => s.metadata.name);
        resyncs.push({ reason, names });
      },
    });

    const clients = String(await raw.client("LIST"));
    const line = clients.split("\n").find((l) => l.includes(` name=${name}:sub `));
    const id = /\bid=(\d+)/.exec(line ?? "")?.[1];
    expect(id, `subscriber connection ${name}:sub in CLIENT LIST`).toBeDefined();
    await raw.client("KILL", "ID", id!);
    await put(writer, "missed");

    await vi.waitFor(
      () => expect(resyncs).toContainEqual({ reason: "resubscribe", names: ["missed"] }),
      { timeout: 10_000, interval: 50 },
    );
    // The event itself was lost (pub/sub is at-most-once): only the resync saw it.
    expect(events).not.toContain("missed");
    // And the subscription works again afterwards.
    await put(writer, "after");
    await vi.waitFor(() => expect(events).toContain("after"), { timeout: 5000 });
  });

  it("never runs onEvent while a resync is in progress", async () => {
    const { store, writer } = await stores();
    const release = gate();
    let blocking = false;
    const handled: string[] = [];
    const w = await start({
      store,
      onEvent: (e) => void handled.push(e.name),
      resync: async (reason) => {
        if (reason === "manual") {
          blocking = true;
          await release.opened;
          blocking = false;
        }
      },
    });
    const arrived: string[] = [];
    await store.watch((e) => arrived.push(e.name));
    const resynced = w.resyncNow();
    try {
      await vi.waitFor(() => expect(blocking).toBe(true));
      await put(writer, "queued");
      await vi.waitFor(() => expect(arrived).toEqual(["queued"]), { timeout: 5000 });
      expect(handled).toEqual([]);
    } finally {
      release.open();
    }
    await resynced;
    await vi.waitFor(() => expect(handled).toEqual(["queued"]));
  });

  it("collapses resync requests made while one is waiting into a single run", async () => {
    const { store } = await stores();
    const release = gate();
    const runs: ResyncReason[] = [];
    const w = await start({
      store,
      onEvent: () => {},
      resync: async (reason) => {
        runs.push(reason);
        if (runs.length === 2) await release.opened;
      },
    });
    const running = w.resyncNow(); // blocks in the gate
    let waiting: Promise<void>[] = [];
    try {
      await vi.waitFor(() => expect(runs).toHaveLength(2));
      waiting = [w.resyncNow(), w.resyncNow(), w.resyncNow()];
    } finally {
      release.open();
    }
    await Promise.all([running, ...waiting]);
    expect(runs).toEqual(["start", "manual", "manual"]);
  });

  it("keeps resyncing after a resync throws", async () => {
    const { store } = await stores();
    let calls = 0;
    await start({
      store,
      intervalMs: 10,
      onEvent: () => {},
      resync: () => {
        calls++;
        if (calls === 1) throw new Error("first resync fails");
      },
    });
    await vi.waitFor(() => expect(calls).toBeGreaterThanOrEqual(3), { timeout: 5000 });
  });

  it("stop() ends event delivery and periodic resyncs", async () => {
    const { store, writer } = await stores();
    const handled: string[] = [];
    let resyncs = 0;
    const w = await watchAndResync({
      store,
      intervalMs: 10,
      onEvent: (e) => void handled.push(e.name),
      resync: () => {
        resyncs++;
      },
    });
    await w.stop();
    const resyncsAtStop = resyncs;
    const arrived: string[] = [];
    await store.watch((e) => arrived.push(e.name));
    await put(writer, "after-stop");
    await vi.waitFor(() => expect(arrived).toEqual(["after-stop"]), { timeout: 5000 });
    await sleep(100); // ten intervals
    expect(handled).toEqual([]);
    expect(resyncs).toBe(resyncsAtStop);
  });
});
