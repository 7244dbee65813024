/**
 * The revision GC controller: every `gcIntervalMs` (and on demand), one pass
 * of revision-gc.ts over the cached objects, with the revisions the published
 * routing tables still send traffic to counted as routed.
 */
import type { Logger } from "../../src/logging.ts";
import { Coalescer } from "../../src/redis/resync.ts";
import type { Store } from "../../src/store/store.ts";
import type { ObjectCache } from "../cache.ts";
import type { GcSettings } from "../gc.ts";
import type { ScalerMetrics } from "../metrics.ts";
import { collectRevisions } from "../revision-gc.ts";
import { type GuardDeps, guarded } from "./guard.ts";

export interface GcControllerDeps extends GuardDeps {
  cache: ObjectCache;
  store: Pick<Store, "transact">;
  metrics: Pick<ScalerMetrics, "errors" | "gcDeleted">;
  logger: Logger;
  settings: GcSettings;
  intervalMs: number;
  /** "{ns}/{rev}" that published routing tables send traffic to. */
  published(): ReadonlySet<string>;
  /** Checked before each delete. */
  canWrite(): boolean;
}

export class GcController {
  readonly #d: GcControllerDeps;
  readonly #pass: Coalescer;
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: GcControllerDeps) {
    this.#d = deps;
    this.#pass = new Coalescer(guarded(deps, "gc", () => this.#collect()));
  }

  start(): void {
    this.#timer = setInterval(() => void this.#pass.trigger(), this.#d.intervalMs);
    this.#timer.unref();
  }

  /** Run a pass now and wait for it. */
  collectNow(): Promise<void> {
    return this.#pass.trigger();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#pass.idle();
  }

  async #collect(): Promise<void> {
    const d = this.#d;
    const deleted = await collectRevisions({
      store: d.store,
      configurations: [...d.cache.configurations.values()],
      revisions: [...d.cache.revisions.values()],
      routes: [...d.cache.routes.values()],
      published: d.published(),
      settings: d.settings,
      nowMs: Date.now(),
      logger: d.logger,
      canWrite: () => d.canWrite(),
    });
    if (deleted.length > 0) d.metrics.gcDeleted.inc(deleted.length);
  }
}
