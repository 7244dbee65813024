/**
 * The fleet's load per revision, from the counters every gateway publishes
 * (`{p}metrics:gw:{id}`, see RevisionCounters in src/traffic/keys.ts).
 *
 * Each read turns every gateway's cumulative counters into averages over the
 * time since the previous read of the same series (same gateway, revision and
 * `since`): concurrency = delta concurrencyMs / delta t, rps = delta requests
 * / delta t. The integral loses no time, so a late read or a missed publish
 * changes nothing. Then the gateways are summed.
 *
 * - A series seen for the first time (a new gateway, a scaler that just took
 *   over) contributes the gateway's own last-period averages (avgInflight,
 *   windowRequests / periodMs).
 * - A gateway whose `since` changed restarted its counters: the new values
 *   cover [since, at].
 * - A gateway that has not published since the previous read repeats its last
 *   rate (unknown is not idle); one whose hash expired (crashed or stopped)
 *   contributes nothing and is dropped from `{p}metrics:gateways`.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../src/logging.ts";
import { parseRevisionCounters } from "../src/traffic/counters.ts";
import { gatewayKeys, type RevisionCounters } from "../src/traffic/keys.ts";

/** The fleet's load on one revision over the last read interval. */
export interface RevisionLoad {
  /** Average in-flight requests (held ones included), summed over gateways. */
  concurrency: number;
  /** Requests per second, summed over gateways. */
  rps: number;
  /** In flight now (sum of the gateways' last samples). */
  inflight: number;
  /** Waiting for an instance or a slot now: a level-triggered activation signal. */
  queued: number;
}

interface SeriesState {
  since: number;
  at: number;
  concurrencyMs: number;
  requests: number;
  /** The last rate computed, repeated while the gateway publishes nothing new. */
  concurrency: number;
  rps: number;
}

const META_FIELD = "_gateway";

export class GatewayMetricsSource {
  readonly #redis: Redis;
  readonly #keys: ReturnType<typeof gatewayKeys>;
  readonly #log: Logger;
  /** gateway id -> "{ns}/{rev}" -> series state. */
  readonly #series = new Map<string, Map<string, SeriesState>>();

  constructor(options: { redis: Redis; prefix: string; logger: Logger }) {
    this.#redis = options.redis;
    this.#keys = gatewayKeys(options.prefix);
    this.#log = options.logger;
  }

  /** Gateways currently publishing (as of the last read). */
  get gateways(): string[] {
    return [...this.#series.keys()];
  }

  /** Read every live gateway's counters once; returns the fleet's load by "{ns}/{rev}". */
  async read(): Promise<Map<string, RevisionLoad>> {
    const ids = await this.#redis.zrange(this.#keys.gateways, "0", "-1");
    const pipe = this.#redis.pipeline();
    for (const id of ids) pipe.hgetall(this.#keys.metrics(id));
    const replies = ids.length > 0 ? ((await pipe.exec()) ?? []) : [];

    const out = new Map<string, RevisionLoad>();
    const add = (ref: string, c: number, r: number, inflight: number, queued: number) => {
      const cur = out.get(ref) ?? { concurrency: 0, rps: 0, inflight: 0, queued: 0 };
      cur.concurrency += c;
      cur.rps += r;
      cur.inflight += inflight;
      cur.queued += queued;
      out.set(ref, cur);
    };
    const gone: string[] = [];
    const seen = new Set<string>();
    ids.forEach((id, i) => {
      const [err, value] = replies[i] ?? [new Error("no reply"), undefined];
      if (err) throw err;
      const hash = value as Record<string, string>;
      if (Object.keys(hash).length === 0) {
        gone.push(id); // expired: the gateway stopped publishing
        return;
      }
      seen.add(id);
      const prev = this.#series.get(id) ?? new Map<string, SeriesState>();
      const next = new Map<string, SeriesState>();
      for (const [ref, raw] of Object.entries(hash)) {
        if (ref === META_FIELD) continue;
        const c = parseRevisionCounters(raw);
        if (c === undefined) {
          this.#log.warn({ gateway: id, revision: ref }, "ignoring malformed gateway counters");
          continue;
        }
        const state = advance(prev.get(ref), c);
        next.set(ref, state);
        add(ref, state.concurrency, state.rps, c.inflight, c.queued);
      }
      this.#series.set(id, next);
    });
    for (const id of this.#series.keys()) if (!seen.has(id)) this.#series.delete(id);
    if (gone.length > 0) {
      // Housekeeping only: a gateway that comes back re-adds itself with its next publish.
      await this.#redis.zrem(this.#keys.gateways, ...gone).catch(() => {});
    }
    return out;
  }
}

/** The rate over the time since the previous sample of the same series. */
function advance(prev: SeriesState | undefined, c: RevisionCounters): SeriesState {
  const base = { since: c.since, at: c.at, concurrencyMs: c.concurrencyMs, requests: c.requests };
  if (prev === undefined) {
    // First sight: the gateway's own average over its last period.
    const periodS = Math.max(1, c.periodMs) / 1000;
    return { ...base, concurrency: c.avgInflight, rps: c.windowRequests / periodS };
  }
  if (prev.since !== c.since) {
    // Restarted counters: they cover [since, at].
    const dt = Math.max(1, c.at - c.since);
    return { ...base, concurrency: c.concurrencyMs / dt, rps: (c.requests * 1000) / dt };
  }
  const dt = c.at - prev.at;
  if (dt <= 0) return { ...prev }; // nothing new published: repeat the last rate
  const dc = c.concurrencyMs - prev.concurrencyMs;
  const dr = c.requests - prev.requests;
  if (dc < 0 || dr < 0) {
    // Counters went backwards without a new `since`: treat as a restart.
    return {
      ...base,
      concurrency: c.avgInflight,
      rps: (c.windowRequests * 1000) / Math.max(1, c.periodMs),
    };
  }
  return { ...base, concurrency: dc / dt, rps: (dr * 1000) / dt };
}
