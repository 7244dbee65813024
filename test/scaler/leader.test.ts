/**
 * Leader election against a real Redis. Leases are short here (hundreds of
 * ms) so hand-overs happen within the test; waits are generous upper bounds,
 * not speed claims.
 */
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import {
  type DeposedReason,
  type LeaderElection,
  type LeaderElectionOptions,
  type Leadership,
  leaderElectionSettingsSchema,
  startLeaderElection,
} from "../../scaler/leader.ts";
import { connect, uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

interface Contender {
  id: string;
  redis: Redis;
  election: LeaderElection;
  elected: Leadership[];
  deposed: DeposedReason[];
}

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!().catch(() => {});
});

/** Shared event log across contenders, to check ordering. */
let log: string[] = [];

function contender(key: string, id: string, over: Partial<LeaderElectionOptions> = {}): Contender {
  const redis = connect();
  const elected: Leadership[] = [];
  const deposed: DeposedReason[] = [];
  const election = startLeaderElection({
    redis,
    key,
    id,
    leaseMs: 600,
    renewEveryMs: 150,
    onElected: (l) => {
      elected.push(l);
      log.push(`${id}:elected`);
    },
    onDeposed: (r) => {
      deposed.push(r);
      log.push(`${id}:deposed:${r}`);
    },
    ...over,
  });
  const c: Contender = { id, redis, election, elected, deposed };
  cleanup.push(async () => {
    await c.election.stop();
    redis.disconnect();
  });
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("leader election", () => {
  it("of two contenders exactly one leads, and keeps leading while it renews", async () => {
    log = [];
    const key = `${uniquePrefix("leader")}lease`;
    const a = contender(key, "a");
    const b = contender(key, "b");
    await waitFor("a leader", () => a.election.isLeader || b.election.isLeader, 10_000);
    const [leader, standby] = a.election.isLeader ? [a, b] : [b, a];
    // Several lease periods: renewals keep it, the standby never gets in.
    await sleep(2_000);
    expect(leader.election.isLeader).toBe(true);
    expect(standby.election.isLeader).toBe(false);
    expect(log).toEqual([`${leader.id}:elected`]);
    expect(await leader.redis.get(key)).toBe(leader.election.leadership!.value);
  });

  it("the standby takes over when the leader dies without releasing", async () => {
    log = [];
    const key = `${uniquePrefix("leader")}lease`;
    const a = contender(key, "a");
    await waitFor("a elected", () => a.election.isLeader, 10_000);
    const b = contender(key, "b");
    await sleep(300);
    expect(b.election.isLeader).toBe(false);
    await a.election.stop({ release: false }); // a crash: the lease runs out on its own
    await waitFor("b elected", () => b.election.isLeader, 10_000);
    expect(await b.redis.get(key)).toBe(b.election.leadership!.value);
    expect(b.elected[0]!.fencingToken).toBeGreaterThan(a.elected[0]!.fencingToken);
  });

  it("a leader that can no longer reach Redis deposes itself before the standby is elected", async () => {
    log = [];
    const key = `${uniquePrefix("leader")}lease`;
    const a = contender(key, "a");
    await waitFor("a elected", () => a.election.isLeader, 10_000);
    const b = contender(key, "b");
    a.redis.disconnect(); // its renewals now fail
    await waitFor("b elected", () => b.election.isLeader, 10_000);
    expect(a.deposed).toEqual(["expired"]);
    expect(a.election.isLeader).toBe(false);
    expect(log).toEqual(["a:elected", "a:deposed:expired", "b:elected"]);
  });

  it("a leader whose lease was deleted is deposed promptly (lost) and may win it again", async () => {
    log = [];
    const key = `${uniquePrefix("leader")}lease`;
    const a = contender(key, "a", { leaseMs: 30_000, renewEveryMs: 100, retryEveryMs: 100 });
    await waitFor("a elected", () => a.election.isLeader, 10_000);
    const first = a.elected[0]!;
    await a.redis.del(key);
    await waitFor("a deposed", () => a.deposed.length > 0, 5_000);
    expect(a.deposed[0]).toBe("lost");
    await waitFor("a re-elected", () => a.elected.length === 2, 5_000);
    expect(a.elected[1]!.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(a.elected[1]!.value).not.toBe(first.value);
  });

  it("a leader whose lease now holds another value is deposed and stays out until it expires", async () => {
    log = [];
    const key = `${uniquePrefix("leader")}lease`;
    const a = contender(key, "a", { leaseMs: 30_000, renewEveryMs: 100, retryEveryMs: 100 });
    await waitFor("a elected", () => a.election.isLeader, 10_000);
    await a.redis.set(key, "someone-else", "PX", 60_000);
    await waitFor("a deposed", () => a.deposed.length > 0, 5_000);
    expect(a.deposed).toEqual(["lost"]);
    await sleep(500);
    expect(a.election.isLeader).toBe(false);
    expect(await a.redis.get(key)).toBe("someone-else");
  });

  it("a graceful stop releases the lease, so the standby takes over long before it would expire", async () => {
    log = [];
    const key = `${uniquePrefix("leader")}lease`;
    const opts = { leaseMs: 60_000, renewEveryMs: 100, retryEveryMs: 100 };
    const a = contender(key, "a", opts);
    await waitFor("a elected", () => a.election.isLeader, 10_000);
    const b = contender(key, "b", opts);
    await sleep(300);
    expect(b.election.isLeader).toBe(false);
    await a.election.stop();
    // Without the release this would take the whole 60 s lease.
    await waitFor("b elected", () => b.election.isLeader, 5_000);
    expect(log).toEqual(["a:elected", "a:deposed:stopped", "b:elected"]);
  });

  it("rejects a renewal interval that is not shorter than the lease", () => {
    expect(() =>
      leaderElectionSettingsSchema.parse({ key: "k", id: "a", leaseMs: 1000, renewEveryMs: 1000 }),
    ).toThrow(/shorter than leaseMs/);
    expect(leaderElectionSettingsSchema.parse({ key: "k", id: "a" })).toMatchObject({
      leaseMs: 3000,
      renewEveryMs: 1000,
      retryEveryMs: 1000,
    });
  });
});
