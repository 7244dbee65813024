/**
 * The gateway's in-memory view of the fleet: each revision's ready endpoints
 * (`{p}fleet:endpoints:{ns}:{rev}`) and the agents behind them
 * (`{p}fleet:agent:{id}`, which carries a TTL). An endpoint counts only while
 * its agent's record is known to exist: an agent that died stops
 * heartbeating, its record expires without any message, and the periodic
 * check (every `agentCheckIntervalMs`) reads that and drops its endpoints.
 *
 * Endpoints are dropped only on evidence, a fresh read from Redis (or, per
 * request, a connection the instance refused: dispatcher suspects). Nothing
 * expires by the local clock: while Redis cannot be read the gateway keeps
 * routing to the last endpoints it knew, which is what keeps traffic flowing
 * through a Redis outage.
 *
 * Reads go over one connection and are applied as their replies arrive, so a
 * later read always wins over an earlier one.
 */
import type { Redis } from "ioredis";
import { parseEndpoints } from "../src/fleet/endpoints.ts";
import { fleetKeys, parseRevisionRef } from "../src/fleet/keys.ts";
import type { Endpoint } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";

interface AgentState {
  alive: boolean;
  /** Largest PTTL seen for its record: about its heartbeat TTL. */
  ttlMs: number;
}

/** Revisions read per pipeline in a full resync. */
const RESYNC_BATCH = 256;

/** The grace an agent gets after Redis came back is its heartbeat TTL, at most this. */
const MAX_REJOIN_GRACE_MS = 30_000;

export class FleetCache {
  readonly #redis: Redis;
  readonly #keys;
  readonly #log: Logger;
  readonly #onChange: (ref: string) => void;
  /** Endpoints as stored, by "{ns}/{rev}". */
  readonly #raw = new Map<string, Endpoint[]>();
  /** Endpoints whose agent is alive, by "{ns}/{rev}": what routing uses. */
  readonly #usable = new Map<string, readonly Endpoint[]>();
  readonly #agents = new Map<string, AgentState>();
  /**
   * Each revision's hash as last read (fields and values joined), so a
   * periodic resync that finds it unchanged parses nothing: with thousands of
   * revisions the resync would otherwise churn megabytes every period.
   */
  readonly #rawText = new Map<string, string>();
  /** performance.now() when Redis last came back after an outage. */
  #backAt = Number.NEGATIVE_INFINITY;

  constructor(redis: Redis, prefix: string, logger: Logger, onChange: (ref: string) => void) {
    this.#redis = redis;
    this.#keys = fleetKeys(prefix);
    this.#log = logger;
    this.#onChange = onChange;
  }

  get channels(): string[] {
    return [this.#keys.channels.endpoints, this.#keys.channels.agents];
  }

  /** Ready endpoints of a revision whose agents are alive (empty when none). */
  endpoints(ref: string): readonly Endpoint[] {
    return this.#usable.get(ref) ?? [];
  }

  /**
   * Redis is reachable again after an outage. Agents could not heartbeat
   * meanwhile, so a record that expired during it is no evidence of death
   * yet: an agent that was alive keeps its endpoints for one heartbeat TTL
   * (its time to renew) before a missing record drops them.
   */
  redisBack(): void {
    this.#backAt = performance.now();
  }

  /** Handle a channel message; returns false when the channel is not the fleet's. */
  onMessage(channel: string, message: string): boolean {
    if (channel === this.#keys.channels.endpoints) {
      if (parseRevisionRef(message)) void this.refreshRevision(message);
      return true;
    }
    if (channel === this.#keys.channels.agents) {
      void this.refreshAgents([message]);
      return true;
    }
    return false;
  }

  /** Re-read one revision's endpoints. */
  async refreshRevision(ref: string): Promise<void> {
    const parsed = parseRevisionRef(ref);
    if (!parsed) return;
    try {
      const hash = await this.#redis.hgetall(
        this.#keys.endpoints(parsed.namespace, parsed.revision),
      );
      this.#setRaw(ref, hash);
      await this.#fetchUnknownAgents();
    } catch (err) {
      this.#log.warn({ err, revision: ref }, "reading endpoints failed; the next resync retries");
    }
  }

