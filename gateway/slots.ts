/**
 * Hard concurrency limits (containerConcurrency > 0) held across every
 * gateway replica. Each instance has a ZSET of leases scored by their expiry
 * on Redis' clock; a slot is free when the instance has fewer live leases than
 * the limit. Acquire and release are single Lua scripts, so two gateways can
 * never both take the last slot. A gateway renews the leases it holds every
 * third of the lease time; one that dies mid-request stops renewing and its
 * slots free themselves when the leases expire.
 *
 * Waiting is fair across gateways: a gateway that could not get every slot it
 * asked for registers in `slot-waiters` with the arrival time of its oldest
 * waiting request (as "now minus its age", so gateway clocks never matter).
 * A gateway may only take free slots beyond one per gateway whose oldest
 * request waited longer, so no gateway starves another. Freeing a slot while
 * someone waits publishes on `{p}slots`, and waiters also poll, which covers a
 * lost message and leases that expired.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../src/logging.ts";
import { luaScript } from "../src/redis/script.ts";
import { type GatewayKeys, gatewayKeys } from "../src/traffic/keys.ts";

/**
 * KEYS: [waiters zset, lease zset of candidate 1, ..., of candidate n]
 * ARGV: [limit, leaseMs, waitTtlMs, start, gatewayId, alivePrefix, queued,
 *        age1, lease1, age2, lease2, ...]   (ages of the waiting requests, oldest first, ms)
 * Returns the 0-based candidate index of each granted lease, in request order.
 */
const ACQUIRE = luaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, leaseMs, waitTtl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start, gw, alivePrefix, queued = tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local n = #KEYS - 1
local want = (#ARGV - 7) / 2
local used, free = {}, 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now)
  used[i] = redis.call('ZCARD', KEYS[i + 1])
  if used[i] < limit then free = free + (limit - used[i]) end
end
-- One free slot stays for each live gateway whose oldest request waited longer than ours.
local mine = now - tonumber(ARGV[8])
local ahead = 0
for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. mine)) do
  if other ~= gw then
    if redis.call('EXISTS', alivePrefix .. other) == 1 then
      ahead = ahead + 1
    else
      redis.call('ZREM', KEYS[1], other)
    end
  end
