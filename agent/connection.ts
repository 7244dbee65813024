/**
 * The agent's Redis connection: opened under the agent's name, the install's
 * identity read (part of the default agent id, the label of every container,
 * and the secret gateways show the workerd router), the default id settled,
 * and an outage logged once (src/redis/health.ts).
 */
import type { Redis } from "ioredis";
import { type ClusterIdentity, ensureClusterIdentity } from "../src/cluster.ts";
import type { Logger } from "../src/logging.ts";
import { openRedis } from "../src/redis/connect.ts";
import { RedisHealth } from "../src/redis/health.ts";
import { agentId } from "./identity.ts";
import type { AgentOptions } from "./options.ts";

export interface AgentConnection {
  redis: Redis;
  cluster: ClusterIdentity;
  /** The agent id: the given one, or derived from the data address and the cluster id. */
  id: string;
  log: Logger;
  health: RedisHealth;
}

/**
 * `opened` receives the connection as soon as it exists, so that a failure
 * after it (no identity) still closes it. `log` is the agent's logger for an id.
 */
export async function connectAgent(
  o: AgentOptions,
  given: { id: string; log: Logger },
  logFor: (id: string) => Logger,
  opened: (redis: Redis) => void,
): Promise<AgentConnection> {
  // No `logger`: RedisHealth (below, once the id is settled) logs an outage once.
  const redis = await openRedis(o.redisUrl, {
    connectionName: o.id ? `skiff-agent-${o.id}` : "skiff-agent",
  });
  opened(redis);
  const ignore = () => {};
  redis.on("error", ignore);
  const cluster = await ensureClusterIdentity(redis, o.redisPrefix);
  let { id, log } = given;
  if (!o.id) {
    // Two installs on one host (two `skiff up`) must never share an agent id.
    id = agentId({ address: o.address, clusterId: cluster.id });
    log = logFor(id);
    // Named like an agent with a given id, now and after a reconnect.
    redis.options.connectionName = `skiff-agent-${id}`;
    try {
      await redis.client("SETNAME", redis.options.connectionName);
    } catch {
      // Cosmetic (CLIENT LIST); the in-process store has no CLIENT command (throws at once).
    }
  }
  const health = new RedisHealth(redis, log, {
    whileLost: "instances keep serving; heartbeats and reports wait until it is back",
    onBack: "resyncing",
  });
  redis.off("error", ignore);
  return { redis, cluster, id, log, health };
}

/**
 * A failure of Redis work: debug while Redis is away (its outage is logged
 * once by RedisHealth), `level` with the stack otherwise.
 */
export function logRedisFailure(
  log: Logger,
  health: RedisHealth | undefined,
  f: { err: unknown; msg: string; level: "warn" | "error"; instance: string | undefined },
): void {
  const at = health?.failureLevel(f.level) ?? f.level;
  const fields = f.instance === undefined ? {} : { instance: f.instance };
  if (at === "debug") log.debug({ ...fields, err: (f.err as Error)?.message }, f.msg);
  else log[at]({ ...fields, err: f.err }, f.msg);
}
