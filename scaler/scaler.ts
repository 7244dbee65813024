/**
 * The scaler's work while it leads (server.ts elects the leader and starts
 * one ScalerLoop per term): a composition of small controllers, Knative
 * style, each a loop over one shared object cache (cache.ts):
 *
 * - routes (controllers/routes.ts): Route, Configuration and readiness
 *   changes reconcile the affected Routes' status and routing tables
 *   (routes.ts); a resync reconciles them all.
 * - scale (controllers/scale.ts): metrics, activation signals, the KPA
 *   (kpa.ts), placement (placement.ts, plan.ts) and the desired sets of
 *   agents; Active, replica counts and placement problems on Revisions.
 * - revision status (controllers/revision-status.ts): Revision health from
 *   the agents' instance reports, propagated to Configuration, Route and
 *   Service.
 * - GC (controllers/gc.ts): old revisions, every `gcIntervalMs`.
 *
 * Every write is checked against the lease (canWrite); desired-set writes
 * are fenced by it in Redis (src/fleet/desired.ts).
 */
import type { Redis } from "ioredis";
import { DesiredWriter } from "../src/fleet/desired.ts";
import type { Fleet } from "../src/fleet/fleet.ts";
import type { Logger } from "../src/logging.ts";
import type { RedisStore } from "../src/store/index.ts";
import { ObjectCache } from "./cache.ts";
import { GcController } from "./controllers/gc.ts";
import { RevisionStatusController } from "./controllers/revision-status.ts";
import { RoutesController } from "./controllers/routes.ts";
import { ScaleController } from "./controllers/scale.ts";
import type { RevisionScaleState } from "./controllers/scale-reports.ts";
import type { ScalerMetrics } from "./metrics.ts";
import type { ScalerOptions } from "./options.ts";
import { RouteReconciler } from "./routes.ts";

export type { RevisionScaleState } from "./controllers/scale-reports.ts";

export interface ScalerLoopDeps {
  options: ScalerOptions;
  /** Commands (shared by the store, the fleet and routing writes). */
  redis: Redis;
  store: RedisStore;
  fleet: Fleet;
  leaseKey: string;
  /** The lease value while this scaler leads, else undefined (checked before every write). */
  leaseValue(): string | undefined;
  metrics: ScalerMetrics;
  logger: Logger;
  /**
   * Whether Redis is reachable (src/redis/health.ts): while it is not, a
   * failed pass is the expected consequence, logged at debug (the outage
   * itself is one line). Default: always.
   */
  redisUp?: () => boolean;
  /** A failure on a serving revision stays visible at least this long. Default 10 s. */
  statusHoldMs?: number;
}

export class ScalerLoop {
  readonly #cache: ObjectCache;
  readonly #routes: RoutesController;
  readonly #scale: ScaleController;
  readonly #status: RevisionStatusController;
  readonly #gc: GcController;
  #stopped = false;

  constructor(deps: ScalerLoopDeps) {
    const o = deps.options;
    const active = () => !this.#stopped;
    const canWrite = () => !this.#stopped && deps.leaseValue() !== undefined;
    const guard = {
      metrics: deps.metrics,
      logger: deps.logger,
      active,
      ...(deps.redisUp ? { redisUp: deps.redisUp } : {}),
    };
    this.#cache = new ObjectCache({
      store: deps.store,
      resyncIntervalMs: o.resyncIntervalMs,
      logger: deps.logger,
    });
    const reconciler = new RouteReconciler({
      store: deps.store,
      redis: deps.redis,
      prefix: o.redisPrefix,
      domain: o.domain,
      scheme: o.urlScheme,
      logger: deps.logger,
      canWrite,
    });
    const published = () => reconciler.publishedRevisions();
    this.#routes = new RoutesController({ ...guard, cache: this.#cache, reconciler });
    this.#scale = new ScaleController({
      ...guard,
      options: o,
      redis: deps.redis,
      store: deps.store,
      fleet: deps.fleet,
      cache: this.#cache,
      writer: new DesiredWriter({
        redis: deps.redis,
        prefix: o.redisPrefix,
        leaseKey: deps.leaseKey,
        leaseValue: () => (this.#stopped ? undefined : deps.leaseValue()),
      }),
      published,
      canWrite,
    });
    this.#status = new RevisionStatusController({
      cache: this.#cache,
      store: deps.store,
      fleet: deps.fleet,
      domain: o.domain,
      scheme: o.urlScheme,
      holdFailureMs: deps.statusHoldMs ?? 10_000,
      resyncIntervalMs: o.resyncIntervalMs,
      canWrite,
      metrics: deps.metrics,
      logger: deps.logger,
    });
    this.#gc = new GcController({
      ...guard,
      cache: this.#cache,
      store: deps.store,
      settings: o.gc,
      intervalMs: o.gcIntervalMs,
      published,
      canWrite,
    });
  }

  async start(): Promise<void> {
    await this.#routes.loadPublished();
    await this.#cache.start();
    if (this.#stopped) return this.#teardown();
    await this.#status.start();
    if (this.#stopped) return this.#teardown();
    await this.#scale.start();
    if (this.#stopped) return this.#teardown();
    this.#gc.start();
  }

  /** Stop acting at once (no write starts after this), then release everything. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#teardown();
  }

  /** Idempotent: stops whatever start() got to. */
  async #teardown(): Promise<void> {
    await Promise.all([this.#scale.stop(), this.#gc.stop(), this.#status.stop()]);
    await this.#cache.stop();
    // Reconciles already running finish (none starts once stopped).
    await this.#routes.idle();
  }

  /** Run a scaling pass now and wait for it. */
  tickNow(): Promise<void> {
    return this.#scale.tickNow();
  }

  /** Read the gateways' counters now and wait for it. */
  scrapeNow(): Promise<void> {
    return this.#scale.scrapeNow();
  }

  /** Run revision GC now and wait for it. */
  collectNow(): Promise<void> {
    return this.#gc.collectNow();
  }

  /** Re-read every object (reconciling every route) and every instance report now. */
  async resyncNow(): Promise<void> {
    await this.#cache.resyncNow();
    await this.#status.resyncNow();
  }

  /** The last pass's view of one revision ("{ns}/{rev}"). */
  revisionState(ref: string): RevisionScaleState | undefined {
    return this.#scale.revisionState(ref);
  }
}
