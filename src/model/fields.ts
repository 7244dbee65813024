/**
 * A small walker for untrusted, already-decoded JSON/YAML. It reads one field
 * at a time, records every problem with its exact path (so a user sees all of
 * them at once), and rejects unknown fields with a did-you-mean. We use this
 * instead of a schema library because the messages are the product here.
 */
import type { Cause } from "../errors.ts";

export type JsonObject = Record<string, unknown>;

/** Kubernetes StatusCause reasons used by the model. */
export type CauseReason =
  | "FieldValueRequired"
  | "FieldValueInvalid"
  | "FieldValueNotSupported"
  | "FieldValueDuplicate"
  | "FieldValueTooLong"
  | "FieldValueTooMany"
  | "FieldValueForbidden"
  | "FieldValueTypeInvalid"
  | "FieldValueUnknown";

/**
 * At most this many causes are kept per validation pass: a hostile body with
 * a million unknown keys gets a short answer, not a million-line one.
 */
export const MAX_CAUSES = 50;

/** Collects the causes of one validation pass (the first MAX_CAUSES, then a count). */
export class Issues {
  readonly causes: Cause[] = [];
  #dropped = 0;

  add(field: string, message: string, reason: CauseReason = "FieldValueInvalid"): void {
    if (this.causes.length < MAX_CAUSES) {
      this.causes.push({ field, message, reason });
      return;
    }
    this.#dropped += 1;
    const summary = {
      field: "(root)",
      message: `and ${this.#dropped} more problem${this.#dropped === 1 ? "" : "s"} not listed; fix the ones above first`,
      reason: "FieldValueTooMany",
    };
    if (this.#dropped === 1) this.causes.push(summary);
    else this.causes[MAX_CAUSES] = summary;
  }

  addAll(causes: readonly Cause[]): void {
    for (const c of causes)
      this.add(c.field, c.message, (c.reason ?? "FieldValueInvalid") as CauseReason);
  }

  get count(): number {
    return this.causes.length + this.#dropped;
  }

  /** True once further causes would only be counted (callers may skip composing them). */
  get full(): boolean {
    return this.causes.length >= MAX_CAUSES;
  }
}

/** `a.b` (or `b` at the root). */
export function child(prefix: string, key: string): string {
  return prefix === "" ? key : `${prefix}.${key}`;
}

/** `a[3]` for list items, `a[some/key]` for map entries. */
export function item(prefix: string, index: number | string): string {
  return `${prefix}[${typeof index === "string" ? echoKey(index) : index}]`;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** How a wrong value is shown in a message: its type and, when short, itself. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  switch (typeof value) {
    case "string":
      return value.length <= 40 ? `the string "${value}"` : "a string";
    case "number":
      return `the number ${value}`;
    case "boolean":
      return `the boolean ${value}`;
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}

/**
 * Longest word we look for a did-you-mean for. Field names are short; a longer
 * key is not a typo, and bounding it keeps the suggestion O(64 x 64) per key
 * whatever a client sends.
 */
export const MAX_SUGGEST_LENGTH = 64;

/** Longest key echoed back in a cause's field path. */
const MAX_ECHOED_KEY = 64;

/**
 * Edit distance counting a swap of neighbours as one edit (optimal string
 * alignment), over three rolling rows. Callers bound both lengths.
 */
function distance(a: string, b: string): number {
  let prev2: number[] = [];
  let prev: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, prev2[j - 2]! + 1);
      }
      row[j] = v;
    }
    prev2 = prev;
    prev = row;
  }
  return prev[b.length]!;
}

/** The closest candidate when it is plausibly a typo of `word` (words over 64 characters never are). */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  if (word.length > MAX_SUGGEST_LENGTH) return undefined;
  const squash = (s: string) => s.toLowerCase().replace(/[-_.]/g, "");
  const w = squash(word);
  const allowed = w.length <= 3 ? 1 : w.length <= 6 ? 2 : 3;
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const sc = squash(c);
    // Lengths further apart than the allowance can never be within it.
    if (sc.length > MAX_SUGGEST_LENGTH || Math.abs(sc.length - w.length) > allowed) continue;
    const score = distance(w, sc);
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return bestScore <= allowed ? best : undefined;
}

export function unknownFieldMessage(key: string, known: readonly string[]): string {
  const close = suggest(key, known);
  if (close !== undefined) return `unknown field; did you mean "${close}"?`;
  return known.length > 0
    ? `unknown field; the fields allowed here are: ${known.join(", ")}`
    : "unknown field; nothing may be set here";
}

/** A client's key as shown in a field path: long ones cut, so an error never echoes megabytes. */
export function echoKey(key: string): string {
  return key.length <= MAX_ECHOED_KEY
    ? key
    : `${key.slice(0, MAX_ECHOED_KEY)}...(${key.length} characters)`;
}

/** Which keys an object may carry. */
export interface Shape {
  known: readonly string[];
  /** Kubernetes/Knative fields Skiff recognises but does not implement: key -> hint. */
  unsupported?: Readonly<Record<string, string>>;
  /** Accepted and dropped (read-only fields echoed back by clients). */
  ignored?: readonly string[];
}

interface ReadOptions {
  required?: boolean;
}

function absent(value: unknown): boolean {
  // YAML `key:` with nothing after it decodes to null; treat it as not set, like Kubernetes.
  return value === undefined || value === null;
}

