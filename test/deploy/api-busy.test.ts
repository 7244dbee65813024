/**
 * Writes on a busy cluster (issue 15): while other revisions' status changes
 * all the time (what the scaler does as instances come and go), a user's
 * create of one Service conflicts with nothing it does not touch. Before the
 * store's bounded counts and membership-only lists, every create listed the
 * namespace's revisions (quota and status lookups), so each status write
 * elsewhere invalidated it: a bulk apply stopped after 40-60 services with
 * "revisions default/w35-00001 changed concurrently 8 times".
 *
 * The status writes come from a real second writer on the same Redis (the
 * store, as the scaler writes them), not a mock.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../../src/store/redis-store.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { redisUrl } from "../support/redis.ts";

let api: TestApi;
let store: RedisStore;

beforeAll(async () => {
  api = await startTestApi({ config: { quotas: { services: 400 } } });
  store = await createRedisStore({ url: redisUrl(), prefix: api.prefix });
});
afterAll(async () => {
  await store?.close();
  await api?.close();
});

const worker = (name: string) => ({
  apiVersion: "serving.knative.dev/v1",
  kind: "Service",
  metadata: { name },
  spec: {
    template: {
      spec: { worker: { source: `export default { fetch: () => new Response("${name}") }` } },
    },
  },
});

/**
 * Rewrite the status of every revision in `namespace` in a loop, as fast as
 * the store takes it, until stopped. Returns how many status writes landed.
 */
function churnStatus(namespace: string): { stop(): Promise<number> } {
  let stopped = false;
  let writes = 0;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const revisions = await store.list("revisions", namespace);
      for (const r of revisions) {
        if (stopped) break;
        await store.transact(async (tx) => {
          const rev = await tx.get("revisions", namespace, r.metadata.name);
          if (!rev) return;
          rev.status.conditions = [
            {
              type: "Ready",
              status: i % 2 ? "True" : "Unknown",
              message: `churn ${i}`,
              lastTransitionTime: new Date().toISOString(),
            },
          ];
          tx.put(rev);
        });
        writes++;
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return writes;
    },
  };
}

async function create(namespace: string, name: string): Promise<number> {
  const r = await api.call("POST", api.ns("services", undefined, namespace), worker(name));
  if (r.status !== 201) throw new Error(`${name}: ${r.status} ${r.text}`);
  return r.status;
}

describe("writes on a busy cluster", () => {
  it("100 services created one by one all land while the namespace's other revisions change status", async () => {
    const ns = "busy-seq";
    for (let i = 0; i < 10; i++) await create(ns, `serving-${i}`);
    const churn = churnStatus(ns);
    const failures: string[] = [];
    for (let i = 0; i < 100; i++) {
      await create(ns, `w${i}`).catch((err: Error) => failures.push(err.message));
    }
    const writes = await churn.stop();
    console.log(`100 sequential creates beside ${writes} status writes: ${failures.length} failed`);
    expect(writes).toBeGreaterThan(100); // the churn really ran alongside
    expect(failures).toEqual([]);
    const listed = (await api.call("GET", api.ns("services", undefined, ns))).json.items;
    expect(listed).toHaveLength(110);
  });

  it("10 concurrent writers creating 200 services all land while other revisions change status", async () => {
    const ns = "busy-par";
    for (let i = 0; i < 10; i++) await create(ns, `serving-${i}`);
    const churn = churnStatus(ns);
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, w) => {
        for (let i = 0; i < 20; i++) {
          await create(ns, `p${w}-${i}`).catch((err: Error) => failures.push(err.message));
        }
      }),
    );
    const writes = await churn.stop();
    console.log(
      `200 creates by 10 writers beside ${writes} status writes: ${failures.length} failed`,
    );
    expect(writes).toBeGreaterThan(100);
    expect(failures).toEqual([]);
    const listed = (await api.call("GET", api.ns("services", undefined, ns))).json.items;
    expect(listed).toHaveLength(210);
  });
});
