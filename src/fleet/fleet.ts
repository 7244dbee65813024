/**
 * The fleet state in Redis (keys in keys.ts, records in types.ts, schemas in
 * schemas.ts): agents register and heartbeat (agents.ts), the scaler writes
 * desired instances (desired.ts), agents report instances (reports.ts) and
 * publish endpoints, gateways read endpoints (endpoints.ts). Every change is
 * announced on a pub/sub channel; readers combine that with a periodic resync
 * (watch.ts), so a lost message only delays a reaction.
 *
 * Writes that must land together (a record and its index, a change and its
 * announcement) are one Lua script (scripts.ts) or one MULTI. `Fleet` is the
 * handle over one connection that every component uses.
 */

import type { Redis } from "ioredis";
import { z } from "zod";
import { type Logger, silentLogger } from "../logging.ts";
import { redisInstanceSchema, redisPrefixSchema, redisUrlTextSchema } from "../options.ts";
import { parseOrThrow } from "../parse.ts";
import { connectRedis, quitRedis } from "../redis/connect.ts";
import { RedisSubscriber } from "../redis/subscriber.ts";
import * as agents from "./agents.ts";
import type { FleetContext } from "./context.ts";
import { readDesired, writeDesired } from "./desired.ts";
import * as endpoints from "./endpoints.ts";
import { type FleetKeys, fleetKeys } from "./keys.ts";
import * as reports from "./reports.ts";
import type { AgentRecord, DesiredInstance, Endpoint, InstanceStatus } from "./types.ts";

export type FleetChannel = "desired" | "endpoints" | "instances" | "agents" | "wake";

export interface FleetOptions {
  /** redis:// URL; the fleet owns (and closes) this connection. */
  url?: string;
  /** An existing connection; closing it is left to the caller. */
  redis?: Redis;
  /** Key prefix of the install (default "skiff:"), the same as the store's. */
  prefix?: string;
  logger?: Logger;
}

const optionsSchema = z
  .object({
    url: redisUrlTextSchema.optional(),
    redis: redisInstanceSchema.optional(),
    prefix: redisPrefixSchema,
  })
  .refine((o) => (o.url === undefined) !== (o.redis === undefined), {
    message: "give exactly one of url and redis",
    path: ["url"],
  });

export class Fleet {
  readonly keys: FleetKeys;
  readonly #ctx: FleetContext;
  readonly #owned: boolean;
  readonly #subscriber: RedisSubscriber;
  #closed = false;

  constructor(options: FleetOptions) {
    const opts = parseOrThrow(optionsSchema, options, { kind: "FleetOptions" });
    const log = options.logger ?? silentLogger;
    this.#owned = opts.redis === undefined;
    const redis =
      opts.redis ??
      connectRedis(opts.url as string, { connectionName: "skiff-fleet", logger: log });
    this.keys = fleetKeys(opts.prefix);
    this.#ctx = { redis, keys: this.keys, log };
    this.#subscriber = new RedisSubscriber({ redis, name: "fleet", logger: log });
  }

  /** The Redis connection commands go through (shared with the store in the agent). */
  get redis(): Redis {
    return this.#ctx.redis;
  }

  // ---- membership (agents.ts) ----------------------------------------------

