/**
 * Keeping the gateway's memory in step with Redis: routing tables and
 * endpoints by pub/sub plus periodic resync (watch.ts; each resync re-reads
 * only the pages that changed, paged-resync.ts), slot-freed notices to the
 * dispatchers, and the periodic check of the agents behind the endpoints.
 * Agents are checked against Redis only: while it is away nothing is dropped.
 */
import type { Redis } from "ioredis";
import { parseRoutingEntry, type RoutingEntry, routingKeys } from "../src/control/routing.ts";
import { parseRevisionRef } from "../src/fleet/keys.ts";
import type { Logger } from "../src/logging.ts";
import type { RedisHealth } from "../src/redis/health.ts";
import type { RevisionDispatcher } from "./dispatcher.ts";
import type { FleetCache } from "./fleet-cache.ts";
import { type FlatHash, PagedResync, readHashPage } from "./paged-resync.ts";
import type { RouteTable } from "./routes.ts";
import { watchChannels } from "./watch.ts";

export interface RedisSyncOptions {
  redis: Redis;
  prefix: string;
  health: RedisHealth;
  routes: RouteTable;
  fleet: FleetCache;
  dispatchers: ReadonlyMap<string, RevisionDispatcher>;
  slotsChannel: string;
  resyncIntervalMs: number;
  agentCheckIntervalMs: number;
  /** Malformed routing entries are reported here. */
  logger: Logger;
  /** The background Redis work logs here (quiet while Redis is away). */
  redisLog: Logger;
}

export interface RedisSync {
  /** The first resync has run: routes are loaded. */
  readonly synced: boolean;
  /** Re-read routing tables, endpoints and agents now. */
  resyncNow(): Promise<void>;
  stop(): Promise<void>;
}

/** Subscribes, resyncs once (resolves after it) and starts the agent checks. */
export async function startRedisSync(o: RedisSyncOptions): Promise<RedisSync> {
  const { redis, routes, fleet, dispatchers, redisLog } = o;
  const rKeys = routingKeys(o.prefix);
  const parseEntry = (host: string, json: string): RoutingEntry | undefined => {
    const entry = parseRoutingEntry(json);
    if (!entry) o.logger.warn({ host }, "ignoring malformed routing entry");
    return entry;
  };
  const hostPages = new PagedResync<FlatHash>({
    read: (cursor, known) => readHashPage(redis, rKeys.hosts, cursor, known),
    apply(flat) {
      const hosts: string[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const host = flat[i] as string;
        routes.set(host, parseEntry(host, flat[i + 1] as string));
        hosts.push(host);
      }
      return hosts;
    },
    held: () => routes.hosts(),
    drop: (host) => routes.set(host, undefined),
  });
  const refreshHost = async (host: string) => {
    try {
      const json = await redis.hget(rKeys.hosts, host);
      routes.set(host, json === null ? undefined : parseEntry(host, json));
      hostPages.noticed(host);
    } catch (err) {
      redisLog.warn({ err, host }, "reading a routing entry failed; the next resync retries");
    }
  };

  let synced = false;
  const watch = await watchChannels({
    redis,
    channels: [rKeys.channel, ...fleet.channels, o.slotsChannel],
    intervalMs: o.resyncIntervalMs,
    logger: redisLog,
    onMessage(channel, message) {
      if (channel === rKeys.channel) void refreshHost(message);
      else if (channel === o.slotsChannel) {
        if (parseRevisionRef(message)) dispatchers.get(message)?.slotFreed();
      } else fleet.onMessage(channel, message);
    },
    async resync() {
      await hostPages.pass();
      await fleet.resync();
      synced = true;
    },
  });

  const agentTimer = setInterval(() => {
    if (!o.health.up) return;
    void fleet.checkAgents().catch((err: unknown) => redisLog.warn({ err }, "agent check failed"));
  }, o.agentCheckIntervalMs);
  agentTimer.unref();

  return {
    get synced() {
      return synced;
    },
    resyncNow: () => watch.resyncNow(),
    async stop() {
      clearInterval(agentTimer);
      await watch.stop();
    },
  };
}
