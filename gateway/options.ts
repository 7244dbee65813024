/** The gateway's options, validated once at the boundary. */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
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

const port = portSchema;
const ms = (min: number, max: number) => z.number().int().min(min).max(max);

export const gatewayOptionsSchema = z
  .object({
    redisUrl: redisUrlSchema,
    redisPrefix: redisPrefixSchema,
    /** Names this replica's counters in Redis; unique per running gateway. */
    id: replicaIdSchema("gw-host1").optional(),
    /** Where user traffic is served. */
    host: z.string().min(1).default("127.0.0.1"),
    port: port.default(8080),
    /**
     * Bind the user port with SO_REUSEPORT, so several gateway processes on one
     * host share it (set by gateway/cluster.ts for its workers).
     */
    reusePort: z.boolean().default(false),
    /** /metrics, /healthz and /readyz live here, never on the user-facing port. */
    adminHost: z.string().min(1).default("127.0.0.1"),
    adminPort: port.default(8081),
    /** Hosts are `{service}.{namespace}.{domain}`. */
    domain: domainSchema,
    /** Requests one revision may hold waiting (no instance or no free slot); 503 beyond. */
    queueDepth: z.number().int().min(1).max(1_000_000).default(10_000),
    /** Requests the gateway may hold waiting across all revisions together; 503 beyond. */
    maxQueued: z.number().int().min(1).max(10_000_000).default(50_000),
    /** How often counters go to Redis. */
    publishPeriodMs: ms(50, 60_000).default(500),
    /** Counters of a gateway that stopped publishing vanish after this. */
    counterTtlMs: ms(100, 600_000).default(3_000),
    /** Period of the full (level-triggered) re-read of routing tables, endpoints and agents. */
    resyncIntervalMs: ms(100, 3_600_000).default(10_000),
    /** How often agent records are checked, so a dead agent's endpoints stop being used. */
    agentCheckIntervalMs: ms(50, 60_000).default(1_000),
    /** A hard-limit slot a gateway holds expires this long after its last renewal. */
    slotLeaseMs: ms(300, 600_000).default(5_000),
    /** One activation signal per revision stands this long; still-waiting requests re-signal after. */
    activationTtlMs: ms(100, 600_000).default(10_000),
    /**
     * Keep Forwarded / X-Forwarded-* sent by the client and append to them; only
     * when a trusted proxy sits in front. Otherwise they are replaced.
     */
    trustForwardedHeaders: z.boolean().default(false),
    /**
     * Complete request headers must arrive within this time of a request's
     * first byte, or the connection gets 408 and is closed (slow-header clients).
     */
    headersTimeoutMs: ms(100, 600_000).default(10_000),
    /** An idle keep-alive connection is closed after this. */
    keepAliveTimeoutMs: ms(100, 3_600_000).default(65_000),
    /** Client connections open at once at most; further ones are closed at once. */
    maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
    /** Largest request head (request line and headers); 431 beyond. */
    maxHeaderBytes: z
      .number()
      .int()
      .min(1_024)
      .max(1024 * 1024)
      .default(16 * 1024),
    /** Largest request body proxied; 413 beyond (a declared length at once, a chunked one when it gets there). */
    maxBodyBytes: z
      .number()
      .int()
      .min(0)
      .max(2 ** 50)
      .default(1024 * 1024 * 1024),
    /**
     * The cluster secret sent as `x-skiff-gateway-auth` to isolate endpoints.
     * Read from Redis at start (src/cluster.ts) when absent; set it only in tests.
     */
    clusterSecret: z.string().min(16).optional(),
    logger: loggerSchema.optional(),
    registry: registrySchema.optional(),
  })
  .refine((o) => o.counterTtlMs > o.publishPeriodMs, {
    message: "must be longer than publishPeriodMs, or counters would expire between publishes",
    path: ["counterTtlMs"],
  });

export type GatewayOptionsInput = z.input<typeof gatewayOptionsSchema>;
export type GatewayOptions = z.output<typeof gatewayOptionsSchema> & { id: string };

export function defaultGatewayId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .slice(0, 60);
  return `${host || "gw"}-${randomBytes(3).toString("hex")}`;
}

export function parseGatewayOptions(input: GatewayOptionsInput): GatewayOptions {
  const data = parseOptions(gatewayOptionsSchema, input, "GatewayOptions");
  return { ...data, id: data.id ?? defaultGatewayId() };
}
