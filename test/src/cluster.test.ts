import { afterAll, describe, expect, it } from "vitest";
import { clusterKey, ensureClusterIdentity } from "../../src/cluster.ts";
import { connect, uniquePrefix } from "../support/redis.ts";

describe("cluster identity", () => {
  const redis = connect();
  afterAll(() => redis.quit());

  it("is created once: concurrent first uses all get the same id and secret", async () => {
    const prefix = uniquePrefix("cluster");
    const all = await Promise.all(
      Array.from({ length: 8 }, () => ensureClusterIdentity(redis, prefix)),
    );
    expect(all[0]!.id).toMatch(/^[0-9a-f]{12}$/);
    expect(all[0]!.secret).toMatch(/^[0-9a-f]{64}$/);
    for (const one of all) expect(one).toEqual(all[0]);
    expect(await redis.hgetall(clusterKey(prefix))).toEqual({
      id: all[0]!.id,
      secret: all[0]!.secret,
    });
  });

  it("differs between installs (prefixes)", async () => {
    const a = await ensureClusterIdentity(redis, uniquePrefix("cluster"));
    const b = await ensureClusterIdentity(redis, uniquePrefix("cluster"));
    expect(a.id).not.toBe(b.id);
    expect(a.secret).not.toBe(b.secret);
  });
});
