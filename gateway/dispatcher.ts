/**
 * One revision's share of the gateway: its ready instances, the FIFO of
 * requests waiting for one, and the choice of instance per request.
 *
 * - No hard limit (containerConcurrency 0): least in-flight of two random
 *   instances (power of two choices), decided in memory.
 * - Hard limit (> 0): a slot per request from Redis (slots.ts), so the limit
 *   holds across every gateway; requests beyond capacity wait here, in order.
 * - No ready instance at all: requests wait here (bounded by queueDepth) and
 *   the scaler is told at once (activation.ts); they go out in arrival order
 *   the moment an endpoint is published, and fail only at their own deadline.
 */

import { UnavailableError } from "../src/errors.ts";
import type { Endpoint } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import type { Activator } from "./activation.ts";
import { RevisionStats } from "./counters.ts";
import { GatewayTimeoutError, QueueFullError } from "./errors.ts";
import type { QueueBudget } from "./queue-budget.ts";
import { type Lease, MAX_BATCH, type Slots } from "./slots.ts";

/** An instance as this gateway sees it. */
export interface Upstream {
  readonly id: string;
  readonly endpoint: Endpoint;
  /** http://host:port */
  readonly origin: string;
  /** Requests this gateway has sent to it and not finished. */
  inflight: number;
  /** performance.now() until which it is avoided (it refused a connection). */
  suspectUntil: number;
}

/** The right to send one request to one instance; release() exactly once when done. */
export interface Grant {
  readonly upstream: Upstream;
  /** ms the request waited (0 when served at once). */
  readonly waitedMs: number;
  /** It waited because the revision had no instance at all. */
  readonly cold: boolean;
  release(): void;
}

export interface DispatcherHooks {
  /** A request that waited for the revision's first instance got one. */
  coldStartServed(seconds: number): void;
}

export interface DispatcherOptions {
  namespace: string;
  revision: string;
  queueDepth: number;
  /** Shared by all dispatchers of one gateway. */
  budget: QueueBudget;
  slots: Slots;
  activator: Activator;
  hooks: DispatcherHooks;
  logger: Logger;
  /** How long an instance that refused a connection is avoided. */
  suspectMs?: number;
  /** How often waiters for a hard-limit slot retry without a release notice. */
  slotPollMs?: number;
  /** Whether Redis is reachable (activation and shared slots need it). Default: always. */
  redisUp?: () => boolean;
}

const SUSPECT_MS = 1_000;
const SLOT_POLL_MS = 200;

export class Waiter {
  readonly promise: Promise<Grant>;
  readonly enqueuedAt = performance.now();
  readonly cold: boolean;
  resolve!: (grant: Grant) => void;
  reject!: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
  done = false;

