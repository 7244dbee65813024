/**
 * The gateway's in-memory view of the fleet: each revision's ready endpoints
 * (`{p}fleet:endpoints:{ns}:{rev}`) and the agents behind them
 * (`{p}fleet:agent:{id}`, which carries a TTL). An endpoint counts only while
 * its agent's record is known to exist: an agent that died stops
 * heartbeating, its record expires without any message, and the periodic
 * check (every `agentCheckIntervalMs`) reads that and drops its endpoints.
 * That check reads one record per agent, never a walk of the revisions: the
 * cache counts the endpoints each agent holds as they are set.
 *
 * Endpoints are dropped only on evidence, a fresh read from Redis (or, per
 * request, a connection the instance refused: dispatcher suspects). Nothing
 * expires by the local clock: while Redis cannot be read the gateway keeps
 * routing to the last endpoints it knew, which is what keeps traffic flowing
 * through a Redis outage.
 *
 * Reads go over one connection and are applied as their replies arrive, so a
 * later read always wins over an earlier one. The periodic resync re-reads
 * only the pages of revisions whose endpoints changed (paged-resync.ts).
 */
import type { Redis } from "ioredis";
import { endpointsPrefix } from "../src/fleet/context.ts";
import { parseEndpoints } from "../src/fleet/endpoints.ts";
import { fleetKeys, parseRevisionRef } from "../src/fleet/keys.ts";
import type { Endpoint } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import { type FlatHash, PagedResync, readEndpointsPage } from "./paged-resync.ts";

interface AgentState {
  alive: boolean;
  /** Largest PTTL seen for its record: about its heartbeat TTL. */
  ttlMs: number;
}

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
  /** Endpoints in #raw by agent id: the agents to check, without walking the revisions. */
  readonly #onAgent = new Map<string, number>();
  readonly #pages: PagedResync<{ refs: string[]; hashes: FlatHash[] }>;
  /** performance.now() when Redis last came back after an outage. */
  #backAt = Number.NEGATIVE_INFINITY;

  constructor(redis: Redis, prefix: string, logger: Logger, onChange: (ref: string) => void) {
    this.#redis = redis;
    this.#keys = fleetKeys(prefix);
    this.#log = logger;
    this.#onChange = onChange;
    const keys = this.#keys;
    const epPrefix = endpointsPrefix(keys);
    this.#pages = new PagedResync({
      read: (cursor, known) =>
        readEndpointsPage(redis, keys.endpointRevisions, epPrefix, cursor, known),
      apply: ({ refs, hashes }) => {
        const members: string[] = [];
        refs.forEach((ref, i) => {
          if (!parseRevisionRef(ref)) return;
          this.#setRaw(ref, record(hashes[i] ?? []));
          members.push(ref);
        });
        return members;
      },
      held: () => this.#raw.keys(),
      // Revisions no longer listed have no endpoints.
      drop: (ref) => this.#setRaw(ref, {}),
    });
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
      this.#pages.noticed(ref);
      await this.#fetchUnknownAgents();
    } catch (err) {
      this.#log.warn({ err, revision: ref }, "reading endpoints failed; the next resync retries");
    }
  }

  /** Re-read the endpoints of revisions that changed, and every agent they run on. */
  async resync(): Promise<void> {
    await this.#pages.pass();
    await this.checkAgents();
  }

  /** Re-read the record of every agent that has endpoints (the periodic liveness check). */
  async checkAgents(): Promise<void> {
    // Forget agents nothing refers to.
    for (const id of this.#agents.keys()) if (!this.#onAgent.has(id)) this.#agents.delete(id);
    await this.refreshAgents([...this.#onAgent.keys()]);
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
    const unknown: string[] = [];
    for (const id of this.#onAgent.keys()) if (!this.#agents.has(id)) unknown.push(id);
    if (unknown.length > 0) await this.refreshAgents(unknown);
  }

  #setRaw(ref: string, hash: Record<string, string>): void {
    // Sorted by instance id; a bad record is skipped with one log line, the rest still route.
    const endpoints = parseEndpoints(hash, this.#log, { revision: ref });
    for (const ep of this.#raw.get(ref) ?? []) this.#count(ep.agentId, -1);
    for (const ep of endpoints) this.#count(ep.agentId, 1);
    if (endpoints.length === 0) this.#raw.delete(ref);
    else this.#raw.set(ref, endpoints);
    this.#update(ref);
  }

  #count(agentId: string, delta: number): void {
    const n = (this.#onAgent.get(agentId) ?? 0) + delta;
    if (n === 0) this.#onAgent.delete(agentId);
    else this.#onAgent.set(agentId, n);
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

/** HGETALL's flat reply as the object ioredis's hgetall gives. */
function record(flat: FlatHash): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (JSON.stringify(a[i]) !== JSON.stringify(b[i])) return false;
  }
  return true;
}
