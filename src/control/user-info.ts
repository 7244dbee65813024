/**
 * Knative's user-info annotations (serving.SetUserInfo and
 * apis.ValidateCreatorAndModifier): a create stamps `creator` and
 * `lastModifier` with the caller's identity, an update that changes the spec
 * stamps `lastModifier`. A client cannot forge them: `creator` never changes,
 * and `lastModifier` changes only with the spec (422 otherwise, as Knative's
 * webhook answers). A body that leaves them out keeps the stored values, so
 * a PUT of a hand-written manifest still works.
 */
import { ValidationError } from "../errors.ts";
import { Annotations, type Resource } from "../model/types.ts";

export interface UserStamp {
  /** The caller's identity (e.g. "skiff:admin", a token's name); absent: an internal write. */
  user: string | undefined;
  /** The stored object, when this is an update. */
  existing: Resource | undefined;
  /** Did the write change the spec? */
  specChanged: boolean;
  kind: string;
  name: string;
}

/** The annotations to store: the given ones with creator/lastModifier set as Knative sets them. */
export function stampUser(
  given: Record<string, string> | undefined,
  stamp: UserStamp,
): Record<string, string> | undefined {
  const out = { ...given };
  const stored = stamp.existing?.metadata.annotations ?? {};
  if (!stamp.existing) {
    if (stamp.user !== undefined) {
      out[Annotations.creator] = stamp.user;
      out[Annotations.lastModifier] = stamp.user;
    }
    return Object.keys(out).length ? out : undefined;
  }
  const causes = [];
  for (const key of [Annotations.creator, Annotations.lastModifier]) {
    const mutable = key === Annotations.lastModifier && stamp.specChanged;
    if (out[key] === undefined || mutable) {
      if (stored[key] !== undefined) out[key] = stored[key];
      continue;
    }
    if (out[key] !== stored[key]) {
      causes.push({
        field: `metadata.annotations.${key}`,
        reason: "FieldValueForbidden",
        message: `annotation value is immutable: it is set by the server from the caller's token${stored[key] === undefined ? "" : ` (stored: "${stored[key]}")`}; remove it from the request`,
      });
    }
  }
  if (causes.length) throw ValidationError.of(causes, { kind: stamp.kind, name: stamp.name });
  if (stamp.specChanged && stamp.user !== undefined) out[Annotations.lastModifier] = stamp.user;
  return Object.keys(out).length ? out : undefined;
}

/** The annotations a Service passes to its Configuration and Route (Knative drops kubectl's record). */
export function propagatedAnnotations(
  annotations: Record<string, string> | undefined,
): Record<string, string> | undefined {
  if (!annotations) return undefined;
  const { [Annotations.lastApplied]: _applied, ...rest } = annotations;
  return Object.keys(rest).length ? rest : undefined;
}
