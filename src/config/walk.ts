/**
 * Reading the configuration's zod schema as a tree of settings: which keys
 * exist (the did-you-mean and the reference), their defaults, their
 * environment variable, and how a text value (an environment variable or a
 * flag) becomes the typed value the schema takes.
 */
import type { z } from "zod";
import { metaOf, type SettingMeta } from "./meta.ts";

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  options?: z.ZodType[];
  valueType?: z.ZodType;
  defaultValue?: unknown;
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

export interface Unwrapped {
  /** The schema under defaults, optionals, nullables and transforms. */
  inner: z.ZodType;
  type: string;
  /** The first metadata met on the way in. */
  meta: SettingMeta | undefined;
  /** Present when the schema has a default (a prefault: the object's own defaults). */
  default?: { value: unknown };
  nullable: boolean;
}

export function unwrap(schema: z.ZodType): Unwrapped {
  let s = schema;
  let meta = metaOf(s);
  let dflt: { value: unknown } | undefined;
  let nullable = false;
  for (;;) {
    const d = defOf(s);
    if (d.type === "default" && dflt === undefined) dflt = { value: d.defaultValue };
    if (d.type === "nullable") nullable = true;
    const next =
      d.type === "default" ||
      d.type === "prefault" ||
      d.type === "optional" ||
      d.type === "nullable"
        ? d.innerType
        : d.type === "pipe"
          ? d.in
          : undefined;
    if (!next) break;
    s = next;
    meta ??= metaOf(s);
  }
  return { inner: s, type: defOf(s).type, meta, ...(dflt ? { default: dflt } : {}), nullable };
}

/** The keys of an object schema (after unwrapping), or undefined for anything else. */
export function shapeOf(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const u = unwrap(schema);
  return u.type === "object" ? defOf(u.inner).shape : undefined;
}

/** The schema of a record's values (quotas.namespaces.*), or undefined. */
export function recordValueOf(schema: z.ZodType): z.ZodType | undefined {
  const u = unwrap(schema);
  return u.type === "record" ? defOf(u.inner).valueType : undefined;
}

export interface Setting extends Unwrapped {
  path: string[];
  /** The dotted path, as in the config file: `agent.port`. */
  key: string;
  /** The environment variable, or undefined when the setting has none. */
  env: string | undefined;
}

/** "heartbeatTtlMs" -> "HEARTBEAT_TTL_MS". */
export const envWord = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

/** Every setting (leaf) of an object schema, depth first in declaration order. */
export function settingsOf(schema: z.ZodType, path: string[] = []): Setting[] {
  const shape = shapeOf(schema);
  if (!shape) return [];
  const out: Setting[] = [];
  for (const [key, field] of Object.entries(shape)) {
    const at = [...path, key];
    if (shapeOf(field)) {
      out.push(...settingsOf(field, at));
      continue;
    }
    const u = unwrap(field);
    const env =
      u.meta?.env === false ? undefined : (u.meta?.env ?? `SKIFF_${at.map(envWord).join("_")}`);
    out.push({ ...u, path: at, key: at.join("."), env });
  }
  return out;
}

/** The description of a section (an object-valued key), when it has one. */
export function sectionMeta(schema: z.ZodType): SettingMeta | undefined {
  return unwrap(schema).meta;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A text value (environment or flag) as the setting's schema takes it:
 * numbers and booleans typed, lists comma-separated, maps as KEY=VALUE
 * items. Text that does not fit is passed on as is, so the schema's message
 * says what was expected.
 */
export function fromText(
  text: string | string[],
  setting: Pick<Unwrapped, "inner" | "nullable">,
): unknown {
  const { inner } = setting;
  if (setting.nullable && text === "null") return null;
  const d = defOf(inner);
  const items = (t: string | string[]) =>
    (Array.isArray(t) ? t : t.split(",")).map((s) => s.trim()).filter(Boolean);
  if (d.type === "array") return items(text).map((t) => fromText(t, unwrap(d.element!)));
  if (d.type === "record") {
    const out: Record<string, string> = {};
    for (const item of items(text)) {
      const i = item.indexOf("=");
      if (i <= 0) return item; // the schema says it wants a map
      out[item.slice(0, i)] = item.slice(i + 1);
    }
    return out;
  }
  const t = Array.isArray(text) ? text.join(",") : text;
  const trimmed = t.trim();
  if (d.type === "number") return NUMBER.test(trimmed) ? Number(trimmed) : t;
  if (d.type === "boolean") {
    if (/^(true|1|yes)$/i.test(trimmed)) return true;
    if (/^(false|0|no)$/i.test(trimmed)) return false;
    return t;
  }
  if (d.type === "union") {
    // Durations and GC counts: milliseconds or text ("60s", "disabled").
    const kinds = (d.options ?? []).map((o) => unwrap(o).type);
    if (kinds.includes("number") && NUMBER.test(trimmed)) return Number(trimmed);
    if (kinds.includes("boolean") && /^(true|false)$/.test(trimmed)) return trimmed === "true";
  }
  return t;
}

/** The default as the reference and the flags' help show it, or undefined for none. */
export function defaultText(s: Unwrapped): string | undefined {
  if (s.meta?.defaultText !== undefined) return s.meta.defaultText;
  if (!s.default) return undefined;
  const v = s.default.value;
  if (v === null) return "null";
  if (typeof v === "object" && Object.keys(v as object).length === 0) return undefined;
  return typeof v === "string" ? v : JSON.stringify(v);
}
