/**
 * The in-process Redis (memory://) that a zero-install `skiff up` runs on:
 * what it must do like a real Redis for Skiff's scripts, and its snapshots.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  connectMemoryRedis,
  onDurableChange,
  restoreMemoryRedis,
  snapshotMemoryRedis,
} from "../../../src/redis/memory.ts";

const fresh = () => connectMemoryRedis(`memory://test-${randomBytes(4).toString("hex")}`);

describe("in-process Redis", () => {
  it("shares one keyspace and one pub/sub bus between connections to the same name", async () => {
    const url = `memory://test-${randomBytes(4).toString("hex")}`;
    const a = connectMemoryRedis(url);
    const b = connectMemoryRedis(url);
    const sub = a.duplicate();
    const got: string[] = [];
    sub.on("message", (_channel: string, message: string) => got.push(message));
    await sub.subscribe("ch");
    await a.set("k", "v");
    await b.publish("ch", "hi");
    expect(await b.get("k")).toBe("v");
    expect(await fresh().get("k")).toBeNull();
    await expect.poll(() => got).toEqual(["hi"]);
  });

  it("gives Lua integer replies as integers, nil array entries as false, and grown tables back as arrays", async () => {
    const r = fresh();
    await r.hset("h", "a", "1");
    const reply = await r.eval(
      `local out = {}
       out[#out + 1] = tostring(redis.call("INCR", KEYS[1]))
       local got = redis.call("HMGET", "h", "a", "missing")
       out[#out + 1] = got[1]
       out[#out + 1] = tostring(got[2])
       return out`,
      1,
      "n",
    );
    expect(reply).toEqual(["1", "1", "false"]);
    expect(await r.eval(`return redis.call("GET", "missing")`, 0)).toBeNull();
  });

  it("gives scripts a nested array reply (SSCAN's members) indexed from 1, like Redis", async () => {
    const r = fresh();
    await r.sadd("s", "a", "b", "c");
    const reply = await r.eval(
      `local page = redis.call("SSCAN", KEYS[1], "0", "COUNT", "10")
       local members = page[2]
       table.sort(members)
       return { page[1], #members, members[1], members[3] }`,
      1,
      "s",
    );
    expect(reply).toEqual(["0", 3, "a", "c"]);
  });

  it("offers cjson to scripts, like Redis", async () => {
    const r = fresh();
    const doc = { a: 'x"y\n', n: 5, f: 1.5, t: true, nested: { list: [1, "two"] }, u: "é" };
    const out = await r.eval(
      `local d = cjson.decode(ARGV[1])
       return { d.a, tostring(d.n), tostring(d.f), tostring(d.t), d.nested.list[2], d.u,
                cjson.encode({ k = d.a }) }`,
      0,
      JSON.stringify(doc),
    );
    expect(out).toEqual(['x"y\n', "5", "1.5", "true", "two", "é", JSON.stringify({ k: 'x"y\n' })]);
    await expect(r.eval(`return cjson.decode("{")`, 0)).rejects.toThrow(/cjson/);
  });

  it("runs scripts by sha after SCRIPT LOAD and answers NOSCRIPT for an unknown sha", async () => {
    const r = fresh();
    const sha = (await r.script("LOAD", "return ARGV[1]")) as string;
    expect(await r.evalsha(sha, 0, "hello")).toBe("hello");
    await expect(r.evalsha("0".repeat(40), 0)).rejects.toThrow(/^NOSCRIPT/);
  });

  it("snapshots every key without a TTL and restores strings, hashes, sets, sorted sets and lists", async () => {
    const r = fresh();
    await r.set("s", 'text with "quotes"');
    await r.set("empty", "");
    await r.hset("h", "a", "1", "b", "");
    await r.sadd("set", "x", "y");
    await r.zadd("z", 5, "m", 1.5, "n");
    await r.rpush("l", "1", "2");
    await r.set("volatile", "1", "PX", 60_000);
    await r.zadd("emptied", 1, "gone");
    await r.zrem("emptied", "gone");
    const snap = await snapshotMemoryRedis(r);

    const copy = fresh();
    expect(await restoreMemoryRedis(copy, snap)).toBe(6);
    expect(await copy.get("s")).toBe('text with "quotes"');
    expect(await copy.get("empty")).toBe("");
    expect(await copy.hgetall("h")).toEqual({ a: "1", b: "" });
    expect((await copy.smembers("set")).sort()).toEqual(["x", "y"]);
    expect(await copy.zrange("z", "0", "-1", "WITHSCORES")).toEqual(["n", "1.5", "m", "5"]);
    expect(await copy.lrange("l", 0, -1)).toEqual(["1", "2"]);
    expect(await copy.exists("volatile")).toBe(0);
    expect(await snapshotMemoryRedis(copy)).toBe(snap);
  });

  it("reports changes of durable keys, not of keys with a TTL", async () => {
    const r = fresh();
    const changed: string[] = [];
    const stop = onDurableChange(r, (key) => changed.push(key));
    await r.set("heartbeat", "1", "PX", 60_000);
    await r.hset("h", "a", "1");
    await r.eval(`redis.call("SADD", KEYS[1], "x")`, 1, "s");
    await expect.poll(() => [...new Set(changed)]).toEqual(["h", "s"]);
    changed.length = 0;
    await r.del("h");
    await expect.poll(() => [...new Set(changed)]).toEqual(["h"]);
    stop();
    changed.length = 0;
    await r.set("after", "1");
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(changed).toEqual([]);
  });

  it("refuses a file that is not a snapshot", async () => {
    await expect(restoreMemoryRedis(fresh(), JSON.stringify({ hello: 1 }))).rejects.toThrow(
      /not a Skiff in-process store snapshot/,
    );
  });
});
