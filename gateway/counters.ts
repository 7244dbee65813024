/**
 * Per-revision request counters, kept in memory on the hot path and published
 * to Redis every period under the gateway's own id with a TTL (see
 * RevisionCounters in keys.ts for what each number means). A gateway that
 * stops publishing (crashed) drops out when its key expires.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../src/logging.ts";
import { type GatewayKeys, gatewayKeys, type RevisionCounters } from "../src/traffic/keys.ts";

export class RevisionStats {
  /** Accepted and not finished (queued ones included). */
  inflight = 0;
  /** Waiting for an instance or a slot. */
  queued = 0;
  requests = 0;
  completed = 0;
  /** Integral of inflight over time, request-ms, since `since`. */
  #integral = 0;
  #lastT = performance.now();
  /** Wall clock when these counters started. */
  readonly since = Date.now();
  #windowT = performance.now();
  #windowIntegral = 0;
  #windowRequests = 0;
  /** performance.now() of the last arrival or completion. */
  lastActive = performance.now();

  #advance(now: number): void {
    this.#integral += this.inflight * (now - this.#lastT);
    this.#lastT = now;
  }

  begin(): void {
    const now = performance.now();
    this.#advance(now);
    this.inflight++;
    this.requests++;
    this.lastActive = now;
  }

  end(): void {
    const now = performance.now();
    this.#advance(now);
    this.inflight--;
    this.completed++;
    this.lastActive = now;
  }

  /** Numbers for one publish; starts the next window. */
  sample(instances: Record<string, number>): RevisionCounters {
    const now = performance.now();
    this.#advance(now);
    const periodMs = Math.max(1, now - this.#windowT);
    const avg = (this.#integral - this.#windowIntegral) / periodMs;
    const out: RevisionCounters = {
      v: 1,
      at: Date.now(),
      since: this.since,
      periodMs: Math.round(periodMs),
      inflight: this.inflight,
      queued: this.queued,
      avgInflight: Math.round(avg * 1000) / 1000,
      requests: this.requests,
      completed: this.completed,
      windowRequests: this.requests - this.#windowRequests,
      concurrencyMs: Math.round(this.#integral),
      instances,
    };
    this.#windowT = now;
    this.#windowIntegral = this.#integral;
    this.#windowRequests = this.requests;
    return out;
  }

  /** Nothing arrived since the last sample, and nothing is in flight or waiting. */
  quietSinceSample(): boolean {
    return this.inflight === 0 && this.queued === 0 && this.requests === this.#windowRequests;
  }

  /** Start the next window now without a sample (a quiet revision not published). */
  skipWindow(): void {
    const now = performance.now();
    this.#advance(now);
    this.#windowT = now;
    this.#windowIntegral = this.#integral;
    this.#windowRequests = this.requests;
  }

  /** Nothing in flight and nothing happened for `ms`. */
  idleFor(ms: number): boolean {
    return this.inflight === 0 && performance.now() - this.lastActive > ms;
  }
}

export interface CountersSource {
  /** Every revision to publish: its ref, stats and per-instance in-flight. */
  revisions(): Iterable<{ ref: string; stats: RevisionStats; instances(): Record<string, number> }>;
}

export interface CounterPublisherOptions {
  redis: Redis;
  prefix: string;
  gatewayId: string;
  periodMs: number;
  ttlMs: number;
  source: CountersSource;
  logger: Logger;
  /** Called after each period (the gateway's housekeeping tick). */
  onTick?: () => void;
}

export class CounterPublisher {
  readonly #o: CounterPublisherOptions;
  readonly #keys: GatewayKeys;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  /** Fields written last time, so vanished revisions are removed. */
  #fields = new Set<string>();
  /** Revisions whose last written sample was a quiet one (nothing arrived, nothing in flight). */
  #quiet = new Set<string>();

  constructor(options: CounterPublisherOptions) {
    this.#o = options;
    this.#keys = gatewayKeys(options.prefix);
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#o.onTick?.();
      void this.publish();
    }, this.#o.periodMs);
    this.#timer.unref();
  }

  /** One publish: every revision's numbers in one pipeline, the key's TTL renewed. */
  async publish(): Promise<void> {
    // A slow Redis must not pile publishes up; the next period carries the numbers.
    if (this.#busy) return;
    this.#busy = true;
    try {
      const key = this.#keys.metrics(this.#o.gatewayId);
      const fields: string[] = [];
      const names = new Set<string>();
      const quiet = new Set<string>();
      for (const r of this.#o.source.revisions()) {
        // Only revisions with traffic are written: one quiet sample closes a
        // revision's activity (the scaler sees its last requests end), then
        // its field is removed, which the scaler reads as no load. A host
        // with 10,000 idle services so publishes nothing for them.
        if (r.stats.quietSinceSample()) {
          if (!this.#fields.has(r.ref) || this.#quiet.has(r.ref)) {
            // So that the window of its next sample starts here, not when it went quiet.
            r.stats.skipWindow();
            continue;
          }
          quiet.add(r.ref);
        }
        names.add(r.ref);
        fields.push(r.ref, JSON.stringify(r.stats.sample(r.instances())));
      }
      const gone = [...this.#fields].filter((f) => !names.has(f));
      // Present even with no revision, so the scaler sees a live gateway.
      fields.push("_gateway", JSON.stringify({ id: this.#o.gatewayId, at: Date.now() }));
      // A pipeline, not MULTI: readers tolerate a publish seen half-applied (the
      // next one completes it), and each publish costs 3 commands rather than 6,
      // which is all the Redis work of a gateway serving containerConcurrency 0.
      const p = this.#o.redis.pipeline();
      if (gone.length > 0) p.hdel(key, ...gone);
      p.hset(key, ...fields);
      p.pexpire(key, this.#o.ttlMs);
      p.zadd(this.#keys.gateways, Date.now(), this.#o.gatewayId);
      const replies = (await p.exec()) ?? [];
      const failed = replies.find(([err]) => err);
      if (failed) throw failed[0];
      this.#fields = names;
      this.#quiet = quiet;
    } catch (err) {
      this.#o.logger.warn({ err }, "publishing gateway counters failed");
    } finally {
      this.#busy = false;
    }
  }

  /** Stop publishing and remove this gateway's numbers (a clean exit). */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      await this.#o.redis
        .multi()
        .del(this.#keys.metrics(this.#o.gatewayId))
        .zrem(this.#keys.gateways, this.#o.gatewayId)
        .exec();
    } catch (err) {
      this.#o.logger.warn({ err }, "removing gateway counters failed");
    }
  }
}