end
local allowed = math.min(want, math.max(0, free - ahead))
local granted = {}
for g = 1, allowed do
  local best, bestUsed = nil, limit
  for j = 0, n - 1 do
    local i = (start + j) % n + 1
    if used[i] < bestUsed then best, bestUsed = i, used[i] end
  end
  if not best then break end
  local key = KEYS[best + 1]
  redis.call('ZADD', key, now + leaseMs, ARGV[7 + 2 * g])
  if redis.call('PTTL', key) < 2 * leaseMs then redis.call('PEXPIRE', key, 2 * leaseMs) end
  used[best] = used[best] + 1
  granted[#granted + 1] = best - 1
end
local left = queued - #granted
if left > 0 then
  local nextAge = tonumber(ARGV[8 + 2 * #granted]) or tonumber(ARGV[#ARGV - 1])
  redis.call('ZADD', KEYS[1], now - nextAge, gw)
  redis.call('SET', alivePrefix .. gw, '1', 'PX', waitTtl)
  redis.call('PEXPIRE', KEYS[1], 10 * waitTtl)
else
  redis.call('ZREM', KEYS[1], gw)
end
return granted
`);

/** KEYS: [lease zset, waiters zset]  ARGV: [lease, channel, ref] */
const RELEASE = luaScript(`
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[2]) > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
`);

/**
 * KEYS: lease zsets  ARGV: [leaseMs, lease1, lease2, ...] (one lease per key)
 * Returns the leases that were no longer there.
 */
const RENEW = luaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local leaseMs = tonumber(ARGV[1])
local lost = {}
for i = 1, #KEYS do
  local lease = ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[i], lease) then
    redis.call('ZADD', KEYS[i], 'XX', now + leaseMs, lease)
    if redis.call('PTTL', KEYS[i]) < 2 * leaseMs then redis.call('PEXPIRE', KEYS[i], 2 * leaseMs) end
  else
    lost[#lost + 1] = lease
  end
end
return lost
`);

/** KEYS: [waiters zset]  ARGV: [gatewayId, aliveKey] */
const STOP_WAITING = luaScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', ARGV[2])
return 1
`);

/**
 * A waiting gateway's registration lives this long without a new attempt
 * (waiters retry every 200 ms), so a gateway that died waiting stops holding
 * back others' requests within a second.
 */
const WAIT_TTL_MS = 1_000;

/** Requests asked for in one acquire call at most. */
export const MAX_BATCH = 64;

export interface SlotRequest {
  namespace: string;
  revision: string;
  /** Instance ids that may take the requests. */
  candidates: readonly string[];
  limit: number;
  /** Ages (ms) of the waiting requests to serve, oldest first; at most MAX_BATCH. */
  ages: readonly number[];
  /** All requests this gateway holds for the revision (>= ages.length). */
  queued: number;
}

export interface Lease {
  readonly id: string;
  readonly key: string;
  readonly instanceId: string;
}

export interface SlotsOptions {
  redis: Redis;
  prefix: string;
  gatewayId: string;
  leaseMs: number;
  logger: Logger;
}

export class Slots {
  readonly #redis: Redis;
  readonly #keys: GatewayKeys;
  readonly #gw: string;
  readonly #leaseMs: number;
  readonly #log: Logger;
  readonly #held = new Map<string, Lease>();
  #next = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: SlotsOptions) {
    this.#redis = options.redis;
    this.#keys = gatewayKeys(options.prefix);
    this.#gw = options.gatewayId;
    this.#leaseMs = options.leaseMs;
    this.#log = options.logger;
  }

  get channel(): string {
    return this.#keys.slotsChannel;
  }

  /** How long a waiting gateway's registration lives without a new attempt. */
  get waitTtlMs(): number {
    return WAIT_TTL_MS;
  }

  /** Leases held right now by this gateway. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * Load the scripts up front, so the first calls are not EVALSHA misses
   * retried as EVAL (a retry lands after commands sent meanwhile).
   */
  async load(): Promise<void> {
    for (const script of [ACQUIRE, RELEASE, RENEW, STOP_WAITING]) {
      await this.#redis.script("LOAD", script.source);
    }
  }

  start(): void {
    const period = Math.max(100, Math.floor(this.#leaseMs / 3));
    this.#timer = setInterval(() => void this.renew(), period);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Take up to `ages.length` slots; returns one lease per granted request, in order. */
  async acquire(req: SlotRequest): Promise<Lease[]> {
    const { namespace, revision, candidates } = req;
    if (candidates.length === 0 || req.ages.length === 0) return [];
    const keys = [this.#keys.slotWaiters(namespace, revision)];
    for (const id of candidates) keys.push(this.#keys.slotLeases(namespace, revision, id));
    const ids: string[] = [];
    const args = [
      String(req.limit),
      String(this.#leaseMs),
      String(this.waitTtlMs),
      String(Math.floor(Math.random() * candidates.length)),
      this.#gw,
      this.#aliveKeyPrefix(namespace, revision),
      String(req.queued),
    ];
    for (const age of req.ages) {
      const id = `${this.#gw}:${(this.#next++).toString(36)}`;
      ids.push(id);
      args.push(String(Math.max(0, Math.round(age))), id);
    }
    const granted = (await ACQUIRE.run(this.#redis, keys, args)) as number[];
    return granted.map((index, i) => {
      const instanceId = candidates[index] as string;
      const lease: Lease = {
        id: ids[i] as string,
        key: keys[index + 1] as string,
        instanceId,
      };
      this.#held.set(lease.id, lease);
      return lease;
    });
  }

  /** Give a slot back (fire and forget: if it fails, the lease expires by itself). */
  release(lease: Lease, namespace: string, revision: string): void {
    if (!this.#held.delete(lease.id)) return;
    RELEASE.run(
      this.#redis,
      [lease.key, this.#keys.slotWaiters(namespace, revision)],
      [lease.id, this.#keys.slotsChannel, `${namespace}/${revision}`],
    ).catch((err: unknown) => {
      this.#log.warn({ err, lease: lease.id }, "releasing a slot failed; its lease will expire");
    });
  }

  /** This gateway holds no more requests for the revision: stop counting as a waiter. */
  stopWaiting(namespace: string, revision: string): void {
    STOP_WAITING.run(
      this.#redis,
      [this.#keys.slotWaiters(namespace, revision)],
      [this.#gw, this.#aliveKeyPrefix(namespace, revision) + this.#gw],
    ).catch((err: unknown) => this.#log.warn({ err }, "leaving the slot waiters failed"));
  }

  /** Extend every held lease (also run by the timer). */
  async renew(): Promise<void> {
    const leases = [...this.#held.values()];
    for (let i = 0; i < leases.length; i += 500) {
      const batch = leases.slice(i, i + 500);
      try {
        const gone = (await RENEW.run(
          this.#redis,
          batch.map((l) => l.key),
          [String(this.#leaseMs), ...batch.map((l) => l.id)],
        )) as string[];
        // Leases released while the renewal was on its way are not lost.
        const lost = gone.filter((id) => this.#held.has(id)).length;
        if (lost > 0) {
          this.#log.warn(
            { lost },
            "some slot leases had expired before renewal (gateway paused or Redis slow); limits may be exceeded briefly",
          );
        }
      } catch (err) {
        this.#log.warn({ err }, "renewing slot leases failed");
      }
    }
  }

  #aliveKeyPrefix(namespace: string, revision: string): string {
    return `${this.#keys.slotWaiters(namespace, revision)}:gw:`;
  }
}
