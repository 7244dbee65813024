/**
 * The Redis key layout of the store, in one place (documented in
 * docs/architecture.md, "Redis keys"). Every key starts with a configurable
 * prefix so several Skiff installs, or test files, can share one Redis.
 */

import { ValidationError } from "../errors.ts";
import type { Plural } from "../model/types.ts";

export interface KeySpace {
  readonly prefix: string;
  /** HASH { rv, json }: one object; json lacks metadata.resourceVersion (it is `rv`). */
  obj(kind: Plural, namespace: string, name: string): string;
  /** SET of the names of one collection (kind + namespace). */
  index(kind: Plural, namespace: string): string;
  /** SET of the namespaces holding at least one object of `kind`. */
  namespaces(kind: Plural): string;
  /** STRING: resourceVersion of the last create or delete in the collection. */
  collectionVersion(kind: Plural, namespace: string): string;
  /** STRING counter (INCR): the source of every resourceVersion. */
  readonly resourceVersion: string;
  /** STRING: an opaque artifact of a revision (e.g. a compiled worker bundle). */
  artifact(namespace: string, revision: string): string;
  /**
   * STRING integer: bytes of all artifacts in a namespace, kept by the commit
   * script once it exists (created on first read from the artifacts themselves).
   */
  artifactBytes(namespace: string): string;
  /** Pub/sub channel: one JSON StoreEvent per committed object write. */
  readonly events: string;
}

/** Names and namespaces become key segments, so they must not contain the separator. */
const SEGMENT = /^[^\s:]+$/;

export function checkSegment(field: string, value: string): void {
  if (typeof value !== "string" || !SEGMENT.test(value)) {
    throw ValidationError.of([
      {
        field,
        message: `must be a non-empty name without spaces or ":" (got ${JSON.stringify(value)}); use a DNS-1123 label such as "default" or "hello"`,
        reason: "FieldValueInvalid",
      },
    ]);
  }
}

export function keySpace(prefix: string): KeySpace {
  return {
    prefix,
    obj: (kind, namespace, name) => `${prefix}obj:${kind}:${namespace}:${name}`,
    index: (kind, namespace) => `${prefix}idx:${kind}:${namespace}`,
    namespaces: (kind) => `${prefix}ns:${kind}`,
    collectionVersion: (kind, namespace) => `${prefix}cv:${kind}:${namespace}`,
    resourceVersion: `${prefix}rv`,
    artifact: (namespace, revision) => `${prefix}artifact:${namespace}:${revision}`,
    artifactBytes: (namespace) => `${prefix}artifact-bytes:${namespace}`,
    events: `${prefix}events`,
  };
}
