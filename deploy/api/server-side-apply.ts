/**
 * Server-side apply (`kubectl apply --server-side`: PATCH with
 * `application/apply-patch+yaml` and `?fieldManager=`), at the level kubectl
 * and GitOps controllers need:
 *
 * - The applied configuration names the fields its manager wants set; they
 *   are merged into the live object (created when missing). Maps merge key
 *   by key; lists and scalars are atomic values, as Kubernetes treats a
 *   custom resource's lists without list-type markers (Knative's CRDs).
 * - `metadata.managedFields` records, per manager, the fields it applied
 *   (FieldsV1). A field the manager applied before and leaves out now is
 *   removed, unless another manager also owns it.
 * - A field another manager owns whose value would change is a conflict: a
 *   409 Status naming each field and its manager, unless `force=true`, which
 *   moves those fields to this manager. The same value is shared ownership.
 *
 * Pure: the route reads the live object, calls `serverSideApply`, and writes
 * the result with the live resourceVersion as precondition, so a write that
 * raced this one fails with a conflict instead of being overwritten.
 */
import { isDeepStrictEqual } from "node:util";
import type { FieldsV1, ManagedFieldsEntry } from "../../src/control/managed-fields.ts";
import { timestamp } from "../../src/control/objects.ts";
import { BadRequestError, ConflictError, ForbiddenError } from "../../src/errors.ts";

/** Most managers recorded on one object: each adds an entry, so a client could grow it without end. */
export const MAX_MANAGERS = 16;
/** Kubernetes' own bound on a field manager's name. */
const MAX_MANAGER_LENGTH = 128;
/**
 * Most fields one apply may name. Lists are atomic, so a Service names a few
 * dozen (its labels and annotations, the template's); the bound keeps the
 * ownership sets, and the work of comparing them, small.
 */
export const MAX_APPLIED_FIELDS = 1000;
/** Conflicts listed in a 409's message (all are in its causes). */
const MAX_LISTED_CONFLICTS = 20;

type Json = Record<string, unknown>;
type Path = string[];

export interface ApplyInput {
  /** The live object as a user sees it (no status), or undefined when it does not exist yet. */
  live: Json | undefined;
  /** The live object's managedFields. */
  managed: ManagedFieldsEntry[];
  /** The applied configuration (the request body). */
  applied: Json;
  manager: string;
  force: boolean;
  apiVersion: string;
  /** For the conflict's Status details. */
  kind: string;
  name: string;
  /**
   * The object as it would be stored (validated, defaults filled in): owned
   * values are compared in this form, as the live object was stored in it.
   */
  normalize: (obj: Json) => Json;
}

export interface ApplyResult {
  object: Json;
  managedFields: ManagedFieldsEntry[];
}

/** `?fieldManager=` of an apply patch: required, printable, at most 128 characters. */
export function fieldManagerOf(value: string | undefined): string {
  if (value === undefined || value === "") {
    throw new BadRequestError(
      "fieldManager is required for apply requests (application/apply-patch+yaml): add ?fieldManager=NAME (kubectl apply --server-side sends it)",
    );
  }
  if (value.length > MAX_MANAGER_LENGTH || !/^[\x21-\x7e][\x20-\x7e]*$/.test(value)) {
    throw new BadRequestError(
      `fieldManager must be 1 to ${MAX_MANAGER_LENGTH} printable ASCII characters (got ${JSON.stringify(value.slice(0, 40))})`,
    );
  }
  return value;
}

/** `?force=`: only "true" or "false", and only for apply requests. */
export function forceOf(value: string | undefined, isApply: boolean): boolean {
  if (value === undefined) return false;
  if (!isApply) {
    throw new BadRequestError("force is only for apply requests (application/apply-patch+yaml)");
  }
  if (value === "true") return true;
  if (value === "false") return false;
  throw new BadRequestError(`force must be "true" or "false", not "${value.slice(0, 40)}"`);
}