function required(field: string, issues: Issues, opts: ReadOptions | undefined): undefined {
  if (opts?.required) issues.add(field, "required", "FieldValueRequired");
  return undefined;
}

/** An object whose keys are checked against `shape`; unknown keys are reported, not returned. */
export function readObject(
  value: unknown,
  field: string,
  issues: Issues,
  shape: Shape,
  opts?: ReadOptions,
): JsonObject | undefined {
  if (absent(value)) return required(field, issues, opts);
  if (!isObject(value)) {
    issues.add(
      field || "(root)",
      `must be an object (got ${describe(value)})`,
      "FieldValueTypeInvalid",
    );
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (shape.known.includes(key) || shape.ignored?.includes(key)) continue;
    const hint = Object.hasOwn(shape.unsupported ?? {}, key) ? shape.unsupported?.[key] : undefined;
    if (hint !== undefined) {
      issues.add(
        child(field, key),
        `not supported by Skiff${hint ? `; ${hint}` : ""}`,
        "FieldValueForbidden",
      );
    } else {
      issues.add(
        child(field, echoKey(key)),
        issues.full ? "unknown field" : unknownFieldMessage(key, shape.known),
        "FieldValueUnknown",
      );
    }
  }
  return value;
}

export function readString(
  value: unknown,
  field: string,
  issues: Issues,
  opts?: ReadOptions & { nonEmpty?: boolean; maxLength?: number },
): string | undefined {
  if (absent(value)) return required(field, issues, opts);
  if (typeof value !== "string") {
    const quoted = typeof value === "number" || typeof value === "boolean";
    issues.add(
      field,
      `must be a string (got ${describe(value)})${quoted ? `; quote it: "${String(value)}"` : ""}`,
      "FieldValueTypeInvalid",
    );
    return undefined;
  }
  if (opts?.nonEmpty && value.trim() === "") {
    issues.add(field, "must not be empty", "FieldValueRequired");
    return undefined;
  }
  if (opts?.maxLength !== undefined && value.length > opts.maxLength) {
    issues.add(
      field,
      `must be no more than ${opts.maxLength} characters (got ${value.length})`,
      "FieldValueTooLong",
    );
    return undefined;
  }
  return value;
}

/** An integer in [min, max]. Strings are not coerced: YAML `"10"` is a mistake worth naming. */
export function readInt(
  value: unknown,
  field: string,
  issues: Issues,
  opts: ReadOptions & { min: number; max: number },
): number | undefined {
  if (absent(value)) return required(field, issues, opts);
  if (typeof value !== "number" || !Number.isInteger(value)) {
    const hint =
      typeof value === "string" && /^-?\d+$/.test(value.trim())
        ? `; write it without quotes: ${value.trim()}`
        : "";
    issues.add(
      field,
      `must be an integer (got ${describe(value)})${hint}`,
      "FieldValueTypeInvalid",
    );
    return undefined;
  }
  if (value < opts.min || value > opts.max) {
    issues.add(field, `must be between ${opts.min} and ${opts.max} (got ${value})`);
    return undefined;
  }
  return value;
}

export function readBool(
  value: unknown,
  field: string,
  issues: Issues,
  opts?: ReadOptions,
): boolean | undefined {
  if (absent(value)) return required(field, issues, opts);
  if (typeof value !== "boolean") {
    issues.add(field, `must be true or false (got ${describe(value)})`, "FieldValueTypeInvalid");
    return undefined;
  }
  return value;
}

export function readArray(
  value: unknown,
  field: string,
  issues: Issues,
  opts?: ReadOptions & { maxItems?: number },
): unknown[] | undefined {
  if (absent(value)) return required(field, issues, opts);
  if (!Array.isArray(value)) {
    issues.add(field, `must be a list (got ${describe(value)})`, "FieldValueTypeInvalid");
    return undefined;
  }
  if (opts?.maxItems !== undefined && value.length > opts.maxItems) {
    issues.add(
      field,
      `must have at most ${opts.maxItems} items (got ${value.length})`,
      "FieldValueTooMany",
    );
    return undefined;
  }
  return value;
}

/** A list of strings (command, args, flags). Reports each bad item. */
export function readStringList(
  value: unknown,
  field: string,
  issues: Issues,
  opts?: ReadOptions & { maxItems?: number },
): string[] | undefined {
  const list = readArray(value, field, issues, opts);
  if (list === undefined) return undefined;
  const before = issues.count;
  const out = list.map((v, i) => readString(v, item(field, i), issues, { required: true }) ?? "");
  return issues.count === before ? out : undefined;
}

/** A map of string to string (labels, annotations). Entry paths are `field[key]`. */
export function readStringMap(
  value: unknown,
  field: string,
  issues: Issues,
): Record<string, string> | undefined {
  if (absent(value)) return undefined;
  if (!isObject(value)) {
    issues.add(
      field,
      `must be a map of string keys to string values (got ${describe(value)})`,
      "FieldValueTypeInvalid",
    );
    return undefined;
  }
  const before = issues.count;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === null) {
      issues.add(
        item(field, k),
        'must be a string (got null); write "" for an empty value',
        "FieldValueTypeInvalid",
      );
      continue;
    }
    const s = readString(v, item(field, k), issues, { required: true });
    if (s !== undefined) out[k] = s;
  }
  return issues.count === before ? out : undefined;
}
