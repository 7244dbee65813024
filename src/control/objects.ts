/** Small builders for stored objects' metadata, shared by apply and delete. */
import { randomUUID } from "node:crypto";
import { getCondition } from "../model/conditions.ts";
import type { KindName, ObjectMeta, OwnerReference, Resource, Revision } from "../model/types.ts";
import { API_VERSION } from "../model/types.ts";

/** Kubernetes timestamps carry whole seconds: 2026-11-22T10:00:00Z. */
export function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function newMeta(
  name: string,
  namespace: string,
  extra: Partial<Pick<ObjectMeta, "labels" | "annotations" | "ownerReferences">> = {},
): ObjectMeta {
  const meta: ObjectMeta = {
    name,
    namespace,
    uid: randomUUID(),
    generation: 1,
    resourceVersion: "",
    creationTimestamp: timestamp(),
  };
  if (extra.labels && Object.keys(extra.labels).length) meta.labels = extra.labels;
  if (extra.annotations && Object.keys(extra.annotations).length)
    meta.annotations = extra.annotations;
  if (extra.ownerReferences?.length) meta.ownerReferences = extra.ownerReferences;
  return meta;
}

export function ownerRef(owner: Resource): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: owner.kind as KindName,
    name: owner.metadata.name,
    uid: owner.metadata.uid,
    controller: true,
  };
}

/** The controlling owner of an object, if any. */
export function controllerOf(obj: Resource): OwnerReference | undefined {
  return obj.metadata.ownerReferences?.find((o) => o.controller);
}

/** Drop empty maps so that `{}` and a missing field compare (and print) the same. */
export function compactRecord(
  r: Record<string, string> | undefined,
): Record<string, string> | undefined {
  return r && Object.keys(r).length ? r : undefined;
}

/** A revision is Ready: it passed readiness once (it stays Ready at zero instances). */
export function isRevisionReady(rev: Revision | undefined): boolean {
  return getCondition(rev?.status.conditions, "Ready")?.status === "True";
}