export function serverSideApply(input: ApplyInput): ApplyResult {
  const { live, applied, manager } = input;
  const mine = (e: ManagedFieldsEntry) => e.manager === manager && e.operation === "Apply";
  const appliedPaths = leafPaths(applied);
  if (appliedPaths.length > MAX_APPLIED_FIELDS) {
    throw new BadRequestError(
      `the applied configuration sets ${appliedPaths.length} fields; at most ${MAX_APPLIED_FIELDS} are accepted`,
    );
  }
  const touchesApplied = overlapIndex(appliedPaths);
  const previous = input.managed.find(mine);
  const previousPaths = previous ? pathsOf(previous.fieldsV1) : [];
  const others = input.managed
    .filter((e) => !mine(e))
    .map((e) => ({ entry: e, paths: pathsOf(e.fieldsV1) }));
  const touchesOthers = overlapIndex(others.flatMap((o) => o.paths));

  const object: Json = structuredClone(live ?? {});
  // Fields this manager applied before and no longer does go, unless another owns them.
  for (const path of previousPaths) {
    if (touchesApplied(path)) continue;
    if (touchesOthers(path)) continue;
    removeAt(object, path);
  }
  for (const path of appliedPaths) setAt(object, path, structuredClone(getAt(applied, path)));
  for (const key of ["apiVersion", "kind"]) if (key in applied) object[key] = applied[key];
  const identity = (applied.metadata ?? {}) as Json;
  for (const key of ["name", "namespace", "resourceVersion"]) {
    if (identity[key] !== undefined) setAt(object, ["metadata", key], identity[key]);
  }

  // A field another manager owns, overlapping one applied here, whose value changes.
  const conflicts: { manager: string; path: Path }[] = [];
  const after = others.length ? input.normalize(object) : object;
  for (const o of others) {
    for (const q of o.paths) {
      if (!touchesApplied(q)) continue;
      if (!isDeepStrictEqual(getAt(live ?? {}, q), getAt(after, q)))
        conflicts.push({ manager: o.entry.manager, path: q });
    }
  }
  if (conflicts.length && !input.force) throw conflictError(conflicts, input);

  const now = timestamp();
  const managedFields: ManagedFieldsEntry[] = [];
  for (const o of others) {
    const lost = conflicts.filter((c) => c.manager === o.entry.manager).map((c) => c.path);
    if (!lost.length) {
      managedFields.push(o.entry);
      continue;
    }
    const kept = o.paths.filter((q) => !lost.some((l) => isDeepStrictEqual(l, q)));
    if (kept.length) managedFields.push({ ...o.entry, time: now, fieldsV1: fieldsOf(kept) });
  }
  if (appliedPaths.length) {
    const entry: ManagedFieldsEntry = {
      manager,
      operation: "Apply",
      apiVersion: input.apiVersion,
      time: now,
      fieldsType: "FieldsV1",
      fieldsV1: fieldsOf(appliedPaths),
    };
    const at = input.managed.findIndex(mine);
    // In the order managers first applied (the kept ones stay where they were).
    managedFields.splice(at < 0 ? managedFields.length : at, 0, entry);
  }
  if (new Set(managedFields.map((e) => e.manager)).size > MAX_MANAGERS) {
    throw new ForbiddenError(
      `${input.kind} "${input.name}" already has ${MAX_MANAGERS} field managers; apply with one of theirs (kubectl apply --server-side --field-manager=NAME) or remove one's fields with --force-conflicts`,
      { kind: input.kind, name: input.name },
    );
  }
  return { object, managedFields };
}

