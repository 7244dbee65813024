/**
 * The resource store contract. Redis (store/redis-store.ts) is the source of
 * truth in every real deployment; an in-process implementation may exist for a
 * zero-install `skiff up`, and both must pass test/src/store/contract.ts.
 *
 * Writes go through `transact`: the callback reads through the Tx (each read
 * is remembered with the version it saw), stages puts and deletes, and the
 * store commits them all at once only if nothing it read has changed since.
 * On a lost race the callback runs again (it must be pure apart from the Tx);
 * after `maxAttempts` the store throws ConflictError. A callback that throws
 * aborts with nothing written.
 */
import type { Plural, Resource, ResourceOf } from "../model/types.ts";

export interface ResourceKey {
  kind: Plural;
  namespace: string;
  name: string;
}

export type StoreEventType = "put" | "delete";

/** Announced on pub/sub after every committed write, one per object. */
export interface StoreEvent extends ResourceKey {
  type: StoreEventType;
  resourceVersion: string;
}

export interface Tx {
  /**
   * Read one object; the commit fails (and the callback re-runs) if it changes
   * meanwhile, unless `depend` is "none" (a snapshot, as for list).
   */
  get<P extends Plural>(
    kind: P,
    namespace: string,
    name: string,
    options?: TxGetOptions,
  ): Promise<ResourceOf<P> | undefined>;
  /**
   * Read a whole collection. By default the commit fails if any member is
   * added, removed or changed meanwhile; `depend` narrows that to what the
   * callback's decision rests on (see TxListOptions).
   */
  list<P extends Plural>(
    kind: P,
    namespace: string,
    options?: TxListOptions,
  ): Promise<ResourceOf<P>[]>;
  /**
   * The names of a kind's objects in a namespace (with this Tx's staged
   * creates and deletes), sorted. A snapshot: the commit does not depend on
   * it. Cheap beside list: no object is read, so a caller that needs a few
   * members of a large collection picks them by name and reads them with get.
   */
  names(kind: Plural, namespace: string): Promise<string[]>;
  /**
   * How many objects of a kind a namespace holds (committed ones: not what this
   * Tx staged). With a bound, the commit fails only if the count has grown past
   * `atMost` meanwhile: a quota check that other creations do not disturb until
   * the quota is really at stake.
   */
  count(kind: Plural, namespace: string, bound?: Bound): Promise<number>;
  /** The bytes of a namespace's artifacts (committed ones), with an optional bound as for count. */
  artifactBytes(namespace: string, bound?: Bound): Promise<number>;
  /** Stage a write. metadata.resourceVersion is assigned at commit. */
  put(obj: Resource): void;
  /** Stage a delete (and of the object's artifact, if any). */
  delete(kind: Plural, namespace: string, name: string): void;
  /** Stage a write of an opaque artifact (e.g. a worker bundle) tied to a revision. */
  putArtifact(namespace: string, revision: string, content: string): void;
}

export interface TxGetOptions {
  /**
   * "object" (default): the commit fails if the object changes meanwhile;
   * "none": a snapshot the writes do not depend on.
   */
  depend?: "object" | "none";
}

export interface TxListOptions {
  /**
   * What a concurrent change must not touch for the commit to hold:
   * - "members" (default): membership and every member's content;
   * - "membership": only which objects exist (a member's status or spec may change);
   * - "none": nothing; the read is a snapshot the writes do not depend on
   *   (e.g. to compute advisory status that the status writer recomputes).
   */
  depend?: "members" | "membership" | "none";
}

/** The most a counted quantity may be at commit for the callback's decision to hold. */
export interface Bound {
  atMost: number;
}

export interface TransactOptions {
  /** Re-runs allowed after a lost race before ConflictError. Default 8. */
  maxAttempts?: number;
  /** Validate and compute, but write nothing (dry run). */
  dryRun?: boolean;
}

export interface CommitResult<T> {
  value: T;
  /** The resourceVersion the commit assigned ("" when nothing was written). */
  resourceVersion: string;
}

export interface ListOptions {
  /** Equality label selector, e.g. { "serving.knative.dev/service": "hello" }. */
  labels?: Record<string, string>;
}

export interface Store {
  get<P extends Plural>(
    kind: P,
    namespace: string,
    name: string,
  ): Promise<ResourceOf<P> | undefined>;
  /** All objects of a kind in one namespace, or in all namespaces when namespace is undefined. */
  list<P extends Plural>(
    kind: P,
    namespace?: string,
    options?: ListOptions,
  ): Promise<ResourceOf<P>[]>;
  transact<T>(fn: (tx: Tx) => Promise<T>, options?: TransactOptions): Promise<CommitResult<T>>;
  getArtifact(namespace: string, revision: string): Promise<string | undefined>;
  /** Subscribe to committed changes. Resolves once the subscription is live. */
  watch(handler: (event: StoreEvent) => void): Promise<() => Promise<void>>;
  /** Liveness of the backing store (for /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
