/**
 * The sources of settings as layers in the configuration's shape: the config
 * file (YAML/JSON), the environment (each setting's variable), the flags
 * (src/config/flags.ts) or options given in code. Each layer remembers where
 * each of its values came from, so that a bad value can be traced back.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ValidationError } from "../errors.ts";
import { isObject } from "../model/fields.ts";
import { SETTINGS } from "./schema.ts";
import { fromText } from "./walk.ts";

/** Where a value came from. */
export type Origin =
  | { kind: "file"; path: string }
  | { kind: "env"; name: string }
  | { kind: "flag"; flag: string }
  | { kind: "given" };

/** One source of settings, in the configuration's shape, with the origin of each value it sets. */
export interface Layer {
  values: Record<string, unknown>;
  /** Dotted key of each value set -> its origin. */
  origins: Map<string, Origin>;
}

/** Deep-merge plain objects; later sources win, undefined never overrides. */
export function mergeConfig(
  ...sources: (Record<string, unknown> | undefined)[]
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const src of sources) {
    if (!src) continue;
    for (const [key, value] of Object.entries(src)) {
      if (value === undefined) continue;
      const prev = out[key];
      out[key] = isObject(prev) && isObject(value) ? mergeConfig(prev, value) : value;
    }
  }
  return out;
}

/** Set `value` at `path`, creating the objects on the way. */
export function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown) {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (!isObject(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

/** A layer whose every value has one origin (a file, or options given in code). */
export function uniformLayer(values: Record<string, unknown>, origin: Origin): Layer {
  const origins = new Map<string, Origin>();
  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [key, value] of Object.entries(node)) {
      if (value === undefined) continue;
      const at = prefix ? `${prefix}.${key}` : key;
      if (isObject(value) && Object.keys(value).length > 0) walk(value, at);
      else origins.set(at, origin);
    }
  };
  walk(values, "");
  return { values, origins };
}

export function readConfigFile(path: string): Record<string, unknown> {
  const fail = (problem: string) =>
    new ValidationError(`config file ${path} ${problem}`, [{ field: "", message: problem }], {
      kind: "configuration",
    });
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw fail(`cannot be read: ${(err as Error).message}; check --config / SKIFF_CONFIG`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw fail(`is not valid YAML/JSON: ${(err as Error).message}`);
  }
  if (parsed == null) return {};
  if (!isObject(parsed)) throw fail("must hold a mapping of keys (see docs/configuration.md)");
  return parsed;
}

export function fileLayer(path: string): Layer {
  const values = readConfigFile(path);
  // Numbers written as text ("8090") are taken, as z.coerce did before the schema was shared.
  for (const s of SETTINGS) {
    if (s.type !== "number") continue;
    const parent = s.path
      .slice(0, -1)
      .reduce<unknown>((node, key) => (isObject(node) ? node[key] : undefined), values);
    const key = s.path[s.path.length - 1]!;
    if (isObject(parent) && typeof parent[key] === "string") parent[key] = fromText(parent[key], s);
  }
  return uniformLayer(values, { kind: "file", path });
}

/** Settings from the environment (each setting's variable: SKIFF_{SECTION}_{KEY}, REDIS_URL, SKIFF_TOKEN); empty means unset. */
export function envLayer(env: NodeJS.ProcessEnv = process.env): Layer {
  const layer: Layer = { values: {}, origins: new Map() };
  for (const s of SETTINGS) {
    const text = s.env ? env[s.env] : undefined;
    if (!text || !s.env) continue;
    setPath(layer.values, s.path, fromText(text, s));
    layer.origins.set(s.key, { kind: "env", name: s.env });
  }
  return layer;
}

/** Later layers win; a value's origin is that of the layer that set it last. */
export function mergeLayers(layers: readonly (Layer | undefined)[]): Layer {
  const present = layers.filter((l): l is Layer => l !== undefined);
  const origins = new Map<string, Origin>();
  for (const layer of present) {
    for (const [key, origin] of layer.origins) {
      // A value set here replaces a plain value an earlier layer set above it
      // (objects merge, so what they set below stays theirs).
      for (let k = key; k.includes("."); ) {
        k = k.slice(0, k.lastIndexOf("."));
        origins.delete(k);
      }
      origins.set(key, origin);
    }
  }
  return { values: mergeConfig(...present.map((l) => l.values)), origins };
}
