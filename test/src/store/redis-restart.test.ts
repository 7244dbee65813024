/**
 * Redis with AOF (the documented production setup) restarted under the store:
 * nothing committed is lost, and a live store carries on once Redis is back.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createRedisStore, type RedisStore } from "../../../src/store/redis-store.ts";
import type { StoreEvent } from "../../../src/store/store.ts";
import { type RedisServer, startRedisServer } from "../../support/redis-server.ts";
import { revision, service } from "./fixtures.ts";

describe("RedisStore across a redis-server restart (appendonly)", () => {
  let dir: string;
  let server: RedisServer | undefined;
  const stores: RedisStore[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "skiff-aof-"));
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await server?.stop();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const open = async (url: string) => {
    const store = await createRedisStore({ url, prefix: "skiff:" });
    stores.push(store);
    return store;
  };

  it("keeps every object, index, artifact and the version counter", async () => {
    server = await startRedisServer({ appendonly: true, dir });
    const before = await open(server.url);
    await before.transact(async (tx) => {
      tx.put(service("default", "hello", { labels: { app: "hello" } }));
      tx.put(service("team-a", "api"));
      tx.put(revision("default", "hello-00001"));
      tx.put(revision("default", "hello-00002"));
      tx.putArtifact("default", "hello-00001", "bundle-1");
      tx.putArtifact("default", "hello-00002", "bundle-2");
    });
    const last = await before.transact(async (tx) =>
      tx.delete("revisions", "default", "hello-00002"),
    );
    const services = await before.list("services");
    const revisions = await before.list("revisions");
    await before.close();
    await server.stop();

    server = await startRedisServer({ appendonly: true, dir });
    const after = await open(server.url);
    expect(await after.list("services")).toEqual(services);
    expect(await after.list("revisions")).toEqual(revisions);
    expect(await after.list("services", undefined, { labels: { app: "hello" } })).toEqual([
      services[0],
    ]);
    expect(await after.getArtifact("default", "hello-00001")).toBe("bundle-1");
    expect(await after.getArtifact("default", "hello-00002")).toBeUndefined();
    const next = await after.transact(async (tx) => tx.put(service("default", "new")));
    expect(BigInt(next.resourceVersion) > BigInt(last.resourceVersion)).toBe(true);
  });

  it("a live store and its watchers carry on once Redis is back on the same address", async () => {
    server = await startRedisServer({ appendonly: true, dir });
    const { port } = server;
    const store = await open(server.url);
    await store.transact(async (tx) => tx.put(service("default", "hello")));
    const events: StoreEvent[] = [];
    let resubscribed = 0;
    store.onResubscribe(() => resubscribed++);
    await store.watch((e) => events.push(e));

    await server.stop();
    server = await startRedisServer({ appendonly: true, dir, port });
    await vi.waitFor(() => expect(resubscribed).toBe(1), { timeout: 15_000, interval: 50 });

    expect((await store.get("services", "default", "hello"))?.metadata.name).toBe("hello");
    await store.transact(async (tx) => tx.put(service("default", "after-restart")));
    await vi.waitFor(() => expect(events.map((e) => e.name)).toEqual(["after-restart"]), {
      timeout: 5000,
    });
  });
});
