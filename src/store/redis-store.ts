/**
 * The Redis implementation of the Store contract (store.ts). Key layout in
 * keys.ts, atomic scripts in scripts.ts.
 *
 * Optimistic concurrency: a Tx remembers the version of everything it read
 * (object -> its rv or "absent"; collection -> its collection version plus,
 * unless asked otherwise, each member's rv; a count or a byte total -> the
 * bound the callback's decision needs) and the commit script applies the
 * staged writes only if all of them still hold; otherwise the callback re-runs
 * against fresh data.
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { z } from "zod";
import {
  ConflictError,
  isSkiffError,
  SkiffError,
  UnavailableError,
  ValidationError,
} from "../errors.ts";
import { type Logger, silentLogger } from "../logging.ts";
import { Counter, type Registry } from "../metrics.ts";
import { KINDS, type Plural, type Resource, type ResourceOf } from "../model/types.ts";
import {
  loggerSchema,
  redisInstanceSchema,
  redisPrefixSchema,
  redisUrlTextSchema,
} from "../options.ts";
import { parseOrThrow } from "../parse.ts";
import { connectRedis, quitRedis } from "../redis/connect.ts";
import { RedisSubscriber } from "../redis/subscriber.ts";
import { checkSegment, type KeySpace, keySpace } from "./keys.ts";
import { ARTIFACT_BYTES, COMMIT, LIST } from "./scripts.ts";
import type {
  Bound,
  CommitResult,
  ListOptions,
  Store,
  StoreEvent,
  TransactOptions,
  Tx,
  TxGetOptions,
  TxListOptions,
} from "./store.ts";

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL; the store owns (and closes) this connection. */
  url?: string;
  /** An existing ioredis connection; the store uses it but leaves closing it to the caller. */
  redis?: Redis;
  /** Prefix of every key and of the events channel. Default "skiff:". */
  prefix?: string;
  logger?: Logger;
  /** Where the store's transaction counters are registered (none: not exported). */
  registry?: Registry;
}

export interface RedisStore extends Store {
  readonly keys: KeySpace;
  /**
   * Called each time the subscriber connection came back after a loss and its
   * subscription is live again: events published meanwhile were missed, so
   * listeners should resync. Returns a function that removes the listener.
   */
  onResubscribe(listener: () => void): () => void;
}

const DEFAULT_MAX_ATTEMPTS = 8;
const PING_TIMEOUT_MS = 2000;

const optionsSchema = z
  .object({
    url: redisUrlTextSchema.optional(),
    redis: redisInstanceSchema.optional(),
    prefix: redisPrefixSchema,
    logger: loggerSchema.optional(),
    registry: z.custom<Registry>((v) => typeof v === "object" && v !== null).optional(),
  })
  .refine((o) => (o.url === undefined) !== (o.redis === undefined), {
    message: "give exactly one of url and redis",
    path: ["url"],
  })
  .refine((o) => !o.redis?.options.keyPrefix, {
    message:
      "the ioredis keyPrefix option is not supported (scripts build keys themselves); use the store's prefix option instead",
    path: ["redis"],
  });

const transactSchema = z.object({
  maxAttempts: z.number().int().min(1).max(1000).default(DEFAULT_MAX_ATTEMPTS),
  dryRun: z.boolean().default(false),
});

const eventSchema = z.object({
  type: z.enum(["put", "delete"]),
  kind: z.enum(Object.keys(KINDS) as [Plural, ...Plural[]]),
  namespace: z.string().min(1),
  name: z.string().min(1),
  resourceVersion: z.string().min(1),
});

export async function createRedisStore(options: RedisStoreOptions): Promise<RedisStore> {
  const opts = parseOrThrow(optionsSchema, options, { kind: "RedisStore", name: "options" });
  const owned = opts.redis === undefined;
  const redis =
    opts.redis ??
    // While Redis is away a command fails after a few quick reconnect attempts
    // (~1 s) instead of queueing for long: callers answer 503 and retry.
    connectRedis(opts.url as string, {
      connectionName: "skiff-store",
      logger: opts.logger ?? silentLogger,
    });
  const logger = opts.logger ?? silentLogger;
  return new RedisStoreImpl(
    redis,
    owned,
    keySpace(opts.prefix),
    logger,
    storeMetrics(opts.registry),
  );
}

const PLURAL_OF = Object.fromEntries(Object.entries(KINDS).map(([p, k]) => [k, p])) as Record<
  string,
  Plural
>;

