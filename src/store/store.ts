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
  /** Read one object; the commit fails (and the callback re-runs) if it changes meanwhile. */
  get<P extends Plural>(
    kind: P,
    namespace: string,
    name: string,
  ): Promise<ResourceOf<P> | undefined>;
  /** Read a whole collection; the commit fails if any member is added or removed meanwhile. */
  list<P extends Plural>(kind: P, namespace: string): Promise<ResourceOf<P>[]>;
  /** Stage a write. metadata.resourceVersion is assigned at commit. */
  put(obj: Resource): void;
  /** Stage a delete (and of the object's artifact, if any). */
  delete(kind: Plural, namespace: string, name: string): void;
  /** Stage a write of an opaque artifact (e.g. a worker bundle) tied to a revision. */
  putArtifact(namespace: string, revision: string, content: string): void;
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
