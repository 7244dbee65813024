/** One subscriber connection for many channel handlers (store, fleet, gateway), on the run's real Redis. */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/logging.ts";
import { connectRedis } from "../../../src/redis/connect.ts";
import { RedisSubscriber } from "../../../src/redis/subscriber.ts";
import { connect, redisUrl } from "../../support/redis.ts";

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function open(name = `sub-${randomBytes(3).toString("hex")}`) {
  const redis = connectRedis(redisUrl(), { connectionName: `skiff-test-${name}` });
  const sub = new RedisSubscriber({ redis, name, logger: silentLogger });
  const raw = connect();
  closers.push(
    () => redis.disconnect(),
    () => sub.close(),
    () => raw.disconnect(),
  );
  return { redis, sub, raw, connectionName: `skiff-test-${name}:sub` };
}

const channel = () => `test:sub:${randomBytes(4).toString("hex")}`;

/** Ids of the clients with this connection name. */
async function clientIds(raw: ReturnType<typeof connect>, name: string): Promise<string[]> {
  const list = (await raw.client("LIST")) as string;
  return list
    .split("\n")
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => line.match(/\bid=(\d+)/)![1]!);
}

async function subscribers(raw: ReturnType<typeof connect>, ch: string): Promise<number> {
  const [, n] = (await raw.pubsub("NUMSUB", ch)) as [string, number];
  return Number(n);
}

describe("RedisSubscriber", () => {
  it("delivers each channel's messages to its handlers over one connection", async () => {
    const { sub, raw, connectionName } = open();
    const [a, b] = [channel(), channel()];
    const got: string[] = [];
    await sub.subscribe(a, (m, ch) => got.push(`1:${ch === a ? "a" : "?"}:${m}`));
    await sub.subscribe(a, (m) => got.push(`2:${m}`));
    await sub.subscribe(b, (m) => got.push(`b:${m}`));
    await raw.publish(a, "x");
    await raw.publish(b, "y");
    await expect.poll(() => got.sort()).toEqual(["1:a:x", "2:x", "b:y"]);
    expect(await clientIds(raw, connectionName)).toHaveLength(1);
  });

  it("unsubscribes a channel only when its last handler is removed", async () => {
    const { sub, raw } = open();
    const ch = channel();
    const off1 = await sub.subscribe(ch, () => {});
    const off2 = await sub.subscribe(ch, () => {});
    await off1();
    expect(await subscribers(raw, ch)).toBe(1);
    await off2();
    await expect.poll(() => subscribers(raw, ch)).toBe(0);
  });

  it("a handler that throws does not stop the others", async () => {
    const { sub, raw } = open();
    const ch = channel();
    const got: string[] = [];
    await sub.subscribe(ch, () => {
      throw new Error("boom");
    });
    await sub.subscribe(ch, (m) => got.push(m));
    await raw.publish(ch, "still delivered");
    await expect.poll(() => got).toEqual(["still delivered"]);
  });

  it("after its connection is killed it resubscribes, tells the resync listeners, and delivers again", async () => {
    const { sub, raw, connectionName } = open();
    const ch = channel();
    const got: string[] = [];
    let resubscribed = 0;
    sub.onResubscribe(() => resubscribed++);
    await sub.subscribe(ch, (m) => got.push(m));
    // The fault is real: Redis drops the subscriber's connection.
    const [id] = await clientIds(raw, connectionName);
    expect(await raw.client("KILL", "ID", id!)).toBe(1);
    await expect.poll(() => resubscribed, { timeout: 10_000 }).toBe(1);
    await raw.publish(ch, "after");
    await expect.poll(() => got).toEqual(["after"]);
  });
});
