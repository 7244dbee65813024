/**
 * The scaler's object cache over a real Redis store: a burst of store events
 * is read ahead (the reads go out together, not one round trip per event),
 * and events are still applied and told to listeners in order, each after the
 * cache holds it.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type CacheChange, ObjectCache } from "../../scaler/cache.ts";
import { silentLogger } from "../../src/logging.ts";
import { createRedisStore, type RedisStore } from "../../src/store/index.ts";
import { serviceManifest } from "../support/fixtures.ts";
import { watchInFlight } from "../support/in-flight.ts";
import { redisUrl, uniquePrefix } from "../support/redis.ts";
import { deployService } from "../support/store.ts";
import { waitFor } from "../support/wait.ts";

let store: RedisStore;
let cache: ObjectCache;
let reads: ReturnType<typeof watchInFlight<RedisStore>>;
const changes: Array<{ change: CacheChange; cachedThen: unknown }> = [];

beforeAll(async () => {
  store = await createRedisStore({ url: redisUrl(), prefix: uniquePrefix("cache") });
  // The real store, its reads counted.
  reads = watchInFlight(store, "get");
  cache = new ObjectCache({ store: reads.proxy, resyncIntervalMs: 600_000, logger: silentLogger });
  cache.listen({
    onChange(change) {
      if (change.kind === "revisions") {
        changes.push({ change, cachedThen: cache.revisions.get(change.ref) });
      }
    },
  });
  await cache.start();
});

afterAll(async () => {
  await cache?.stop();
  await store?.close();
});

async function create(name: string): Promise<void> {
  await deployService(store, serviceManifest(name, { image: "example/hello:1" }));
}

describe("ObjectCache", () => {
  test("reads a burst of events ahead, and applies them in order, each before its listeners hear of it", async () => {
    const names = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
    await Promise.all(names.map(create));
    await waitFor("every revision cached", () =>
      names.every((n) => cache.revisions.has(`default/${n}-00001`)),
    );
    expect(reads.most()).toBeGreaterThan(1);
    for (const { change, cachedThen } of changes) expect(cachedThen).toBe(change.after);
    // What the cache holds is what the store holds.
    for (const n of names) {
      const stored = await store.get("revisions", "default", `${n}-00001`);
      expect(cache.revisions.get(`default/${n}-00001`)?.metadata.resourceVersion).toBe(
        stored?.metadata.resourceVersion,
      );
    }
  });
});
