/**
 * Options of the running scaler (`skiff scaler`), validated once at the
 * boundary with zod; inside, they are trusted. The autoscaler's global
 * defaults (Knative's config-autoscaler) come from the model's
 * scalingDefaultsSchema, so the config file, the CLI flags and `skiff up`
 * share one definition.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import type { SkiffConfig } from "../src/config.ts";
import { scalingDefaultsSchema } from "../src/model/scaling.ts";
import {
  domainSchema,
  loggerSchema,
  parseOptions,
  portSchema,
  redisPrefixSchema,
  redisUrlSchema,
  registrySchema,
  replicaIdSchema,
} from "../src/options.ts";
import { gcSettingsSchema } from "./gc.ts";
import { placementOptionsSchema } from "./placement.ts";

const port = portSchema;
const ms = (min: number, max: number) => z.number().int().min(min).max(max);

export const scalerOptionsSchema = z
  .object({
    redisUrl: redisUrlSchema,
    redisPrefix: redisPrefixSchema,
    /** Names this replica in the leader lease and logs; unique per running scaler. */
    id: replicaIdSchema("scaler-host1").optional(),
    /** /healthz, /readyz and /metrics. */
    host: z.string().min(1).default("127.0.0.1"),
    port: port.default(8092),
    /** Used in the URLs of Route/Service status and in routing hosts. */
    domain: domainSchema,
    urlScheme: z.enum(["http", "https"]).default("http"),
    /** Global autoscaler settings (stable window, grace period, tick interval, ...). */
    autoscaler: scalingDefaultsSchema.prefault({}),
    /** The leader lease: a standby takes over within about this long of the leader dying. */
    leaseMs: ms(300, 600_000).default(3_000),
    /**
     * How often the gateways' counters are read into 1-second buckets
     * (default: every second, or every tick when ticks are faster). Knative
     * scrapes every second; faster gives no finer buckets.
     */
    scrapeIntervalMs: ms(100, 1_000).optional(),
    /**
     * After a leader change or a Redis reconnect, an agent without a heartbeat
     * record is presumed alive (not back yet) this long before it is declared
     * dead and its instances placed elsewhere: at least the agents' heartbeat
     * TTL (theirs defaults to 5 s).
     */
    agentGraceMs: ms(0, 600_000).default(5_000),
    /** Level-triggered re-read of every object, agent and routing table. */
    resyncIntervalMs: ms(200, 3_600_000).default(10_000),
    /** Revision garbage collection period (Knative's defaults in `gc`). */
    gcIntervalMs: ms(1_000, 86_400_000).default(60_000),
    gc: gcSettingsSchema.prefault({}),
    /** Requests assumed for instances whose revision names none. */
    placement: placementOptionsSchema.prefault({}),
    /** A revision started from zero that shows no ready instance this long goes back to zero. */
    activationTimeoutMs: ms(1_000, 3_600_000).default(610_000),
    logger: loggerSchema.optional(),
    registry: registrySchema.optional(),
  })
  .transform((o) => ({
    ...o,
    scrapeIntervalMs:
      o.scrapeIntervalMs ?? Math.max(100, Math.min(1_000, o.autoscaler.tickInterval)),
  }))
  .refine((o) => o.scrapeIntervalMs <= Math.max(100, o.autoscaler.tickInterval), {
    message: "must not be longer than autoscaler.tickInterval",
    path: ["scrapeIntervalMs"],
  });

export type ScalerOptionsInput = z.input<typeof scalerOptionsSchema>;
export type ScalerOptions = z.output<typeof scalerOptionsSchema> & { id: string };

export function defaultScalerId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .slice(0, 60);
  return `${host || "scaler"}-${randomBytes(3).toString("hex")}`;
}

export function parseScalerOptions(input: ScalerOptionsInput = {}): ScalerOptions {
  const data = parseOptions(scalerOptionsSchema, input, "ScalerOptions");
  return { ...data, id: data.id ?? defaultScalerId() };
}

/** Scaler options from the global configuration (file, env and flags already merged). */
export function scalerOptionsFromConfig(config: SkiffConfig): ScalerOptionsInput {
  return {
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    domain: config.domain,
    urlScheme: config.urlScheme,
    host: config.scaler.host,
    port: config.scaler.port,
    autoscaler: config.autoscaler,
    leaseMs: config.scaler.leaseMs,
    agentGraceMs: config.scaler.agentGraceMs ?? Math.max(5_000, config.agent.heartbeatTtlMs ?? 0),
    ...(config.scaler.scrapeIntervalMs === undefined
      ? {}
      : { scrapeIntervalMs: config.scaler.scrapeIntervalMs }),
    resyncIntervalMs: config.scaler.resyncIntervalMs,
    gcIntervalMs: config.scaler.gcIntervalMs,
    gc: config.scaler.gc,
  };
}
