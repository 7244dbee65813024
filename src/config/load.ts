/**
 * Loading the configuration: defaults < config file (YAML/JSON) < environment
 * < flags, the same way for every server command. Each layer remembers where
 * each value came from, so a bad value is reported with its key, its source
 * (the file, the environment variable or the flag) and how to fix it; unknown
 * keys get a did-you-mean, bounded as the deploy API's are.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { type Cause, causesFromIssues, ValidationError } from "../errors.ts";
import { child, echoKey, Issues, isObject, unknownFieldMessage } from "../model/fields.ts";
import { sentinelUrl } from "../redis/connect.ts";
import { type ConfigInput, configSchema, type SkiffConfig } from "./schema.ts";
import { fromText, recordValueOf, type Setting, settingsOf, shapeOf } from "./walk.ts";

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

/** Every setting of the configuration, in declaration order. */
export const SETTINGS: readonly Setting[] = settingsOf(configSchema);

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

/** Settings from the environment as a plain object (without origins). */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  return envLayer(env).values;
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

export interface LoadConfigOptions {
  /** The config file; default SKIFF_CONFIG. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Highest precedence: the command's flags (flagLayer), or options given in code. */
  overrides?: Layer | Record<string, unknown>;
}

const isLayer = (v: unknown): v is Layer =>
  isObject(v) && (v as { origins?: unknown }).origins instanceof Map && isObject(v.values);

/** The layers of a load, merged but not validated (what `skiff up` looks at before choosing its store). */
export function configLayers(options: LoadConfigOptions = {}): Layer {
  const env = options.env ?? process.env;
  const file = options.file ?? (env.SKIFF_CONFIG || undefined);
  const o = options.overrides;
  return mergeLayers([
    file ? fileLayer(file) : undefined,
    envLayer(env),
    o === undefined ? undefined : isLayer(o) ? o : uniformLayer(o, { kind: "given" }),
  ]);
}

export function loadConfig(options: LoadConfigOptions = {}): SkiffConfig {
  const merged = configLayers(options);
  return parseConfig(merged.values, merged.origins);
}

/** Validate a configuration object (defaults filled in), naming each bad value's origin. */
export function parseConfig(
  input: ConfigInput | Record<string, unknown>,
  origins: ReadonlyMap<string, Origin> = new Map(),
): SkiffConfig {
  const issues = new Issues();
  unknownKeys(input, configSchema, "", issues, origins);
  const result = configSchema.safeParse(input);
  if (!result.success) issues.addAll(withOrigins(result.error.issues, origins));
  if (issues.count > 0) throw invalid(issues.causes);
  return withSentinels(result.data!, origins);
}

function invalid(causes: Cause[]): ValidationError {
  const lines = causes.map((c) => `  ${c.field || "(root)"}: ${c.message}`);
  return new ValidationError(`invalid configuration:\n${lines.join("\n")}`, causes, {
    kind: "configuration",
  });
}

/** Keys the schema does not know, each with a did-you-mean (the deploy API's, bounded the same). */
function unknownKeys(
  value: unknown,
  schema: z.ZodType,
  field: string,
  issues: Issues,
  origins: ReadonlyMap<string, Origin>,
): void {
  if (!isObject(value) || issues.full) return;
  const shape = shapeOf(schema);
  const values = recordValueOf(schema);
  for (const [key, v] of Object.entries(value)) {
    const at = child(field, echoKey(key));
    if (values) {
      unknownKeys(v, values, at, issues, origins);
      continue;
    }
    if (!shape) return;
    const known = shape[key];
    if (known) {
      unknownKeys(v, known, at, issues, origins);
      continue;
    }
    const where = describeOrigin(originOf(at, origins));
    issues.add(
      at,
      issues.full
        ? "unknown field"
        : `${unknownFieldMessage(key, Object.keys(shape))}${where ? ` (${where})` : ""}`,
      "FieldValueUnknown",
    );
  }
}

