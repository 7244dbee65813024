/**
 * Orphan reaping (agent/orphans.ts) against real Docker and Redis: a dead
 * agent's containers of this cluster are removed after the grace; a live
 * agent's, another cluster's, and any while Redis cannot be read, are not.
 */
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ContainerRuntime } from "../../agent/container/runtime.ts";
import { heartbeatAlive, OrphanReaper } from "../../agent/orphans.ts";
import { ensureClusterIdentity } from "../../src/cluster.ts";
import { fleetKeys } from "../../src/fleet/keys.ts";
import { silentLogger } from "../../src/logging.ts";
import { helloImage } from "../support/images.ts";
import { connect } from "../support/redis.ts";
import { type AgentTestEnv, agentTestEnv, waitFor } from "./support.ts";

const docker = new Docker();
let image: string;
let redis: Redis;
const made: string[] = [];

beforeAll(async () => {
  image = await helloImage(docker);
  redis = connect();
});
afterAll(async () => {
  await Promise.all(
    made.map((id) =>
      docker
        .getContainer(id)
        .remove({ force: true })
        .catch(() => {}),
    ),
  );
  redis?.disconnect();
});

const hex = () => randomBytes(3).toString("hex");

/** A running container labelled as a Skiff instance of `cluster` owned by agent `owner`. */
async function labelled(cluster: string, owner: string): Promise<string> {
  const c = await docker.createContainer({
    Image: image,
    name: `skiff-orphan-test-${hex()}`,
    Labels: { "skiff.managed": "true", "skiff.cluster": cluster, "skiff.owner": owner },
    HostConfig: { NetworkMode: "none" },
  });
  made.push(c.id);
  await c.start();
  return c.id;
}

async function exists(id: string): Promise<boolean> {
  try {
    await docker.getContainer(id).inspect();
    return true;
  } catch {
    return false;
  }
}

describe("an agent reaps a dead agent's containers on its resync", () => {
  let env: AgentTestEnv;
  beforeAll(async () => {
    env = await agentTestEnv("orp");
  });
  afterAll(() => env?.cleanup());

  test("a dead owner's are removed after the grace; a live owner's and another cluster's stay", async () => {
    const { id: cluster } = await ensureClusterIdentity(redis, env.prefix);
    const keys = fleetKeys(env.prefix);
    const dead = `test-orp-dead-${hex()}`;
    const live = `test-orp-live-${hex()}`;
    // The live agent's heartbeat record (only its existence counts).
    await redis.set(keys.agent(live), "{}", "PX", 120_000);
    const deadC = await labelled(cluster, dead);
    const liveC = await labelled(cluster, live);
    const foreignC = await labelled(`t${randomBytes(5).toString("hex")}`, dead);

    const started = performance.now();
    // heartbeatTtlMs 1000: the grace is 2000 ms; resync every 300 ms.
    await env.startAgent({ heartbeatTtlMs: 1_000, resyncIntervalMs: 300 });
    await waitFor(
      "the dead agent's container to be reaped",
      async () => !(await exists(deadC)),
      20_000,
    );
    const after = performance.now() - started;
    console.log(`dead agent's container reaped ${Math.round(after)} ms after the agent started`);
    // Never on a single read: the first sight of the absence starts the grace.
    expect(after).toBeGreaterThanOrEqual(2_000);

    // A second dead owner, reaped in turn: by then the others lived through two graces of sweeps.
    const dead2C = await labelled(cluster, `test-orp-dead-${hex()}`);
    await waitFor(
      "the second dead agent's container to be reaped",
      async () => !(await exists(dead2C)),
      20_000,
    );
    expect(await exists(liveC)).toBe(true);
    expect(await exists(foreignC)).toBe(true);
  }, 60_000);
});

describe("OrphanReaper", () => {
  test("reaps nothing while Redis cannot be read, and starts its grace over once it can", async () => {
    const cluster = `t${randomBytes(5).toString("hex")}`;
    const prefix = `orq-${hex()}:`;
    const runtime = new ContainerRuntime({ owner: `test-orq-self-${hex()}`, clusterId: cluster });
    // A client that never connected: what an agent holds during an outage (no mock of Redis).
    const down = new Redis({ host: "127.0.0.1", port: 1, lazyConnect: true });
    const key = fleetKeys(prefix).agent;
    let reachable = false;
    const upAlive = heartbeatAlive(redis, key);
    const downAlive = heartbeatAlive(down, key);
    let now = 0;
    const reaper = new OrphanReaper({
      runtime,
      isAlive: (id) => (reachable ? upAlive(id) : downAlive(id)),
      graceMs: 2_000,
      logger: silentLogger,
      now: () => now,
    });
    try {
      const dead = `test-orq-dead-${hex()}`;
      const c = await labelled(cluster, dead);

      expect(await reaper.sweep()).toEqual([]);
      now = 10_000;
      expect(await reaper.sweep()).toEqual([]);
      expect(await exists(c)).toBe(true);

      // Redis answers: one read is a first sight only, however long the outage was.
      reachable = true;
      now = 20_000;
      expect(await reaper.sweep()).toEqual([]);
      expect(await exists(c)).toBe(true);

      // Seen alive in between: the grace starts over.
      await redis.set(key(dead), "{}", "PX", 60_000);
      now = 21_000;
      expect(await reaper.sweep()).toEqual([]);
      await redis.del(key(dead));
      now = 23_000;
      expect(await reaper.sweep()).toEqual([]);
      now = 24_000;
      expect(await reaper.sweep()).toEqual([]);
      expect(await exists(c)).toBe(true);

      now = 25_000;
      expect(await reaper.sweep()).toEqual([dead]);
      expect(await exists(c)).toBe(false);
    } finally {
      down.disconnect();
      await runtime.close();
    }
  }, 60_000);

  test("never lists or removes this agent's own containers", async () => {
    const cluster = `t${randomBytes(5).toString("hex")}`;
    const self = `test-orq-self-${hex()}`;
    const runtime = new ContainerRuntime({ owner: self, clusterId: cluster });
    try {
      const c = await labelled(cluster, self);
      expect(await runtime.otherOwners()).toEqual(new Map());
      await expect(runtime.removeOwnedBy(self)).rejects.toThrow(/own containers/);
      expect(await exists(c)).toBe(true);
    } finally {
      await runtime.close();
    }
  }, 30_000);
});
