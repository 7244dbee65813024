/**
 * The fleet state in Redis (keys in keys.ts, records in types.ts): agents
 * register and heartbeat, the scaler writes desired instances, agents report
 * instances and publish endpoints, gateways read endpoints. Every change is
 * announced on a pub/sub channel; readers combine that with a periodic resync
 * (watch.ts), so a lost message only delays a reaction.
 *
 * Writes that must land together (a record and its index, a change and its
 * announcement) are one Lua script or one MULTI.
 */

import type { Redis } from "ioredis";
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { type Logger, silentLogger } from "../logging.ts";
import { redisInstanceSchema, redisPrefixSchema, redisUrlTextSchema } from "../options.ts";
import { connectRedis, quitRedis } from "../redis/connect.ts";
import { RedisSubscriber } from "../redis/subscriber.ts";
import { type FleetKeys, fleetKeys, parseRevisionRef, revisionRef } from "./keys.ts";
import {
  agentRecordSchema,
  desiredInstanceSchema,
  endpointSchema,
  fleetId,
  fleetSegment,
  instanceStatusSchema,
} from "./schemas.ts";
import {
  DEREGISTER,
  HEARTBEAT,
  PRUNE,
  PUBLISH_ENDPOINT,
  WITHDRAW_AGENT,
  WITHDRAW_ENDPOINT,
} from "./scripts.ts";
import type { AgentRecord, DesiredInstance, Endpoint, InstanceStatus } from "./types.ts";

export type FleetChannel = "desired" | "endpoints" | "instances" | "agents";

export interface FleetOptions {
  /** redis:// URL; the fleet owns (and closes) this connection. */
  url?: string;
  /** An existing connection; closing it is left to the caller. */
  redis?: Redis;
  /** Key prefix of the install (default "skiff:"), the same as the store's. */
  prefix?: string;
  logger?: Logger;
}

/** One endpoint an agent published, as its index lists it. */
export interface PublishedRef {
  instanceId: string;
  namespace: string;
  revision: string;
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

function invalid(kind: string, issues: z.core.$ZodIssue[], prefix = ""): ValidationError {
  return ValidationError.of(
    issues.map((i) => ({
      field: [prefix, ...i.path.map(String)].filter(Boolean).join("."),
      message: i.message,
      reason: "FieldValueInvalid",
    })),
    { kind },
  );
}

function check<T>(schema: z.ZodType<T>, value: unknown, kind: string, field = ""): T {
  const r = schema.safeParse(value);
  if (!r.success) throw invalid(kind, r.error.issues, field);
  return r.data;
}

function positiveMs(ms: number, field: string): string {
  if (!Number.isInteger(ms) || ms <= 0) {
    throw ValidationError.of([
      { field, message: `must be a positive whole number of milliseconds (got ${ms})` },
    ]);
  }
  return String(ms);
}

export class Fleet {
  readonly keys: FleetKeys;
  readonly #redis: Redis;
  readonly #owned: boolean;
  readonly #log: Logger;
  readonly #channels: Record<FleetChannel, string>;
  readonly #subscriber: RedisSubscriber;
  #closed = false;

