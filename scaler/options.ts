/**
 * Options of the running scaler (`skiff scaler`): the configuration's
 * `scaler` section (src/config/scaler.ts, where its defaults and ranges
 * live) and the global autoscaler settings (Knative's config-autoscaler, the
 * model's scalingDefaultsSchema), plus what only code passes in. Validated
 * once at the boundary; inside, they are trusted.
 */
import type { z } from "zod";
import { AGENT_HEARTBEAT_TTL_MS } from "../src/config/agent.ts";
import { agentGraceFor, scalerSection } from "../src/config/scaler.ts";
import type { SkiffConfig } from "../src/config.ts";
import { scalingDefaultsSchema } from "../src/model/scaling.ts";
import {
  defaultReplicaId,
  domainSchema,
  loggerSchema,
  parseOptions,
  redisPrefixSchema,
  redisUrlSchema,
  registrySchema,
  urlSchemeSchema,
} from "../src/options.ts";
import { placementOptionsSchema } from "./placement.ts";

export const scalerOptionsSchema = scalerSection
  .extend({
    redisUrl: redisUrlSchema,
    redisPrefix: redisPrefixSchema,
    /** Used in the URLs of Route/Service status and in routing hosts. */
    domain: domainSchema,
    urlScheme: urlSchemeSchema,
    /** Global autoscaler settings (stable window, grace period, tick interval, ...). */
    autoscaler: scalingDefaultsSchema.prefault({}),
    /** Requests assumed for instances whose revision names none. */
    placement: placementOptionsSchema.prefault({}),
    logger: loggerSchema.optional(),
    registry: registrySchema.optional(),
  })
  .transform((o) => ({
    ...o,
    agentGraceMs: o.agentGraceMs ?? AGENT_HEARTBEAT_TTL_MS,
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
  return defaultReplicaId("scaler");
}

export function parseScalerOptions(input: ScalerOptionsInput = {}): ScalerOptions {
  const data = parseOptions(scalerOptionsSchema, input, "ScalerOptions");
  return { ...data, id: data.id ?? defaultScalerId() };
}

/** Scaler options from the global configuration (file, env and flags already merged). */
export function scalerOptionsFromConfig(config: SkiffConfig): ScalerOptionsInput {
  const { agentGraceMs, scrapeIntervalMs, id, ...scaler } = config.scaler;
  return {
    ...scaler,
    ...(id === undefined ? {} : { id }),
    ...(scrapeIntervalMs === undefined ? {} : { scrapeIntervalMs }),
    agentGraceMs: agentGraceMs ?? agentGraceFor(config.agent.heartbeatTtlMs),
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    domain: config.domain,
    urlScheme: config.urlScheme,
    autoscaler: config.autoscaler,
  };
}