function pluralOf(obj: Resource): Plural {
  const plural = PLURAL_OF[obj.kind];
  if (!plural) {
    throw ValidationError.of([
      {
        field: "kind",
        message: `unknown kind ${JSON.stringify(obj.kind)}; use one of ${Object.values(KINDS).join(", ")}`,
        reason: "FieldValueNotSupported",
      },
    ]);
  }
  return plural;
}

/** Stored form: the object minus metadata.resourceVersion, which lives in the hash's `rv`. */
function encode(obj: Resource): string {
  const { resourceVersion: _ignored, ...metadata } = obj.metadata;
  return JSON.stringify({ ...obj, metadata });
}

function decode<P extends Plural>(key: string, rv: string, json: string): ResourceOf<P> {
  let obj: ResourceOf<P>;
  try {
    obj = JSON.parse(json) as ResourceOf<P>;
  } catch (err) {
    throw new SkiffError("INTERNAL", `stored object ${key} is not valid JSON`, { cause: err });
  }
  obj.metadata.resourceVersion = rv;
  return obj;
}

/** Redis replies that mean "not now" rather than "wrong". */
const TRANSIENT_REPLY = /^(LOADING|BUSY|OOM|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

/** Map driver errors into the Skiff hierarchy: unreachable -> 503, bad reply -> 500. */
async function guard<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (isSkiffError(err)) throw err;
    const message = err instanceof Error ? err.message : String(err);
    const isReply = err instanceof Error && err.name === "ReplyError";
    if (isReply && !TRANSIENT_REPLY.test(message)) {
      throw new SkiffError("INTERNAL", `redis: ${message}`, { cause: err });
    }
    throw new UnavailableError(`redis is unavailable: ${message}`, { cause: err });
  }
}

/** Jittered exponential backoff between re-runs: up to 4, 8, 16, ... 100 ms. */
function backoffMs(attempt: number): number {
  return Math.random() * Math.min(100, 2 ** (attempt + 1));
}

/**
 * Commits attempted vs committed is the store's contention figure: 1.0 means
 * no write ever re-ran for a conflict.
 */
function storeMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    attempts: new Counter({
      name: "skiff_store_commit_attempts_total",
      help: "Commits attempted by write transactions (a lost race re-runs the callback and attempts again)",
      registers,
    }),
    outcomes: new Counter({
      name: "skiff_store_transactions_total",
      help: "Write transactions by outcome: committed, or conflict (gave up after maxAttempts lost races)",
      labelNames: ["outcome"] as const,
      registers,
    }),
  };
}

type StoreMetrics = ReturnType<typeof storeMetrics>;

interface Read {
  /** o: object version, c: collection version, n: collection size bound, b: artifact bytes bound. */
  type: "o" | "c" | "n" | "b";
  /** The version seen ("" when absent), or for a bound the most allowed. */
  seen: string;
  /** For the conflict message. */
  what: string;
  kind?: string;
  name?: string;
}

type Staged =
  | { op: "put"; kind: Plural; namespace: string; name: string; json: string; obj: Resource }
  | { op: "delete"; kind: Plural; namespace: string; name: string };

interface StagedArtifact {
  key: string;
  namespace: string;
  content: string;
}

/** Decode a LIST script reply: [cv, name, rv, json, name, rv, json, ...]. */
function listReply(reply: unknown): { cv: string; members: [string, string, string][] } {
  const flat = reply as string[];
  const members: [string, string, string][] = [];
  for (let i = 1; i + 2 < flat.length; i += 3) {
    members.push([flat[i] as string, flat[i + 1] as string, flat[i + 2] as string]);
  }
  return { cv: flat[0] ?? "", members };
}

class RedisTx implements Tx {
  readonly reads = new Map<string, Read>();
  /** Keyed by object key; a later put or delete of the same object replaces the earlier one. */
  readonly staged = new Map<string, Staged>();
  readonly artifacts = new Map<string, StagedArtifact>();
  #finished = false;
  readonly #redis: Redis;
  readonly #keys: KeySpace;

  constructor(redis: Redis, keys: KeySpace) {
    this.#redis = redis;
    this.#keys = keys;
  }

  finish(): void {
    this.#finished = true;
  }

  get empty(): boolean {
    return this.staged.size === 0 && this.artifacts.size === 0;
  }

  #open(): void {
    // Our bug (a Tx kept past its callback), never a user's: a plain Error.
    if (this.#finished)
      throw new Error("transaction already finished: use the Tx only inside its callback");
  }