  /** Join (or rejoin) the fleet: the record lives for ttlMs unless refreshed. Announced. */
  async registerAgent(record: AgentRecord, ttlMs: number): Promise<void> {
    await agents.beat(this.#ctx, record, ttlMs, true);
  }

  /**
   * Refresh the record (and the TTL of the agent's instance reports).
   * `rejoined` is true when the record had expired (the agent was taken for
   * dead and pruned): it must then republish its endpoints.
   */
  async heartbeat(
    record: AgentRecord,
    ttlMs: number,
    options: { announce?: boolean } = {},
  ): Promise<{ rejoined: boolean }> {
    const existed = await agents.beat(this.#ctx, record, ttlMs, options.announce ?? false);
    return { rejoined: !existed };
  }

  /** Leave the fleet: endpoints withdrawn, record and reports removed. Announced. */
  deregisterAgent(agentId: string): Promise<void> {
    return agents.deregister(this.#ctx, agentId);
  }

  getAgent(agentId: string): Promise<AgentRecord | undefined> {
    return agents.getAgent(this.#ctx, agentId);
  }

  /**
   * Agents of the fleet without pruning anyone: `live` have a record (heartbeat
   * within its TTL), `missing` are members whose record is gone. A reader that
   * cannot yet tell "dead" from "not back yet" (just after a Redis restart,
   * whose AOF restores heartbeat keys already expired) decides what to do with
   * them; `listLiveAgents` prunes them.
   */
  listAgents(): Promise<{ live: AgentRecord[]; missing: string[] }> {
    return agents.listAgents(this.#ctx);
  }

  /**
   * Agents whose record is alive (heartbeat within its TTL). Members found dead
   * are pruned on the way: removed from the set, their endpoints withdrawn and
   * their reports dropped, each change announced.
   */
  listLiveAgents(): Promise<AgentRecord[]> {
    return agents.listLiveAgents(this.#ctx);
  }

  // ---- desired instances (desired.ts: the scaler writes, the agent reads) --

  readDesired(agentId: string): Promise<DesiredInstance[]> {
    return readDesired(this.#ctx, agentId);
  }

  /** Add or replace desired instances of one agent; announced once. Unfenced (tests, tools). */
  putDesired(agentId: string, instances: DesiredInstance[]): Promise<void> {
    return writeDesired(this.#ctx, agentId, { add: instances });
  }

  /** Stop wanting these instances on the agent; announced once. Unfenced (tests, tools). */
  removeDesired(agentId: string, instanceIds: string[]): Promise<void> {
    return writeDesired(this.#ctx, agentId, { remove: instanceIds });
  }

  /** Make the agent's desired set exactly `instances`; announced once. Unfenced (tests, tools). */
  replaceDesired(agentId: string, instances: DesiredInstance[]): Promise<void> {
    return writeDesired(this.#ctx, agentId, { clear: true, add: instances });
  }

  // ---- instance reports (reports.ts: the agent writes) ---------------------

  /** Write one report; the hash gets the agent's TTL so reports die with the agent. */
  writeInstanceStatus(status: InstanceStatus, ttlMs: number): Promise<void> {
    return reports.writeInstanceStatus(this.#ctx, status, ttlMs);
  }

  removeInstanceStatus(agentId: string, instanceId: string): Promise<void> {
    return reports.removeInstanceStatus(this.#ctx, agentId, instanceId);
  }

  readInstanceStatuses(agentId: string): Promise<InstanceStatus[]> {
    return reports.readInstanceStatuses(this.#ctx, agentId);
  }

  // ---- endpoints (endpoints.ts: agents publish, gateways read) -------------

  /** Publish a ready instance; announced on the endpoints channel as "{ns}/{rev}". */
  publishEndpoint(namespace: string, revision: string, endpoint: Endpoint): Promise<void> {
    return endpoints.publishEndpoint(this.#ctx, namespace, revision, endpoint);
  }

  /** Withdraw one endpoint; true if it was published. Announced when it was. */
  withdrawEndpoint(
    namespace: string,
    revision: string,
    instanceId: string,
    agentId?: string,
  ): Promise<boolean> {
    return endpoints.withdrawEndpoint(this.#ctx, namespace, revision, instanceId, agentId);
  }

  /** Withdraw everything an agent published (its index); returns how many. */
  withdrawAgentEndpoints(agentId: string): Promise<number> {
    return endpoints.withdrawAgentEndpoints(this.#ctx, agentId);
  }

  /** What an agent's index says it published. */
  agentEndpoints(agentId: string): Promise<endpoints.PublishedRef[]> {
    return endpoints.agentEndpoints(this.#ctx, agentId);
  }

  readEndpoints(namespace: string, revision: string): Promise<Endpoint[]> {
    return endpoints.readEndpoints(this.#ctx, namespace, revision);
  }

  /** Every published endpoint, by "{ns}/{rev}" (revisions without endpoints are absent). */
  readAllEndpoints(): Promise<Map<string, Endpoint[]>> {
    return endpoints.readAllEndpoints(this.#ctx);
  }

  // ---- notifications -------------------------------------------------------

  /**
   * Receive the messages of one channel (agent ids, or "{ns}/{rev}" for
   * endpoints). Resolves once the subscription is live; returns an unsubscribe.
   */
  subscribe(
    channel: FleetChannel,
    handler: (message: string) => void,
  ): Promise<() => Promise<void>> {
    if (this.#closed) return Promise.reject(new Error("Fleet is closed"));
    return this.#subscriber.subscribe(this.keys.channels[channel], handler);
  }

  /**
   * Called whenever the subscriber connection came back after a loss and its
   * subscriptions are live again: messages meanwhile were missed, so resync.
   */
  onResubscribe(listener: () => void): () => void {
    return this.#subscriber.onResubscribe(listener);
  }

  async ping(): Promise<void> {
    await this.#ctx.redis.ping();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#subscriber.close();
    if (this.#owned) await quitRedis(this.#ctx.redis);
  }
}

/** A fleet handle over its own connection (or a shared one). */
export function createFleet(options: FleetOptions): Fleet {
  return new Fleet(options);
}