/** The origin of the value at `key`, or of the nearest value above or below it. */
function originOf(key: string, origins: ReadonlyMap<string, Origin>): Origin | undefined {
  for (let k = key; k; k = k.includes(".") ? k.slice(0, k.lastIndexOf(".")) : "") {
    const o = origins.get(k);
    if (o) return o;
  }
  for (const [k, o] of origins) if (k.startsWith(`${key}.`)) return o;
  return undefined;
}

function describeOrigin(origin: Origin | undefined): string {
  if (!origin) return "";
  switch (origin.kind) {
    case "file":
      return `in config file ${origin.path}`;
    case "env":
      return `from environment variable ${origin.name}`;
    case "flag":
      return `from flag ${origin.flag}`;
    case "given":
      return "";
  }
}

/** How to fix a bad value, by where it came from. */
function fixFor(key: string, origin: Origin | undefined): string {
  switch (origin?.kind) {
    case "file":
      return `in config file ${origin.path}: fix ${key} there`;
    case "env":
      return `from environment variable ${origin.name}: fix or unset it`;
    case "flag":
      return `from flag ${origin.flag}: fix the flag`;
    case "given":
      return "";
    default: {
      const s = SETTINGS.find((x) => x.key === key);
      const ways = [`${key} in the config file`, ...(s?.env ? [`env ${s.env}`] : [])];
      const flags = [...new Set(Object.values(s?.meta?.flags ?? {}))].map((f) => f.split(" ")[0]);
      if (flags.length > 0) ways.push(`flag ${flags.join(" / ")}`);
      return `the default; set ${ways.join(", ")}; see docs/configuration.md`;
    }
  }
}

/** zod issues as causes (the one conversion), each saying where its value came from and how to fix it. */
function withOrigins(
  issues: readonly z.core.$ZodIssue[],
  origins: ReadonlyMap<string, Origin>,
): Cause[] {
  return causesFromIssues(issues).map((cause, i) => {
    const key = issues[i]!.path.map(String).join(".");
    const fix = fixFor(key, originOf(key, origins));
    return fix ? { ...cause, message: `${cause.message} (${fix})` } : cause;
  });
}

/** With sentinels configured, `redisUrl` becomes the redis+sentinel:// URL every component uses. */
function withSentinels(config: SkiffConfig, origins: ReadonlyMap<string, Origin>): SkiffConfig {
  const { redisSentinels, redisMaster } = config;
  if (!redisSentinels && !redisMaster) return config;
  const bad = (field: string, message: string) => {
    const fix = fixFor(field, originOf(field, origins));
    return invalid([
      { field, message: fix ? `${message} (${fix})` : message, reason: "FieldValueInvalid" },
    ]);
  };
  if (!redisSentinels || !redisMaster) {
    throw bad(
      redisSentinels ? "redisMaster" : "redisSentinels",
      "redisSentinels (--redis-sentinels, SKIFF_REDIS_SENTINELS) and redisMaster (--redis-master, SKIFF_REDIS_MASTER) go together: give both",
    );
  }
  let username: string | undefined;
  let password: string | undefined;
  if (!config.redisUrl.startsWith("redis+sentinel://")) {
    const u = new URL(config.redisUrl);
    username = decodeURIComponent(u.username) || undefined;
    password = decodeURIComponent(u.password) || undefined;
  }
  try {
    const redisUrl = sentinelUrl({
      sentinels: redisSentinels,
      master: redisMaster,
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(config.redisSentinelUsername ? { sentinelUsername: config.redisSentinelUsername } : {}),
      ...(config.redisSentinelPassword ? { sentinelPassword: config.redisSentinelPassword } : {}),
    });
    return { ...config, redisUrl };
  } catch (err) {
    throw bad("redisSentinels", (err as Error).message);
  }
}

/** The setting at a dotted key. */
export function settingAt(key: string): Setting | undefined {
  return SETTINGS.find((s) => s.key === key);
}
