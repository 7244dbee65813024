/**
 * The in-process store of a zero-install `skiff up`: the same RedisStore code
 * on the in-process Redis (memory://, src/redis/memory.ts) passes the same
 * contract as on a real redis-server.
 */
import { describe, expect, it } from "vitest";
import { createRedisStore } from "../../../src/store/redis-store.ts";
import { uniquePrefix } from "../../support/redis.ts";
import { describeStoreContract } from "./contract.ts";
import { service } from "./fixtures.ts";

describeStoreContract("in-process (memory://)", () =>
  createRedisStore({ url: `memory://${uniquePrefix("mem")}`, prefix: "skiff:" }),
);

describe("in-process store specifics", () => {
  it("keeps one keyspace per memory:// name, shared by every connection to it", async () => {
    const name = `memory://${uniquePrefix("mem")}`;
    const a = await createRedisStore({ url: name, prefix: "skiff:" });
    const b = await createRedisStore({ url: name, prefix: "skiff:" });
    const other = await createRedisStore({
      url: `memory://${uniquePrefix("mem")}`,
      prefix: "skiff:",
    });
    try {
      await a.transact(async (tx) => tx.put(service("default", "hello")));
      expect((await b.get("services", "default", "hello"))?.metadata.name).toBe("hello");
      expect(await other.get("services", "default", "hello")).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });
});