  #remember(key: string, read: Read): void {
    // The first version seen is the one the callback's decisions rest on.
    if (!this.reads.has(key)) this.reads.set(key, read);
  }

  /** A bound: the tightest one asked for the same key holds. */
  #bound(key: string, read: Read): void {
    const had = this.reads.get(key);
    if (!had || Number(read.seen) < Number(had.seen)) this.reads.set(key, read);
  }

  #stagedView<P extends Plural>(key: string): ResourceOf<P> | undefined | null {
    const s = this.staged.get(key);
    if (!s) return null;
    if (s.op === "delete") return undefined;
    return decode<P>(key, s.obj.metadata.resourceVersion ?? "", s.json);
  }

  async get<P extends Plural>(
    kind: P,
    namespace: string,
    name: string,
    options: TxGetOptions = {},
  ): Promise<ResourceOf<P> | undefined> {
    this.#open();
    checkSegment("metadata.namespace", namespace);
    checkSegment("metadata.name", name);
    const key = this.#keys.obj(kind, namespace, name);
    const mine = this.#stagedView<P>(key);
    if (mine !== null) return mine;
    const [rv, json] = await guard(this.#redis.hmget(key, "rv", "json"));
    if (options.depend !== "none") {
      this.#remember(key, {
        type: "o",
        seen: rv ?? "",
        what: `${kind} ${namespace}/${name}`,
        kind: KINDS[kind],
        name,
      });
    }
    return rv && json ? decode<P>(key, rv, json) : undefined;
  }

  async list<P extends Plural>(
    kind: P,
    namespace: string,
    options: TxListOptions = {},
  ): Promise<ResourceOf<P>[]> {
    this.#open();
    checkSegment("metadata.namespace", namespace);
    const depend = options.depend ?? "members";
    const k = this.#keys;
    const { cv, members } = listReply(
      await guard(
        LIST.run(
          this.#redis,
          [k.index(kind, namespace), k.collectionVersion(kind, namespace)],
          [k.obj(kind, namespace, "")],
        ),
      ),
    );
    if (depend !== "none") {
      this.#remember(k.collectionVersion(kind, namespace), {
        type: "c",
        seen: cv,
        what: `the ${kind} in namespace ${namespace}`,
      });
    }
    const byName = new Map<string, ResourceOf<P>>();
    for (const [name, rv, json] of members) {
      const key = k.obj(kind, namespace, name);
      if (depend === "members") {
        this.#remember(key, {
          type: "o",
          seen: rv,
          what: `${kind} ${namespace}/${name}`,
          kind: KINDS[kind],
          name,
        });
      }
      byName.set(name, decode<P>(key, rv, json));
    }
    // Read-your-writes: overlay what this Tx staged in the same collection.
    for (const [key, s] of this.staged) {
      if (s.kind !== kind || s.namespace !== namespace) continue;
      if (s.op === "delete") byName.delete(s.name);
      else byName.set(s.name, this.#stagedView<P>(key) as ResourceOf<P>);
    }
    return [...byName.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
  }

  async names(kind: Plural, namespace: string): Promise<string[]> {
    this.#open();
    checkSegment("metadata.namespace", namespace);
    const names = new Set(await guard(this.#redis.smembers(this.#keys.index(kind, namespace))));
    for (const s of this.staged.values()) {
      if (s.kind !== kind || s.namespace !== namespace) continue;
      if (s.op === "delete") names.delete(s.name);
      else names.add(s.name);
    }
    return [...names].sort();
  }

  async count(kind: Plural, namespace: string, bound?: Bound): Promise<number> {
    this.#open();
    checkSegment("metadata.namespace", namespace);
    const key = this.#keys.index(kind, namespace);
    const n = await guard(this.#redis.scard(key));
    if (bound) {
      this.#bound(key, {
        type: "n",
        seen: String(bound.atMost),
        what: `the number of ${kind} in namespace ${namespace}`,
      });
    }
    return n;
  }

  async artifactBytes(namespace: string, bound?: Bound): Promise<number> {
    this.#open();
    checkSegment("metadata.namespace", namespace);
    const k = this.#keys;
    const key = k.artifactBytes(namespace);
    const n = Number(
      await guard(
        ARTIFACT_BYTES.run(
          this.#redis,
          [key, k.index("revisions", namespace)],
          [k.artifact(namespace, "")],
        ),
      ),
    );
    if (bound) {
      this.#bound(key, {
        type: "b",
        seen: String(bound.atMost),
        what: `the artifact bytes of namespace ${namespace}`,
      });
    }
    return n;
  }

  put(obj: Resource): void {
    this.#open();
    const kind = pluralOf(obj);
    const namespace = obj.metadata?.namespace;
    const name = obj.metadata?.name;
    checkSegment("metadata.namespace", namespace);
    checkSegment("metadata.name", name);
    this.staged.set(this.#keys.obj(kind, namespace, name), {
      op: "put",
      kind,
      namespace,
      name,
      json: encode(obj),
      obj,
    });
  }

  delete(kind: Plural, namespace: string, name: string): void {
    this.#open();
    checkSegment("metadata.namespace", namespace);
    checkSegment("metadata.name", name);
    this.staged.set(this.#keys.obj(kind, namespace, name), { op: "delete", kind, namespace, name });
    // The object's artifact goes with it, including one staged earlier in this Tx.
    if (kind === "revisions") this.artifacts.delete(this.#keys.artifact(namespace, name));
  }

  putArtifact(namespace: string, revision: string, content: string): void {
    this.#open();
    checkSegment("namespace", namespace);
    checkSegment("revision", revision);
    if (typeof content !== "string") throw new TypeError("artifact content must be a string");
    const key = this.#keys.artifact(namespace, revision);
    this.artifacts.set(key, { key, namespace, content });
  }
}

class RedisStoreImpl implements RedisStore {
  readonly keys: KeySpace;
  readonly #redis: Redis;
  readonly #owned: boolean;
  readonly #log: Logger;
  readonly #handlers = new Set<(event: StoreEvent) => void>();
  readonly #subscriber: RedisSubscriber;
  /** The events channel's subscription, made by the first watch and kept until close(). */
  #subscribed: Promise<unknown> | undefined;
  #closed = false;

  readonly #metrics: StoreMetrics;

  constructor(redis: Redis, owned: boolean, keys: KeySpace, logger: Logger, metrics: StoreMetrics) {
    this.#metrics = metrics;
    this.#redis = redis;
    this.#owned = owned;
    this.keys = keys;
    this.#log = logger;
    this.#subscriber = new RedisSubscriber({ redis, name: "store", logger });
  }

  async get<P extends Plural>(
    kind: P,
    namespace: string,
    name: string,
  ): Promise<ResourceOf<P> | undefined> {
    checkSegment("metadata.namespace", namespace);
    checkSegment("metadata.name", name);
    const key = this.keys.obj(kind, namespace, name);
    const [rv, json] = await guard(this.#redis.hmget(key, "rv", "json"));
    return rv && json ? decode<P>(key, rv, json) : undefined;
  }

  async list<P extends Plural>(
    kind: P,
    namespace?: string,
    options: ListOptions = {},
  ): Promise<ResourceOf<P>[]> {
    let namespaces: string[];
    if (namespace === undefined) {
      namespaces = (await guard(this.#redis.smembers(this.keys.namespaces(kind)))).sort();
    } else {
      checkSegment("metadata.namespace", namespace);
      namespaces = [namespace];
    }
    // One script call per namespace, all in flight at once (pipelined on the connection).
    const replies = await Promise.all(
      namespaces.map((ns) =>
        guard(
          LIST.run(
            this.#redis,
            [this.keys.index(kind, ns), this.keys.collectionVersion(kind, ns)],
            [this.keys.obj(kind, ns, "")],
          ),
        ),
      ),
    );
    const selector = Object.entries(options.labels ?? {});
    const out: ResourceOf<P>[] = [];
    replies.forEach((reply, i) => {
      const ns = namespaces[i] as string;
      const objs = listReply(reply)
        .members.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([name, rv, json]) => decode<P>(this.keys.obj(kind, ns, name), rv, json));
      for (const obj of objs) {
        const labels = obj.metadata.labels ?? {};
        if (selector.every(([k, v]) => labels[k] === v)) out.push(obj);
      }
    });
    return out;
  }

  async transact<T>(
    fn: (tx: Tx) => Promise<T>,
    options: TransactOptions = {},
  ): Promise<CommitResult<T>> {
    const { maxAttempts, dryRun } = parseOrThrow(transactSchema, options, {
      kind: "TransactOptions",
      name: "options",
    });
    let conflict: Read | undefined;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const tx = new RedisTx(this.#redis, this.keys);
      let value: T;
      try {
        value = await fn(tx);
      } finally {
        tx.finish();
      }
      if (dryRun || tx.empty) return { value, resourceVersion: "" };
      this.#metrics.attempts.inc();
      const outcome = await this.#commit(tx);
      if (outcome.ok) {
        this.#metrics.outcomes.inc({ outcome: "committed" });
        for (const s of tx.staged.values()) {
          if (s.op === "put") s.obj.metadata.resourceVersion = outcome.resourceVersion;
        }
        return { value, resourceVersion: outcome.resourceVersion };
      }
      conflict = tx.reads.get(outcome.key);
      if (attempt < maxAttempts) await sleep(backoffMs(attempt));
    }
    this.#metrics.outcomes.inc({ outcome: "conflict" });
    const what = conflict?.what ?? "an object this transaction read";
    throw new ConflictError(
      `${what} changed concurrently ${maxAttempts} times while this change was being made, retry`,
      { kind: conflict?.kind, name: conflict?.name },
    );
  }

  async #commit(
    tx: RedisTx,
  ): Promise<{ ok: true; resourceVersion: string } | { ok: false; key: string }> {
    const k = this.keys;
    const keys = [k.resourceVersion];
    const args = [
      k.events,
      String(tx.reads.size),
      String(tx.staged.size),
      String(tx.artifacts.size),
    ];
    for (const [key, read] of tx.reads) {
      keys.push(key);
      args.push(read.type, read.seen);
    }
    for (const [key, s] of tx.staged) {
      const hasArtifact = s.op === "delete" && s.kind === "revisions";
      keys.push(
        key,
        k.index(s.kind, s.namespace),
        k.namespaces(s.kind),
        k.collectionVersion(s.kind, s.namespace),
        hasArtifact ? k.artifact(s.namespace, s.name) : key,
        k.artifactBytes(s.namespace),
      );
      args.push(
        s.op === "put" ? "p" : "d",
        s.kind,
        s.namespace,
        s.name,
        s.op === "put" ? s.json : "",
        hasArtifact ? "1" : "0",
      );
    }
    for (const a of tx.artifacts.values()) {
      keys.push(a.key, k.artifactBytes(a.namespace));
      args.push(a.content);
    }
    const [ok, detail] = (await guard(COMMIT.run(this.#redis, keys, args))) as [number, string];
    return ok === 1 ? { ok: true, resourceVersion: detail } : { ok: false, key: detail };
  }

  async getArtifact(namespace: string, revision: string): Promise<string | undefined> {
    checkSegment("namespace", namespace);
    checkSegment("revision", revision);
    return (await guard(this.#redis.get(this.keys.artifact(namespace, revision)))) ?? undefined;
  }

  async watch(handler: (event: StoreEvent) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new UnavailableError("store is closed");
    this.#handlers.add(handler);
    try {
      await this.#subscribe();
    } catch (err) {
      this.#handlers.delete(handler);
      throw err;
    }
    // The channel stays subscribed until close(); an idle subscription costs nothing.
    return async () => {
      this.#handlers.delete(handler);
    };
  }

  onResubscribe(listener: () => void): () => void {
    return this.#subscriber.onResubscribe(listener);
  }

  #subscribe(): Promise<unknown> {
    this.#subscribed ??= guard(
      this.#subscriber.subscribe(this.keys.events, (message) => this.#dispatch(message)),
    ).catch((err: unknown) => {
      this.#subscribed = undefined;
      throw err;
    });
    return this.#subscribed;
  }

  #dispatch(message: string): void {
    let event: StoreEvent;
    try {
      event = eventSchema.parse(JSON.parse(message));
    } catch (err) {
      this.#log.warn({ err, message: message.slice(0, 500) }, "ignoring malformed store event");
      return;
    }
    for (const handler of this.#handlers) {
      try {
        handler(event);
      } catch (err) {
        this.#log.error({ err, event }, "store event handler threw");
      }
    }
  }

  /** Bounded, so a readiness probe never hangs on a queued command. */
  async ping(): Promise<void> {
    const timeout = new AbortController();
    try {
      await Promise.race([
        guard(this.#redis.ping()),
        sleep(PING_TIMEOUT_MS, undefined, { signal: timeout.signal }).then(
          () => {
            throw new UnavailableError(`redis did not answer PING within ${PING_TIMEOUT_MS} ms`);
          },
          () => {}, // aborted: PING answered first
        ),
      ]);
    } finally {
      timeout.abort();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.clear();
    await this.#subscriber.close();
    if (this.#owned) await quitRedis(this.#redis);
  }
}
