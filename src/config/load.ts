/**
 * Loading the configuration: defaults < config file (YAML/JSON) < environment
 * < flags, the same way for every server command. A bad value is reported
 * with its key, its origin (the file, the environment variable or the flag)
 * and how to fix it; unknown keys get a did-you-mean, bounded as the deploy
 * API's are.
 */
import type { z } from "zod";
import { type Cause, causesFromIssues, ValidationError } from "../errors.ts";
import { child, echoKey, Issues, isObject, unknownFieldMessage } from "../model/fields.ts";
import { sentinelUrl } from "../redis/connect.ts";
import {
  envLayer,
  fileLayer,
  type Layer,
  mergeLayers,
  type Origin,
  uniformLayer,
} from "./layers.ts";
import { type ConfigInput, configSchema, SETTINGS, type SkiffConfig } from "./schema.ts";
import { recordValueOf, shapeOf } from "./walk.ts";

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
  /** The path as given (field has long keys cut), to look the origin up by. */
  path = field,
): void {
  if (!isObject(value) || issues.full) return;
  const shape = shapeOf(schema);
  const values = recordValueOf(schema);
  for (const [key, v] of Object.entries(value)) {
    const at = child(field, echoKey(key));
    const rawAt = child(path, key);
    if (values) {
      unknownKeys(v, values, at, issues, origins, rawAt);
      continue;
    }
    if (!shape) return;
    const known = shape[key];
    if (known) {
      unknownKeys(v, known, at, issues, origins, rawAt);
      continue;
    }
    const where = issues.full ? "" : describeOrigin(originOf(rawAt, origins));
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
