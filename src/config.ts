/**
 * Global configuration: defaults < config file (YAML/JSON) < environment < flags.
 * Validated once at the boundary with zod, so every component receives a fully
 * typed, defaulted object and never re-checks.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { gcSettingsSchema } from "../scaler/gc.ts";
import { BadRequestError } from "./errors.ts";
import { containerDefaultsSchema } from "./model/container-defaults.ts";
import { scalingDefaultsSchema } from "./model/scaling.ts";
import { sentinelUrl } from "./redis/connect.ts";

const MiB = 1024 * 1024;

const quotaCount = z.coerce.number().int().min(0);

export const configSchema = z.object({
  /** Redis holding every object, routing table and counter. */
  redisUrl: z
    .string()
    .refine((u) => u.startsWith("redis+sentinel://") || URL.canParse(u), "must be a URL")
    .default("redis://127.0.0.1:6379"),
  /**
   * Redis Sentinel: "HOST:PORT,HOST:PORT" of the sentinels and the master
   * group's name. When set, every component connects through them (and
   * follows a failover); the master's user and password are those of
   * `redisUrl` (its host is then unused), the sentinels' are
   * `redisSentinelUsername` / `redisSentinelPassword`.
   */
  redisSentinels: z.string().min(1).optional(),
  redisMaster: z.string().min(1).optional(),
  redisSentinelUsername: z.string().min(1).optional(),
  redisSentinelPassword: z.string().min(1).optional(),
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
      /** `?watch=true` streams: open at once (overall, per token), longest, token re-check period, bytes queued for a slow client. */
      watch: z
        .object({
          maxOpen: z.coerce.number().int().min(0).default(256),
          maxPerToken: z.coerce.number().int().min(0).default(16),
          maxTimeoutSeconds: z.coerce.number().int().min(1).max(86_400).default(600),
          reauthMs: z.coerce.number().int().min(0).default(5_000),
          maxQueuedBytes: z.coerce
            .number()
            .int()
            .min(1024)
            .default(4 * MiB),
        })
        .prefault({}),
    })
    .prefault({}),
  /**
   * The gateway (`skiff gateway`, and the one in `skiff up`). Fields left out
   * take the gateway's own defaults (gateway/options.ts), which also checks
   * their ranges.
   */
  gateway: z
    .object({
      host: z.string().min(1).default("127.0.0.1"),
      port: z.coerce.number().int().min(0).max(65535).default(8080),
      /** /metrics, /healthz, /readyz: never on the user-facing port. */
      adminHost: z.string().min(1).default("127.0.0.1"),
      adminPort: z.coerce.number().int().min(0).max(65535).default(8081),
      queueDepth: z.coerce.number().int().optional(),
      publishPeriodMs: z.coerce.number().int().optional(),
      counterTtlMs: z.coerce.number().int().optional(),
      resyncIntervalMs: z.coerce.number().int().optional(),
      agentCheckIntervalMs: z.coerce.number().int().optional(),
      slotLeaseMs: z.coerce.number().int().optional(),
      activationTtlMs: z.coerce.number().int().optional(),
      trustForwardedHeaders: z.boolean().optional(),
      headersTimeoutMs: z.coerce.number().int().optional(),
      keepAliveTimeoutMs: z.coerce.number().int().optional(),
      maxConnections: z.coerce.number().int().optional(),
      maxHeaderBytes: z.coerce.number().int().optional(),
      maxBodyBytes: z.coerce.number().int().optional(),
      maxQueued: z.coerce.number().int().optional(),
    })
    .prefault({}),
  /**
   * The agent `skiff up` runs (`skiff agent` takes flags). Fields left out take
   * the agent's own defaults (agent/options.ts).
   */
  agent: z
    .object({
      /** Stable agent id (default: derived from hostname and data address). */
      id: z.string().min(1).optional(),
      /** /healthz, /readyz, /metrics. */
      host: z.string().min(1).default("127.0.0.1"),
      port: z.coerce.number().int().min(0).max(65535).default(8091),
      /** Data address: instances listen here and gateways connect here. */
      address: z.string().min(1).default("127.0.0.1"),
      /** false: isolates only, never ask Docker. */
      containers: z.boolean().default(true),
      dockerSocket: z.string().min(1).optional(),
      isolateProcesses: z.coerce.number().int().optional(),
      /** Each namespace's workerd sandbox (agent/isolate/options.ts): memoryMb, cpuMillis, pids, uidMin, uidMax, mode. */
      isolateSandbox: z
        .object({
          mode: z.enum(["auto", "required", "off"]).optional(),
          memoryMb: z.coerce.number().int().optional(),
          cpuMillis: z.coerce.number().int().optional(),
          pids: z.coerce.number().int().optional(),
          uidMin: z.coerce.number().int().optional(),
          uidMax: z.coerce.number().int().optional(),
        })
        .optional(),
      /** V8 heap limit per isolate, MB (default 128). */
      isolateMaxHeapMb: z.coerce.number().int().optional(),
      heartbeatIntervalMs: z.coerce.number().int().optional(),
      heartbeatTtlMs: z.coerce.number().int().optional(),
      resyncIntervalMs: z.coerce.number().int().optional(),
      drainDelayMs: z.coerce.number().int().optional(),
      startupTimeoutMs: z.coerce.number().int().optional(),
      /** Firewall the containers' bridge (needs root): `{ blockCidrs: ["10.0.0.0/24"] }`. */
      containerFirewall: z.object({ blockCidrs: z.array(z.string()) }).optional(),
    })
    .prefault({}),
  /**
   * Global autoscaler settings (Knative's config-autoscaler): stableWindow,
   * scaleToZeroGracePeriod, tickInterval, targetConcurrency, ... Durations as
   * Go durations ("60s") or milliseconds. Per-revision annotations override
   * the per-revision ones.
   */
  autoscaler: scalingDefaultsSchema.prefault({}),
  /** The scaler process (`skiff scaler`): admin listener, leader lease, resync and GC. */
  scaler: z
    .object({
      host: z.string().min(1).default("127.0.0.1"),
      port: z.coerce.number().int().min(0).max(65535).default(8092),
      /** Leader lease; a standby takes over within about this long. */
      leaseMs: z.coerce.number().int().min(300).max(600_000).default(3_000),
      /** After a leader change or Redis reconnect, agents are presumed alive this long (default: the agents' heartbeat TTL, at least 5 s). */
      agentGraceMs: z.coerce.number().int().min(0).max(600_000).optional(),
      /** How often gateway counters are read (default 1 s, or the tick interval when shorter). */
      scrapeIntervalMs: z.coerce.number().int().min(100).max(1_000).optional(),
      /** Full re-read of objects, agents and routing tables. */
      resyncIntervalMs: z.coerce.number().int().min(200).default(10_000),
      /** Revision garbage collection period. */
      gcIntervalMs: z.coerce.number().int().min(1_000).default(60_000),
      /** Knative's config-gc: retainSinceCreateTime, retainSinceLastActiveTime, min/maxNonActiveRevisions. */
      gc: gcSettingsSchema.prefault({}),
    })
    .prefault({}),
  limits: z
    .object({
      /** Largest worker source (all modules together). */
      maxWorkerSourceBytes: z.coerce
        .number()
        .int()
        .positive()
        .default(1 * MiB),
      /**
       * Knative's config-defaults revision-cpu-limit / revision-memory-limit:
       * the limits written into a container template that sets none (null: none).
       */
      ...containerDefaultsSchema.shape,
    })
    .prefault({}),
  /**
   * Per-namespace quotas enforced by the deploy API (403 beyond): the defaults
   * for every namespace, and overrides under `namespaces.{name}`.
   */
  quotas: z
    .object({
      services: quotaCount.default(100),
      revisions: quotaCount.default(2000),
      artifactBytes: quotaCount.default(256 * MiB),
      namespaces: z
        .record(
          z.string(),
          z
            .object({
              services: quotaCount.optional(),
              revisions: quotaCount.optional(),
              artifactBytes: quotaCount.optional(),
            })
            .strict(),
        )
        .default({}),
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

/** "stableWindow" -> "STABLE_WINDOW". */
const envName = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

/** An env value as the autoscaler schema takes it: numbers and booleans typed, durations as text. */
function envValue(text: string): unknown {
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(text.trim())) return Number(text);
  if (text === "true" || text === "false") return text === "true";
  return text;
}

/** Every autoscaler setting from SKIFF_AUTOSCALER_{KEY} (e.g. SKIFF_AUTOSCALER_STABLE_WINDOW=6s). */
function autoscalerFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(scalingDefaultsSchema.shape)) {
    const text = env[`SKIFF_AUTOSCALER_${envName(key)}`];
    if (text) out[key] = envValue(text);
  }
  return out;
}

