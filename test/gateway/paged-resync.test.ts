/**
 * The gateway's paged resync against a real Redis: a hash of many SCAN pages
 * mirrored in memory, re-read only where it changed, and repaired by the next
 * pass whatever notices were missed.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import {
  type FlatHash,
  PAGE_COUNT,
  PagedResync,
  readHashPage,
} from "../../gateway/paged-resync.ts";
import { connect, uniquePrefix } from "../support/redis.ts";

const prefix = uniquePrefix("gw-paged");
/**
 * Several pages, kept as a hash table (past 128 fields), short of a power of
 * two: one more field does not grow the table, which would move every field
 * to another page and have each pass read everything.
 */
const FIELDS = PAGE_COUNT * 7;
let redis: Redis;
let key: string;
let n = 0;

beforeAll(() => {
  redis = connect();
});
afterAll(() => redis?.disconnect());
beforeEach(async () => {
  key = `${prefix}h${n++}`;
  const fields: string[] = [];
  for (let i = 0; i < FIELDS; i++) fields.push(`f${i}`, `v${i}`);
  await redis.hset(key, ...fields);
});

/** A Map kept in step with the hash, counting the pages it was handed. */
function mirror() {
  const cache = new Map<string, string>();
  const m = {
    cache,
    /** Pages whose contents were applied, since the last reset. */
    applied: 0,
    pages: new PagedResync<FlatHash>({
      read: (cursor, known) => readHashPage(redis, key, cursor, known),
      apply(flat) {
        m.applied++;
        const members: string[] = [];
        for (let i = 0; i < flat.length; i += 2) {
          cache.set(flat[i] as string, flat[i + 1] as string);
          members.push(flat[i] as string);
        }
        return members;
      },
      held: () => cache.keys(),
      drop: (field) => cache.delete(field),
    }),
    /** What a notice does: re-read one field on its own. */
    async notice(field: string) {
      const value = await redis.hget(key, field);
      if (value === null) cache.delete(field);
      else cache.set(field, value);
      m.pages.noticed(field);
    },
  };
  return m;
}

async function stored(): Promise<Map<string, string>> {
  return new Map(Object.entries(await redis.hgetall(key)));
}

describe("PagedResync", () => {
  test("reads every page at the first pass, then no page while the hash is unchanged", async () => {
    const m = mirror();
    await m.pages.pass();
    expect(m.cache).toEqual(await stored());
    expect(m.applied).toBeGreaterThan(1);
    m.applied = 0;
    await m.pages.pass();
    expect(m.applied).toBe(0);
  });

  test("re-reads only the page holding a changed value", async () => {
    const m = mirror();
    await m.pages.pass();
    m.applied = 0;
    await redis.hset(key, "f7", "changed");
    await m.pages.pass();
    expect(m.applied).toBe(1);
    expect(m.cache.get("f7")).toBe("changed");
    expect(m.cache).toEqual(await stored());
  });

  test("drops a field removed with no notice, and takes in one added with none", async () => {
    const m = mirror();
    await m.pages.pass();
    await redis.hdel(key, "f3");
    await redis.hset(key, "new", "x");
    await m.pages.pass();
    expect(m.cache.has("f3")).toBe(false);
    expect(m.cache.get("new")).toBe("x");
    expect(m.cache).toEqual(await stored());
  });

  test("a change a notice applied, then undone with its notice missed, is repaired by the next pass", async () => {
    const m = mirror();
    await m.pages.pass();
    await redis.hset(key, "f5", "changed");
    await m.notice("f5");
    expect(m.cache.get("f5")).toBe("changed");
    // Back to the contents the page's digest was taken of; this notice is lost.
    await redis.hset(key, "f5", "v5");
    await m.pages.pass();
    expect(m.cache.get("f5")).toBe("v5");
  });

  test("a field a notice added, then removed with its notice missed, is dropped by the next pass", async () => {
    const m = mirror();
    await m.pages.pass();
    await redis.hset(key, "brief", "x");
    await m.notice("brief");
    expect(m.cache.get("brief")).toBe("x");
    await redis.hdel(key, "brief");
    await m.pages.pass();
    expect(m.cache.has("brief")).toBe(false);
    expect(m.cache).toEqual(await stored());
  });

  test("empties the mirror when the hash is deleted", async () => {
    const m = mirror();
    await m.pages.pass();
    await redis.del(key);
    await m.pages.pass();
    expect(m.cache.size).toBe(0);
  });
});
