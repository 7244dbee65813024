/**
 * The route controller alone over its cache (real Redis, no agent, no
 * scaling): a Revision turning Ready publishes its Route's tables and marks
 * the Route Ready; a deleted Route's hosts go.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ObjectCache } from "../../../scaler/cache.ts";
import { RoutesController } from "../../../scaler/controllers/routes.ts";
import { scalerMetrics } from "../../../scaler/metrics.ts";
import { RouteReconciler } from "../../../scaler/routes.ts";
import { reportRevisionHealth } from "../../../src/control/revision-health.ts";
import { silentLogger } from "../../../src/logging.ts";
import { createRegistry } from "../../../src/metrics.ts";
import { getCondition } from "../../../src/model/index.ts";
import { createRedisStore, type RedisStore } from "../../../src/store/index.ts";
import { serviceManifest } from "../../support/fixtures.ts";
import { connect, redisUrl, uniquePrefix } from "../../support/redis.ts";
import { deployService } from "../../support/store.ts";
import { waitFor } from "../../support/wait.ts";
import { routingSummary } from "../support.ts";

const DOMAIN = "example.test";
const ctx = { domain: DOMAIN, scheme: "http" };
const prefix = uniquePrefix("rtc");
let store: RedisStore;
let redis: Redis;
let cache: ObjectCache;

beforeAll(async () => {
  store = await createRedisStore({ url: redisUrl(), prefix });
  redis = connect();
  cache = new ObjectCache({ store, resyncIntervalMs: 60_000, logger: silentLogger });
  const reconciler = new RouteReconciler({
    store,
    redis,
    prefix,
    ...ctx,
    logger: silentLogger,
    canWrite: () => true,
  });
  const routes = new RoutesController({
    cache,
    reconciler,
    metrics: scalerMetrics(createRegistry({ component: "test" })),
    logger: silentLogger,
    active: () => true,
  });
  await routes.loadPublished();
  await cache.start();
});
afterAll(async () => {
  await cache?.stop();
  await store?.close();
  redis?.disconnect();
});

describe("RoutesController", () => {
  test("a revision turning Ready publishes its Route's tables and the Route turns Ready; deleting the Service removes them", async () => {
    await deployService(store, serviceManifest("hello", { image: "example/hello:1" }), {
      domain: DOMAIN,
    });
    await cache.resyncNow();
    expect(await routingSummary(redis, prefix)).toEqual({});

    await reportRevisionHealth(store, "default", "hello-00001", { ready: true }, ctx);
    const host = `hello.default.${DOMAIN}`;
    await waitFor(
      "the tables",
      async () => (await routingSummary(redis, prefix))[host]?.[0] === "hello-00001:100",
    );
    await waitFor(
      "the Route Ready",
      async () =>
        getCondition((await store.get("routes", "default", "hello"))?.status.conditions, "Ready")
          ?.status === "True",
    );

    await store.transact(async (tx) => {
      for (const kind of ["services", "routes", "configurations", "revisions"] as const) {
        for (const o of await tx.list(kind, "default")) tx.delete(kind, "default", o.metadata.name);
      }
    });
    await waitFor("the hosts gone", async () => !(host in (await routingSummary(redis, prefix))));
  });
});