/** Settings read from SKIFF_* environment variables (and REDIS_URL); empty means unset. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const v = (name: string) => env[name] || undefined;
  return mergeConfig({
    autoscaler: autoscalerFromEnv(env),
    scaler: { host: v("SKIFF_SCALER_HOST"), port: v("SKIFF_SCALER_PORT") },
    redisUrl: v("REDIS_URL"),
    redisSentinels: v("SKIFF_REDIS_SENTINELS"),
    redisMaster: v("SKIFF_REDIS_MASTER"),
    redisSentinelUsername: v("SKIFF_REDIS_SENTINEL_USERNAME"),
    redisSentinelPassword: v("SKIFF_REDIS_SENTINEL_PASSWORD"),
    redisPrefix: v("SKIFF_REDIS_PREFIX"),
    domain: v("SKIFF_DOMAIN"),
    api: { token: v("SKIFF_TOKEN"), port: v("SKIFF_API_PORT"), host: v("SKIFF_API_HOST") },
    gateway: {
      port: v("SKIFF_GATEWAY_PORT"),
      host: v("SKIFF_GATEWAY_HOST"),
      adminPort: v("SKIFF_GATEWAY_ADMIN_PORT"),
      adminHost: v("SKIFF_GATEWAY_ADMIN_HOST"),
    },
    agent: { port: v("SKIFF_AGENT_PORT"), host: v("SKIFF_AGENT_HOST") },
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

/** With sentinels configured, `redisUrl` becomes the redis+sentinel:// URL every component uses. */
function withSentinels(config: SkiffConfig): SkiffConfig {
  const { redisSentinels, redisMaster } = config;
  if (!redisSentinels && !redisMaster) return config;
  if (!redisSentinels || !redisMaster) {
    throw new BadRequestError(
      "invalid configuration: redisSentinels (--redis-sentinels, SKIFF_REDIS_SENTINELS) and redisMaster (--redis-master, SKIFF_REDIS_MASTER) go together: give both",
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
    throw new BadRequestError(`invalid configuration: redisSentinels: ${(err as Error).message}`);
  }
}

export function parseConfig(input: unknown): SkiffConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new BadRequestError(`invalid configuration:\n${lines.join("\n")}`);
  }
  return withSentinels(result.data);
}
