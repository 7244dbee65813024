/**
 * `metadata.managedFields`: which field manager set which fields of an object
 * (Kubernetes server-side apply). Written by the API's apply patches
 * (deploy/api/server-side-apply.ts) and kept as is by every other write.
 * Kept off ObjectMeta's type on purpose: only server-side apply reads it.
 */
import type { ObjectMeta, Resource } from "../model/types.ts";

/** A Kubernetes FieldsV1 set: `f:<field>` keys, `{}` at each owned leaf. */
export interface FieldsV1 {
  [key: string]: FieldsV1;
}

export interface ManagedFieldsEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  /** When the manager last changed its set. */
  time: string;
  fieldsType: "FieldsV1";
  fieldsV1: FieldsV1;
}

type WithManagedFields = ObjectMeta & { managedFields?: ManagedFieldsEntry[] };

export function managedFieldsOf(obj: Resource): ManagedFieldsEntry[] {
  return (obj.metadata as WithManagedFields).managedFields ?? [];
}

export function setManagedFields(obj: Resource, entries: ManagedFieldsEntry[]): void {
  const meta = obj.metadata as WithManagedFields;
  if (entries.length) meta.managedFields = entries;
  else delete meta.managedFields;
}
