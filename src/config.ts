/**
 * Global configuration: defaults < config file (YAML/JSON) < environment < flags.
 * Validated once at the boundary with zod, so every component receives a fully
 * typed, defaulted object and never re-checks.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { BadRequestError } from "./errors.ts";

const MiB = 1024 * 1024;

const listen = (port: number) =>
  z
    .object({
      host: z.string().min(1).default("127.0.0.1"),
      port: z.coerce.number().int().min(0).max(65535).default(port),
    })
    .prefault({});

export const configSchema = z.object({
  /** Redis holding every object, routing table and counter. */
  redisUrl: z.string().url().default("redis://127.0.0.1:6379"),
  /** Prefix of every Redis key, so several Skiff installs can share one Redis. */
  redisPrefix: z.string().default("skiff:"),
  /** Hosts are `{service}.{namespace}.{domain}`; `localhost` needs no DNS set-up. */
  domain: z
    .string()
    .regex(
      /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
      "a DNS name such as example.com",
    )
    .default("localhost"),
  /** Scheme used in URLs Skiff reports (status.url). */
  urlScheme: z.enum(["http", "https"]).default("http"),
  api: z
    .object({
      host: z.string().min(1).default("127.0.0.1"),
      port: z.coerce.number().int().min(0).max(65535).default(8090),
      /** Bearer token; when absent the API uses the one stored in Redis, or makes one. */
      token: z.string().min(16, "tokens must be at least 16 characters").optional(),
      /** Largest request body accepted (413 beyond). */
      bodyLimitBytes: z.coerce
        .number()
        .int()
        .positive()
        .default(8 * MiB),
    })
    .prefault({}),
  gateway: listen(8080),
  limits: z
    .object({
      /** Largest worker source (all modules together). */
      maxWorkerSourceBytes: z.coerce
        .number()
        .int()
        .positive()
        .default(1 * MiB),
    })
    .prefault({}),
  log: z.object({ level: z.string().default("info") }).prefault({}),
});

export type SkiffConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

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
      out[key] =
        isPlainObject(prev) && isPlainObject(value) ? mergeConfig(prev, value) : (value as unknown);
    }
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Settings read from SKIFF_* environment variables (and REDIS_URL); empty means unset. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const v = (name: string) => env[name] || undefined;
  return mergeConfig({
    redisUrl: v("REDIS_URL"),
    redisPrefix: v("SKIFF_REDIS_PREFIX"),
    domain: v("SKIFF_DOMAIN"),
    api: { token: v("SKIFF_TOKEN"), port: v("SKIFF_API_PORT"), host: v("SKIFF_API_HOST") },
    gateway: { port: v("SKIFF_GATEWAY_PORT"), host: v("SKIFF_GATEWAY_HOST") },
    log: { level: v("SKIFF_LOG_LEVEL") },
  });
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new BadRequestError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new BadRequestError(
      `config file ${path} is not valid YAML/JSON: ${(err as Error).message}`,
    );
  }
  if (parsed == null) return {};
  if (!isPlainObject(parsed)) throw new BadRequestError(`config file ${path} must hold a mapping`);
  return parsed;
}

export interface LoadConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Highest precedence, typically from command-line flags. */
  overrides?: Record<string, unknown>;
}

export function loadConfig(options: LoadConfigOptions = {}): SkiffConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? env.SKIFF_CONFIG;
  const merged = mergeConfig(
    file ? readConfigFile(file) : {},
    configFromEnv(env),
    options.overrides,
  );
  return parseConfig(merged);
}

export function parseConfig(input: unknown): SkiffConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new BadRequestError(`invalid configuration:\n${lines.join("\n")}`);
  }
  return result.data;
}