  constructor(options: FleetOptions) {
    const opts = check(optionsSchema, options, "FleetOptions");
    this.#owned = opts.redis === undefined;
    this.#redis =
      opts.redis ??
      connectRedis(opts.url as string, {
        connectionName: "skiff-fleet",
        logger: options.logger ?? silentLogger,
      });
    this.#log = options.logger ?? silentLogger;
    this.keys = fleetKeys(opts.prefix);
    this.#channels = this.keys.channels;
    this.#subscriber = new RedisSubscriber({
      redis: this.#redis,
      name: "fleet",
      logger: this.#log,
    });
  }

  /** The Redis connection commands go through (shared with the store in the agent). */
  get redis(): Redis {
    return this.#redis;
  }

  // ---- membership ----------------------------------------------------------

  /** Join (or rejoin) the fleet: the record lives for ttlMs unless refreshed. Announced. */
  async registerAgent(record: AgentRecord, ttlMs: number): Promise<void> {
    await this.#beat(record, ttlMs, true);
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
    const existed = await this.#beat(record, ttlMs, options.announce ?? false);
    return { rejoined: !existed };
  }

  async #beat(record: AgentRecord, ttlMs: number, announce: boolean): Promise<boolean> {
    const r = check(agentRecordSchema, record, "AgentRecord");
    const ttl = positiveMs(ttlMs, "ttlMs");
    const k = this.keys;
    const existed = await HEARTBEAT.run(
      this.#redis,
      [k.agent(r.id), k.agents, k.instances(r.id)],
      [
        JSON.stringify(r),
        ttl,
        String(r.heartbeatAt),
        r.id,
        k.channels.agents,
        announce ? "1" : "0",
      ],
    );
    return existed === 1;
  }

  /** Leave the fleet: endpoints withdrawn, record and reports removed. Announced. */
  async deregisterAgent(agentId: string): Promise<void> {
    const id = check(fleetId, agentId, "Agent", "id");
    const k = this.keys;
    await DEREGISTER.run(
      this.#redis,
      [k.agent(id), k.agents, k.instances(id), k.agentEndpoints(id), k.endpointRevisions],
      [id, this.#endpointsPrefix(), k.channels.endpoints, k.channels.agents],
    );
  }

  async getAgent(agentId: string): Promise<AgentRecord | undefined> {
    const raw = await this.#redis.get(this.keys.agent(check(fleetId, agentId, "Agent", "id")));
    return raw === null ? undefined : this.#parse(agentRecordSchema, raw, "agent record");
  }

  /**
   * Agents of the fleet without pruning anyone: `live` have a record (heartbeat
   * within its TTL), `missing` are members whose record is gone. A reader that
   * cannot yet tell "dead" from "not back yet" (just after a Redis restart,
   * whose AOF restores heartbeat keys already expired) decides what to do with
   * them; `listLiveAgents` prunes them.
   */
  async listAgents(): Promise<{ live: AgentRecord[]; missing: string[] }> {
    const k = this.keys;
    const ids = await this.#redis.zrange(k.agents, "0", "-1");
    if (ids.length === 0) return { live: [], missing: [] };
    // GETs in one pipeline, not MGET: the scaler's ACL user has GET (deploy/redis/acl.ts).
    const pipe = this.#redis.pipeline();
    for (const id of ids) pipe.get(k.agent(id));
    const raws = ((await pipe.exec()) ?? []).map(([err, v]) => {
      if (err) throw err;
      return v as string | null;
    });
    const live: AgentRecord[] = [];
    const missing: string[] = [];
    ids.forEach((id, i) => {
      const raw = raws[i];
      if (raw === null || raw === undefined) missing.push(id);
      else {
        const r = this.#parse(agentRecordSchema, raw, "agent record");
        if (r) live.push(r);
      }
    });
    return { live, missing };
  }

  /**
   * Agents whose record is alive (heartbeat within its TTL). Members found dead
   * are pruned on the way: removed from the set, their endpoints withdrawn and
   * their reports dropped, each change announced.
   */
  async listLiveAgents(): Promise<AgentRecord[]> {
    const k = this.keys;
    const reply = (await PRUNE.run(
      this.#redis,
      [k.agents, k.endpointRevisions],
      [
        k.agent(""),
        k.agentEndpoints(""),
        this.#endpointsPrefix(),
        k.instances(""),
        k.channels.endpoints,
        k.channels.agents,
      ],
    )) as string[];
    const split = reply.indexOf("");
    const dead = reply.slice(split + 1);
    if (dead.length) this.#log.info({ dead }, "pruned dead agents");
    return reply
      .slice(0, split)
      .map((raw) => this.#parse(agentRecordSchema, raw, "agent record"))
      .filter((r): r is AgentRecord => r !== undefined);
  }

  // ---- desired instances (the scaler writes, the agent reads) --------------

  async readDesired(agentId: string): Promise<DesiredInstance[]> {
    const all = await this.#redis.hgetall(
      this.keys.desired(check(fleetId, agentId, "Agent", "id")),
    );
    return this.#parseAll(desiredInstanceSchema, all, "desired instance");
  }

  /** Add or replace desired instances of one agent; announced once. */
  async putDesired(agentId: string, instances: DesiredInstance[]): Promise<void> {
    const id = check(fleetId, agentId, "Agent", "id");
    if (instances.length === 0) return;
    const values = instances.map((d, i) =>
      check(desiredInstanceSchema, d, "DesiredInstance", `[${i}]`),
    );
    const fields = values.flatMap((d) => [d.id, JSON.stringify(d)]);
    await this.#exec(
      this.#redis
        .multi()
        .hset(this.keys.desired(id), ...fields)
        .publish(this.#channels.desired, id),
    );
  }

  /** Stop wanting these instances on the agent; announced once. */
  async removeDesired(agentId: string, instanceIds: string[]): Promise<void> {
    const id = check(fleetId, agentId, "Agent", "id");
    if (instanceIds.length === 0) return;
    await this.#exec(
      this.#redis
        .multi()
        .hdel(this.keys.desired(id), ...instanceIds)
        .publish(this.#channels.desired, id),
    );
  }

  /** Make the agent's desired set exactly `instances`; announced once. */
  async replaceDesired(agentId: string, instances: DesiredInstance[]): Promise<void> {
    const id = check(fleetId, agentId, "Agent", "id");
    const values = instances.map((d, i) =>
      check(desiredInstanceSchema, d, "DesiredInstance", `[${i}]`),
    );
    const m = this.#redis.multi().del(this.keys.desired(id));
    if (values.length) {
      m.hset(this.keys.desired(id), ...values.flatMap((d) => [d.id, JSON.stringify(d)]));
    }
    await this.#exec(m.publish(this.#channels.desired, id));
  }

  // ---- instance reports (the agent writes) ---------------------------------

  /** Write one report; the hash gets the agent's TTL so reports die with the agent. */
  async writeInstanceStatus(status: InstanceStatus, ttlMs: number): Promise<void> {
    const s = check(instanceStatusSchema, status, "InstanceStatus");
    const ttl = positiveMs(ttlMs, "ttlMs");
    const key = this.keys.instances(s.agentId);
    await this.#exec(
      this.#redis
        .multi()
        .hset(key, s.id, JSON.stringify(s))
        .pexpire(key, ttl)
        .publish(this.#channels.instances, s.agentId),
    );
  }

  async removeInstanceStatus(agentId: string, instanceId: string): Promise<void> {
    const id = check(fleetId, agentId, "Agent", "id");
    await this.#exec(
      this.#redis
        .multi()
        .hdel(this.keys.instances(id), instanceId)
        .publish(this.#channels.instances, id),
    );
  }

  async readInstanceStatuses(agentId: string): Promise<InstanceStatus[]> {
    const all = await this.#redis.hgetall(
      this.keys.instances(check(fleetId, agentId, "Agent", "id")),
    );
    return this.#parseAll(instanceStatusSchema, all, "instance status");
  }

  // ---- endpoints (agents publish, gateways read) ---------------------------

  /** Publish a ready instance; announced on the endpoints channel as "{ns}/{rev}". */
  async publishEndpoint(namespace: string, revision: string, endpoint: Endpoint): Promise<void> {
    const ns = check(fleetSegment, namespace, "Endpoint", "namespace");
    const rev = check(fleetSegment, revision, "Endpoint", "revision");
    const ep = check(endpointSchema, endpoint, "Endpoint");
    const k = this.keys;
    await PUBLISH_ENDPOINT.run(
      this.#redis,
      [k.endpoints(ns, rev), k.endpointRevisions, k.agentEndpoints(ep.agentId)],
      [ep.instanceId, JSON.stringify(ep), revisionRef(ns, rev), k.channels.endpoints],
    );
  }

  /** Withdraw one endpoint; true if it was published. Announced when it was. */
  async withdrawEndpoint(
    namespace: string,
    revision: string,
    instanceId: string,
    agentId?: string,
  ): Promise<boolean> {
    const ns = check(fleetSegment, namespace, "Endpoint", "namespace");
    const rev = check(fleetSegment, revision, "Endpoint", "revision");
    const k = this.keys;
    const n = await WITHDRAW_ENDPOINT.run(
      this.#redis,
      [k.endpoints(ns, rev), k.endpointRevisions],
      [
        instanceId,
        revisionRef(ns, rev),
        k.channels.endpoints,
        k.agentEndpoints(""),
        agentId === undefined ? "" : check(fleetId, agentId, "Agent", "id"),
      ],
    );
    return n === 1;
  }

  /** Withdraw everything an agent published (its index); returns how many. */
  async withdrawAgentEndpoints(agentId: string): Promise<number> {
    const id = check(fleetId, agentId, "Agent", "id");
    const k = this.keys;
    return (await WITHDRAW_AGENT.run(
      this.#redis,
      [k.agentEndpoints(id), k.endpointRevisions],
      [id, this.#endpointsPrefix(), k.channels.endpoints],
    )) as number;
  }

  /** What an agent's index says it published. */
  async agentEndpoints(agentId: string): Promise<PublishedRef[]> {
    const all = await this.#redis.hgetall(
      this.keys.agentEndpoints(check(fleetId, agentId, "Agent", "id")),
    );
    const out: PublishedRef[] = [];
    for (const [instanceId, ref] of Object.entries(all)) {
      const parsed = parseRevisionRef(ref);
      if (parsed) out.push({ instanceId, ...parsed });
    }
    return out;
  }

  async readEndpoints(namespace: string, revision: string): Promise<Endpoint[]> {
    const ns = check(fleetSegment, namespace, "Endpoint", "namespace");
    const rev = check(fleetSegment, revision, "Endpoint", "revision");
    const all = await this.#redis.hgetall(this.keys.endpoints(ns, rev));
    return this.#parseAll(endpointSchema, all, "endpoint");
  }

  /** Every published endpoint, by "{ns}/{rev}" (revisions without endpoints are absent). */
  async readAllEndpoints(): Promise<Map<string, Endpoint[]>> {
    const refs = await this.#redis.smembers(this.keys.endpointRevisions);
    const parsed = refs
      .map((ref) => ({ ref, p: parseRevisionRef(ref) }))
      .filter((x): x is { ref: string; p: { namespace: string; revision: string } } => !!x.p);
    const out = new Map<string, Endpoint[]>();
    if (parsed.length === 0) return out;
    const pipe = this.#redis.pipeline();
    for (const { p } of parsed) pipe.hgetall(this.keys.endpoints(p.namespace, p.revision));
    const replies = (await pipe.exec()) ?? [];
    parsed.forEach(({ ref }, i) => {
      const [err, value] = replies[i] ?? [new Error("no reply"), undefined];
      if (err) throw err;
      const list = this.#parseAll(endpointSchema, value as Record<string, string>, "endpoint");
      if (list.length) out.set(ref, list);
    });
    return out;
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
    return this.#subscriber.subscribe(this.#channels[channel], handler);
  }

  /**
   * Called whenever the subscriber connection came back after a loss and its
   * subscriptions are live again: messages meanwhile were missed, so resync.
   */
  onResubscribe(listener: () => void): () => void {
    return this.#subscriber.onResubscribe(listener);
  }

  async ping(): Promise<void> {
    await this.#redis.ping();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#subscriber.close();
    if (this.#owned) await quitRedis(this.#redis);
  }

  // ---- helpers -------------------------------------------------------------

  /** "{p}fleet:endpoints:", to which the scripts append "{ns}:{rev}". */
  #endpointsPrefix(): string {
    const probe = this.keys.endpoints("n", "r");
    return probe.slice(0, probe.length - "n:r".length);
  }

  async #exec(m: ReturnType<Redis["multi"]>): Promise<void> {
    const replies = await m.exec();
    for (const [err] of replies ?? []) if (err) throw err;
  }

  #parse<T>(schema: z.ZodType<T>, raw: string, what: string): T | undefined {
    try {
      const r = schema.safeParse(JSON.parse(raw));
      if (r.success) return r.data;
      this.#log.warn(
        { issues: r.error.issues, raw: raw.slice(0, 300) },
        `ignoring invalid ${what}`,
      );
    } catch {
      this.#log.warn({ raw: raw.slice(0, 300) }, `ignoring malformed ${what}`);
    }
    return undefined;
  }

  #parseAll<T>(schema: z.ZodType<T>, all: Record<string, string>, what: string): T[] {
    const out: T[] = [];
    for (const raw of Object.values(all)) {
      const v = this.#parse(schema, raw, what);
      if (v !== undefined) out.push(v);
    }
    return out;
  }
}

/** A fleet handle over its own connection (or a shared one). */
export function createFleet(options: FleetOptions): Fleet {
  return new Fleet(options);
}