/** Kubernetes' message: `Apply failed with N conflicts: conflict with "m": .spec.x`. */
function conflictError(conflicts: { manager: string; path: Path }[], input: ApplyInput) {
  const lines = conflicts
    .slice(0, MAX_LISTED_CONFLICTS)
    .map((c) => `conflict with "${c.manager}": ${dotted(c.path)}`);
  const n = conflicts.length;
  if (n > MAX_LISTED_CONFLICTS) lines.push(`and ${n - MAX_LISTED_CONFLICTS} more`);
  return new ConflictError(
    `Apply failed with ${n} conflict${n === 1 ? "" : "s"}: ${lines.join("\n")}\n(apply with force=true, kubectl apply --server-side --force-conflicts, to take these fields over, or leave them out of the applied configuration)`,
    {
      kind: input.kind,
      name: input.name,
      causes: conflicts.map((c) => ({
        field: dotted(c.path),
        message: `conflict with "${c.manager}"`,
        reason: "FieldManagerConflict",
      })),
    },
  );
}

function dotted(path: Path): string {
  return path.map((k) => `.${k}`).join("");
}

/**
 * The fields an applied configuration sets: labels, annotations and spec,
 * down to each scalar, list or empty map. Identity (apiVersion, kind, name,
 * namespace) is not a field anyone owns, and status is not the user's.
 */
function leafPaths(applied: Json): Path[] {
  const out: Path[] = [];
  const meta = applied.metadata;
  if (isMap(meta)) {
    for (const key of ["labels", "annotations"]) {
      if (meta[key] !== undefined) collect(meta[key], ["metadata", key], out);
    }
  }
  if (applied.spec !== undefined) collect(applied.spec, ["spec"], out);
  return out;
}

function collect(value: unknown, path: Path, out: Path[]): void {
  if (value === null) return; // null: "not set by me"
  if (isMap(value) && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) collect(v, [...path, k], out);
  } else out.push(path);
}

function isMap(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const SEP = "\u0000";

/**
 * "Does a path overlap one of these (equal, inside, or holding one)?" in
 * time linear in the path's length: sets of the paths and of their prefixes.
 */
function overlapIndex(paths: Path[]): (path: Path) => boolean {
  const whole = new Set<string>();
  const prefixes = new Set<string>();
  for (const p of paths) {
    whole.add(p.join(SEP));
    for (let i = 1; i <= p.length; i++) prefixes.add(p.slice(0, i).join(SEP));
  }
  return (path) => {
    // The path holds (or is) one of them...
    if (prefixes.has(path.join(SEP))) return true;
    // ...or lies inside one of them.
    for (let i = 1; i < path.length; i++) if (whole.has(path.slice(0, i).join(SEP))) return true;
    return false;
  };
}

function getAt(obj: unknown, path: Path): unknown {
  let cur = obj;
  for (const key of path) {
    if (!isMap(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = cur[key];
  }
  return cur;
}

function setAt(obj: Json, path: Path, value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (!isMap(cur[key])) cur[key] = {};
    cur = cur[key] as Json;
  }
  cur[path.at(-1)!] = value;
}

/** Remove a field, and the maps it leaves empty. */
function removeAt(obj: Json, path: Path): void {
  const parents: Json[] = [];
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (!isMap(cur[key])) return;
    parents.push(cur);
    cur = cur[key] as Json;
  }
  delete cur[path.at(-1)!];
  for (let i = path.length - 2; i >= 1; i--) {
    const holder = parents[i]!;
    const child = holder[path[i]!] as Json;
    if (Object.keys(child).length) break;
    delete holder[path[i]!];
  }
}

/** FieldsV1: `{"f:spec": {"f:template": {...}}}`, `{}` at each leaf. */
function fieldsOf(paths: Path[]): FieldsV1 {
  const root: FieldsV1 = {};
  for (const path of paths) {
    let cur = root;
    for (const key of path) {
      const k = `f:${key}`;
      if (!Object.hasOwn(cur, k)) cur[k] = {};
      cur = cur[k]!;
    }
  }
  return root;
}

/** The leaf paths of a FieldsV1 set (`.` marks a node owned as well as its children). */
function pathsOf(fields: FieldsV1, prefix: Path = []): Path[] {
  const keys = Object.keys(fields).filter((k) => k.startsWith("f:"));
  if (!keys.length) return prefix.length ? [prefix] : [];
  return keys.flatMap((k) => pathsOf(fields[k]!, [...prefix, k.slice(2)]));
}
