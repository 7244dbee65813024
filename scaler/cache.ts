/**
 * The scaler's one cache of the objects its controllers read: Revisions,
 * Configurations and Routes, kept with watchAndResync (store events for
 * speed, a periodic full re-read for correctness). Controllers register
 * listeners; every change and every resync reaches them in order, one at a
 * time, after the cache holds it, so a listener always reads a cache that
 * already says what it is told.
 *
 * The object an event names is read as the event arrives, not when its turn
 * comes: the reads of a burst (a thousand Services applied at once) go out
 * together on the one connection instead of one round trip after another,
 * while the events are still applied in order.
 */
import { revisionRef } from "../src/fleet/keys.ts";
import type { Logger } from "../src/logging.ts";
import type { Configuration, Plural, Revision, Route } from "../src/model/types.ts";
import type { ResyncReason } from "../src/redis/resync.ts";
import { type RedisStore, type WatchAndResync, watchAndResync } from "../src/store/index.ts";
import type { StoreEvent } from "../src/store/store.ts";

type Cached = Revision | Configuration | Route;
export type CachedKind = "revisions" | "configurations" | "routes";

/** One object changed: what the cache held before and holds now ("{ns}/{name}"). */
export interface CacheChange<T extends Cached = Cached> {
  kind: CachedKind;
  namespace: string;
  name: string;
  ref: string;
  before: T | undefined;
  after: T | undefined;
}

export interface CacheListener {
  onChange?(change: CacheChange): void | Promise<void>;
  /** Everything was re-read (start, interval, resubscribe, manual). */
  onResync?(reason: ResyncReason): void | Promise<void>;
}

export interface ObjectCacheOptions {
  store: Pick<RedisStore, "get" | "list" | "watch" | "onResubscribe">;
  resyncIntervalMs: number;
  logger: Logger;
}

const KINDS: readonly CachedKind[] = ["revisions", "configurations", "routes"];

export class ObjectCache {
  readonly revisions = new Map<string, Revision>();
  readonly configurations = new Map<string, Configuration>();
  readonly routes = new Map<string, Route>();
  readonly #o: ObjectCacheOptions;
  readonly #listeners: CacheListener[] = [];
  #watch: WatchAndResync | undefined;
  /** Reads started when their event arrived. */
  readonly #reads = new WeakMap<StoreEvent, Promise<unknown>>();
  #stopped = false;

  constructor(options: ObjectCacheOptions) {
    this.#o = options;
  }

  /** Register before start() to see the first resync. */
  listen(listener: CacheListener): void {
    this.#listeners.push(listener);
  }

  revision(namespace: string, name: string): Revision | undefined {
    return this.revisions.get(revisionRef(namespace, name));
  }

  /** Subscribes, reads everything once and tells the listeners; resolves after that. */
  async start(): Promise<void> {
    const { store } = this.#o;
    this.#watch = await watchAndResync({
      store: {
        watch: (handler) =>
          store.watch((e) => {
            if (e.type !== "delete" && this.#map(e.kind)) {
              const read = store.get(e.kind, e.namespace, e.name);
              // Awaited in its turn; a failure is seen there.
              read.catch(() => {});
              this.#reads.set(e, read);
            }
            handler(e);
          }),
        onResubscribe: (listener) => store.onResubscribe(listener),
      },
      intervalMs: this.#o.resyncIntervalMs,
      onEvent: (e) => this.#onEvent(e),
      resync: (reason) => this.#resync(reason),
      logger: this.#o.logger,
    });
  }

  /** Re-read everything now (and tell the listeners); waits for it. */
  async resyncNow(): Promise<void> {
    await this.#watch?.resyncNow();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const watch = this.#watch;
    this.#watch = undefined;
    await watch?.stop();
  }

  #map(kind: Plural): Map<string, Cached> | undefined {
    if (kind === "revisions") return this.revisions as Map<string, Cached>;
    if (kind === "configurations") return this.configurations as Map<string, Cached>;
    if (kind === "routes") return this.routes as Map<string, Cached>;
    return undefined;
  }

  async #onEvent(e: StoreEvent): Promise<void> {
    const map = this.#map(e.kind);
    if (!map || this.#stopped) return;
    const ref = revisionRef(e.namespace, e.name);
    const before = map.get(ref);
    const after =
      e.type === "delete"
        ? undefined
        : await (this.#reads.get(e) ?? this.#o.store.get(e.kind, e.namespace, e.name));
    if (after) map.set(ref, after as Cached);
    else map.delete(ref);
    const change: CacheChange = {
      kind: e.kind as CachedKind,
      namespace: e.namespace,
      name: e.name,
      ref,
      before,
      after: after as Cached | undefined,
    };
    for (const l of this.#listeners) await l.onChange?.(change);
  }

  async #resync(reason: ResyncReason): Promise<void> {
    if (this.#stopped) return;
    const lists = await Promise.all(KINDS.map((k) => this.#o.store.list(k)));
    KINDS.forEach((kind, i) => {
      const map = this.#map(kind) as Map<string, Cached>;
      map.clear();
      for (const x of lists[i] as Cached[]) {
        map.set(revisionRef(x.metadata.namespace, x.metadata.name), x);
      }
    });
    for (const l of this.#listeners) await l.onResync?.(reason);
  }
}
