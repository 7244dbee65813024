/**
 * The gateway's options: the configuration's `gateway` section
 * (src/config/gateway.ts, where its defaults and ranges live) plus what only
 * code passes in. Validated once at the boundary.
 */
import { z } from "zod";
import { gatewaySection } from "../src/config/gateway.ts";
import {
  defaultReplicaId,
  domainSchema,
  loggerSchema,
  parseOptions,
  redisPrefixSchema,
  redisUrlSchema,
  registrySchema,
} from "../src/options.ts";

export const gatewayOptionsSchema = gatewaySection.safeExtend({
  redisUrl: redisUrlSchema,
  redisPrefix: redisPrefixSchema,
  /**
   * Bind the user port with SO_REUSEPORT, so several gateway processes on one
   * host share it (set by gateway/cluster.ts for its workers).
   */
  reusePort: z.boolean().default(false),
  /** Hosts are `{service}.{namespace}.{domain}`. */
  domain: domainSchema,
  /**
   * The cluster secret sent as `x-skiff-gateway-auth` to isolate endpoints.
   * Read from Redis at start (src/cluster.ts) when absent; set it only in tests.
   */
  clusterSecret: z.string().min(16).optional(),
  /** Requests waiting per namespace (the cluster's quotas.queuedRequests); 429 beyond. */
  namespaceQueued: z
    .object({
      default: z.number().int().min(1).default(10_000),
      namespaces: z.record(z.string(), z.number().int().min(1)).default({}),
    })
    .prefault({}),
  logger: loggerSchema.optional(),
  registry: registrySchema.optional(),
});

export type GatewayOptionsInput = z.input<typeof gatewayOptionsSchema>;
export type GatewayOptions = z.output<typeof gatewayOptionsSchema> & { id: string };

export function defaultGatewayId(): string {
  return defaultReplicaId("gw");
}

export function parseGatewayOptions(input: GatewayOptionsInput): GatewayOptions {
  const data = parseOptions(gatewayOptionsSchema, input, "GatewayOptions");
  return { ...data, id: data.id ?? defaultGatewayId() };
}