  constructor(cold: boolean) {
    this.cold = cold;
    this.promise = new Promise<Grant>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

export class RevisionDispatcher {
  readonly namespace: string;
  readonly revision: string;
  readonly ref: string;
  readonly stats = new RevisionStats();
  /** containerConcurrency, refreshed from the routing target by every request. */
  limit = 0;

  readonly #o: DispatcherOptions;
  #upstreams: Upstream[] = [];
  #suspects = 0;
  /** FIFO; entries that are done (timed out, cancelled) are skipped lazily. */
  #queue: Waiter[] = [];
  #head = 0;
  #acquiring = false;
  #pumpAgain = false;
  #registeredWaiting = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed: Error | undefined;

  constructor(options: DispatcherOptions) {
    this.#o = options;
    this.namespace = options.namespace;
    this.revision = options.revision;
    this.ref = `${options.namespace}/${options.revision}`;
  }

  get upstreams(): readonly Upstream[] {
    return this.#upstreams;
  }

  /** Requests waiting right now. */
  get queued(): number {
    return this.stats.queued;
  }

  /** Per instance in-flight, for the published counters (only instances with some). */
  instances(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const u of this.#upstreams) if (u.inflight > 0) out[u.id] = u.inflight;
    return out;
  }

  /** The revision's ready endpoints changed. */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    const before = this.#upstreams.length;
    const old = new Map(this.#upstreams.map((u) => [u.id, u]));
    const next: Upstream[] = [];
    for (const ep of endpoints) {
      const prev = old.get(ep.instanceId);
      if (prev && sameTarget(prev.endpoint, ep)) next.push(prev);
      else next.push(upstreamOf(ep));
    }
    this.#upstreams = next;
    this.#suspects = next.filter((u) => u.suspectUntil > performance.now()).length;
    if (before === 0 && next.length > 0) this.#o.activator.activated(this.namespace, this.revision);
    this.#pump();
  }

  /**
   * The common case without a Waiter or a promise: no limit, nobody waiting,
   * an instance ready. Undefined when the request has to go through acquire().
   */
  tryGrant(): Grant | undefined {
    if (this.#closed || this.limit !== 0 || this.stats.queued !== 0) return undefined;
    if (this.#upstreams.length === 0) return undefined;
    const up = this.#pick();
    return up ? this.#grant(up, undefined, false, 0) : undefined;
  }

  /**
   * Wait for an instance (and a slot when the revision has a hard limit).
   * `deadline` is a performance.now() time; `front` puts a retried request
   * ahead of newer ones.
   */
  acquire(deadline: number, timeoutSeconds: number, front = false): Waiter {
    const cold = this.#upstreams.length === 0;
    const w = new Waiter(cold);
    if (this.#closed) {
      w.done = true;
      w.reject(this.#closed);
      return w;
    }
    if (cold && !this.#redisUp()) {
      // Nothing could activate it, and no endpoint could be learnt: answer now, not at the deadline.
      w.done = true;
      w.reject(this.#unactivatable());
      return w;
    }
    // Fast path: no limit, nobody ahead, an instance ready.
    if (this.limit === 0 && this.#waitingCount() === 0 && !cold) {
      const up = this.#pick();
      if (up) {
        w.done = true;
        w.resolve(this.#grant(up, undefined, false, 0));
        return w;
      }
    }
    if (this.stats.queued >= this.#o.queueDepth) {
      w.done = true;
      w.reject(
        new QueueFullError(
          `revision ${this.ref} already has ${this.#o.queueDepth} requests waiting for an instance (the gateway's queue limit); retry later`,
        ),
      );
      return w;
    }
    const budget = this.#o.budget;
    const refusal = budget.refusal(this.namespace);
    if (refusal) {
      w.done = true;
      w.reject(refusal);
      return w;
    }
    const wait = Math.max(0, deadline - performance.now());
    w.timer = setTimeout(() => {
      this.#drop(
        w,
        new GatewayTimeoutError(
          cold || this.#upstreams.length === 0
            ? `no instance of revision ${this.ref} became ready within ${timeoutSeconds}s`
            : `no instance of revision ${this.ref} had capacity within ${timeoutSeconds}s`,
        ),
      );
    }, wait);
    if (front) {
      if (this.#head > 0) this.#queue[--this.#head] = w;
      else this.#queue.unshift(w);
    } else {
      this.#queue.push(w);
    }
    this.stats.queued++;
    budget.take(this.namespace);
    if (this.#upstreams.length === 0) {
      this.#o.activator.signal(this.namespace, this.revision);
      return w;
    }
    if (this.limit > 0) queueMicrotask(() => this.#pump());
    else this.#pump();
    return w;
  }

  /** Give up waiting (the client left); no-op when already served. */
  cancel(w: Waiter, reason: Error): void {
    this.#drop(w, reason);
  }

  /** The instance refused a connection: avoid it for a moment. */
  markSuspect(up: Upstream): void {
    const until = performance.now() + (this.#o.suspectMs ?? SUSPECT_MS);
    if (up.suspectUntil <= performance.now()) this.#suspects++;
    up.suspectUntil = until;
  }

  /** A slot was freed somewhere (the slots channel). */
  slotFreed(): void {
    if (this.limit > 0 && this.#waitingCount() > 0) this.#pump();
  }

  /** Housekeeping tick: re-signal a revision still at zero, retry after suspects expire. */
  tick(): void {
    if (this.#waitingCount() === 0) return;
    if (this.#upstreams.length === 0) this.#o.activator.signal(this.namespace, this.revision);
    else this.#pump();
  }

  /**
   * Redis is gone: requests waiting for a revision with no instance can be
   * neither activated nor told of a new endpoint, so they get their 503 now;
   * requests waiting for a hard-limit slot go on with locally counted slots.
   */
  redisLost(): void {
    if (this.#waitingCount() === 0) return;
    if (this.#upstreams.length > 0) {
      this.#pump();
      return;
    }
    const err = this.#unactivatable();
    for (let i = this.#head; i < this.#queue.length; i++) {
      const w = this.#queue[i] as Waiter;
      if (!w.done) this.#drop(w, err);
    }
  }

  #redisUp(): boolean {
    return this.#o.redisUp?.() ?? true;
  }

  #unactivatable(): Error {
    return new UnavailableError(
      `revision ${this.ref} has no ready instance known to this gateway, and Redis (needed to activate it) is unreachable; retry shortly`,
    );
  }

  /** Fail every waiting request (shutdown). */
  close(reason: Error): void {
    this.#closed = reason;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    for (let i = this.#head; i < this.#queue.length; i++) {
      const w = this.#queue[i] as Waiter;
      if (!w.done) this.#drop(w, reason);
    }
  }

  #waitingCount(): number {
    return this.stats.queued;
  }

  #drop(w: Waiter, reason: Error): void {
    if (w.done) return;
    w.done = true;
    if (w.timer) clearTimeout(w.timer);
    this.stats.queued--;
    this.#o.budget.give(this.namespace);
    w.reject(reason);
    this.#compact();
    if (this.stats.queued === 0) this.#leaveWaiters();
  }

  #nextWaiter(): Waiter | undefined {
    while (this.#head < this.#queue.length) {
      const w = this.#queue[this.#head] as Waiter;
      if (!w.done) return w;
      this.#head++;
    }
    return undefined;
  }

  #shift(): Waiter | undefined {
    const w = this.#nextWaiter();
    if (w) {
      this.#queue[this.#head] = undefined as unknown as Waiter;
      this.#head++;
      this.#compact();
    }
    return w;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    } else if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }

  #candidates(): Upstream[] {
    if (this.#suspects === 0) return this.#upstreams;
    const now = performance.now();
    const ok = this.#upstreams.filter((u) => u.suspectUntil <= now);
    this.#suspects = this.#upstreams.length - ok.length;
    return ok;
  }

  /** Power of two choices on local in-flight. */
  #pick(): Upstream | undefined {
    const c = this.#candidates();
    const n = c.length;
    if (n === 0) return undefined;
    if (n === 1) return c[0];
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = c[i] as Upstream;
    const b = c[j] as Upstream;
    return a.inflight <= b.inflight ? a : b;
  }

  #grant(up: Upstream, lease: Lease | undefined, cold: boolean, waitedMs: number): Grant {
    up.inflight++;
    if (cold) this.#o.hooks.coldStartServed(waitedMs / 1000);
    let released = false;
    return {
      upstream: up,
      waitedMs,
      cold,
      release: () => {
        if (released) return;
        released = true;
        up.inflight--;
        if (lease) this.#o.slots.release(lease, this.namespace, this.revision);
        if (this.limit > 0 && this.#waitingCount() > 0) this.#pump();
      },
    };
  }

  /** Hand a waiting request its grant. */
  #serve(w: Waiter, up: Upstream, lease: Lease | undefined): void {
    if (w.timer) clearTimeout(w.timer);
    w.done = true;
    this.stats.queued--;
    this.#o.budget.give(this.namespace);
    w.resolve(this.#grant(up, lease, w.cold, performance.now() - w.enqueuedAt));
  }

  #pump(): void {
    if (this.#closed || this.#waitingCount() === 0) return;
    if (this.#upstreams.length === 0) return;
    const candidates = this.#candidates();
    if (candidates.length === 0) {
      this.#retryLater(this.#earliestSuspectExpiry());
      return;
    }
    if (this.limit === 0) {
      for (let w = this.#shift(); w; w = this.#shift()) {
        this.#serve(w, this.#pick() as Upstream, undefined);
      }
      return;
    }
    if (!this.#redisUp()) {
      this.#pumpLocal(candidates);
      return;
    }
    this.#pumpSlots(candidates);
  }

  /**
   * Hard limit while Redis is unreachable: slots counted by this gateway
   * alone (its own in-flight per instance), so traffic keeps flowing; with
   * several gateways the limit may be exceeded until Redis is back.
   */
  #pumpLocal(candidates: Upstream[]): void {
    for (;;) {
      let best: Upstream | undefined;
      for (const u of candidates) {
        if (u.inflight < this.limit && (!best || u.inflight < best.inflight)) best = u;
      }
      if (!best) return;
      const w = this.#shift();
      if (!w) return;
      this.#serve(w, best, undefined);
    }
  }

  #pumpSlots(candidates: Upstream[]): void {
    if (this.#acquiring) {
      this.#pumpAgain = true;
      return;
    }
    const batch: Waiter[] = [];
    for (let i = this.#head; i < this.#queue.length && batch.length < MAX_BATCH; i++) {
      const w = this.#queue[i] as Waiter;
      if (!w.done) batch.push(w);
    }
    if (batch.length === 0) return;
    const now = performance.now();
    const byId = new Map(candidates.map((u) => [u.id, u]));
    const queued = this.#waitingCount();
    this.#acquiring = true;
    this.#pumpAgain = false;
    this.#o.slots
      .acquire({
        namespace: this.namespace,
        revision: this.revision,
        candidates: candidates.map((u) => u.id),
        limit: this.limit,
        ages: batch.map((w) => now - w.enqueuedAt),
        queued,
      })
      .then(
        (leases) => {
          this.#acquiring = false;
          // The script keeps this gateway registered as waiting unless it got all it asked for.
          if (leases.length < queued) this.#registeredWaiting = true;
          for (const lease of leases) {
            // The batch's waiters may have timed out meanwhile: the lease goes to whoever is first now.
            const w = this.#shift();
            const up = byId.get(lease.instanceId) as Upstream;
            if (w) this.#serve(w, up, lease);
            else this.#o.slots.release(lease, this.namespace, this.revision);
          }
          if (this.#waitingCount() === 0) {
            this.#leaveWaiters();
            return;
          }
          if (leases.length === batch.length || this.#pumpAgain) this.#pump();
          else this.#retryLater(performance.now() + (this.#o.slotPollMs ?? SLOT_POLL_MS));
        },
        (err: unknown) => {
          this.#acquiring = false;
          // While Redis is away this is expected (slots are then counted locally): no warning.
          if (this.#redisUp()) {
            this.#o.logger.warn({ err, revision: this.ref }, "acquiring slots failed; retrying");
          }
          this.#retryLater(performance.now() + (this.#o.slotPollMs ?? SLOT_POLL_MS));
        },
      );
  }

  /** Nothing waits any more: stop polling and, once no acquire is in flight, unregister. */
  #leaveWaiters(): void {
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    // An acquire in flight may register us again; its reply calls this once more.
    if (this.#acquiring || !this.#registeredWaiting) return;
    this.#registeredWaiting = false;
    this.#o.slots.stopWaiting(this.namespace, this.revision);
  }

  #retryLater(at: number): void {
    if (this.#retryTimer || this.#closed) return;
    const delay = Math.max(1, at - performance.now());
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#pump();
    }, delay);
  }

  #earliestSuspectExpiry(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const u of this.#upstreams) at = Math.min(at, u.suspectUntil);
    return at;
  }
}

function upstreamOf(ep: Endpoint): Upstream {
  const host = ep.host.includes(":") ? `[${ep.host}]` : ep.host;
  return {
    id: ep.instanceId,
    endpoint: ep,
    origin: `http://${host}:${ep.port}`,
    inflight: 0,
    suspectUntil: 0,
  };
}

function sameTarget(a: Endpoint, b: Endpoint): boolean {
  return (
    a.host === b.host &&
    a.port === b.port &&
    a.protocol === b.protocol &&
    a.header?.name === b.header?.name &&
    a.header?.value === b.header?.value
  );
}