  /** Re-read every revision's endpoints and every agent they run on. */
  async resync(): Promise<void> {
    const refs = await this.#redis.smembers(this.#keys.endpointRevisions);
    const listed = new Set(refs);
    const valid = refs.filter((ref) => parseRevisionRef(ref) !== undefined);
    // In batches: thousands of replies held at once would be promoted to the
    // old generation and grow the heap for good; a batch's die young.
    for (let start = 0; start < valid.length; start += RESYNC_BATCH) {
      const batch = valid.slice(start, start + RESYNC_BATCH);
      const pipeline = this.#redis.pipeline();
      for (const ref of batch) {
        const parsed = parseRevisionRef(ref) as { namespace: string; revision: string };
        pipeline.hgetall(this.#keys.endpoints(parsed.namespace, parsed.revision));
      }
      const replies = (await pipeline.exec()) ?? [];
      replies.forEach(([err, hash], i) => {
        const ref = batch[i] as string;
        if (err) {
          this.#log.warn({ err, revision: ref }, "reading endpoints failed");
          return;
        }
        this.#setRaw(ref, hash as Record<string, string>);
      });
    }
    // Revisions no longer listed have no endpoints.
    for (const ref of [...this.#raw.keys()]) {
      if (!listed.has(ref)) this.#setRaw(ref, {});
    }
    await this.checkAgents();
  }

  /** Re-read the record of every agent that has endpoints (the periodic liveness check). */
  async checkAgents(): Promise<void> {
    const ids = new Set<string>();
    for (const eps of this.#raw.values()) for (const ep of eps) ids.add(ep.agentId);
    // Forget agents nothing refers to.
    for (const id of [...this.#agents.keys()]) if (!ids.has(id)) this.#agents.delete(id);
    await this.refreshAgents([...ids]);
  }

  async refreshAgents(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.pttl(this.#keys.agent(id));
    let replies: [Error | null, unknown][];
    try {
      replies = (await pipeline.exec()) ?? [];
    } catch (err) {
      this.#log.warn({ err }, "checking agents failed; the next check retries");
      return;
    }
    const changed = new Set<string>();
    const now = performance.now();
    replies.forEach(([err, pttl], i) => {
      if (err) return;
      const id = ids[i] as string;
      const ttl = Number(pttl);
      const prev = this.#agents.get(id);
      // -2: no such key (expired or deleted); -1: no expiry set.
      let alive = ttl !== -2;
      if (!alive && prev?.alive && now - this.#backAt < Math.min(prev.ttlMs, MAX_REJOIN_GRACE_MS)) {
        alive = true;
      }
      const state: AgentState = { alive, ttlMs: Math.max(prev?.ttlMs ?? 0, ttl) };
      this.#agents.set(id, state);
      if (!prev || prev.alive !== state.alive) changed.add(id);
    });
    this.#recompute(changed);
  }

  async #fetchUnknownAgents(): Promise<void> {
    const unknown = new Set<string>();
    for (const eps of this.#raw.values()) {
      for (const ep of eps) if (!this.#agents.has(ep.agentId)) unknown.add(ep.agentId);
    }
    if (unknown.size > 0) await this.refreshAgents([...unknown]);
  }

  #setRaw(ref: string, hash: Record<string, string>): void {
    let text = "";
    for (const field in hash) text += `${field}\u0000${hash[field]}\u0000`;
    if (this.#rawText.get(ref) === (text || undefined) && text !== "") return;
    if (text === "") this.#rawText.delete(ref);
    else this.#rawText.set(ref, text);
    // Sorted by instance id; a bad record is skipped with one log line, the rest still route.
    const endpoints = parseEndpoints(hash, this.#log, { revision: ref });
    if (endpoints.length === 0) this.#raw.delete(ref);
    else this.#raw.set(ref, endpoints);
    this.#update(ref);
  }

  #recompute(agents: Set<string>): void {
    if (agents.size === 0) return;
    for (const [ref, eps] of this.#raw) {
      if (eps.some((ep) => agents.has(ep.agentId))) this.#update(ref);
    }
  }

  #update(ref: string): void {
    const eps = this.#raw.get(ref) ?? [];
    const usable = eps.filter((ep) => this.#agents.get(ep.agentId)?.alive === true);
    const prev = this.#usable.get(ref) ?? [];
    if (sameEndpoints(prev, usable)) return;
    if (usable.length === 0) this.#usable.delete(ref);
    else this.#usable.set(ref, usable);
    this.#onChange(ref);
  }
}

function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (JSON.stringify(a[i]) !== JSON.stringify(b[i])) return false;
  }
  return true;
}
