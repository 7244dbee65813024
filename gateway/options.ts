/** The gateway's options, validated once at the boundary. */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import { ValidationError } from "../src/errors.ts";
import type { Logger } from "../src/logging.ts";
import { Registry } from "../src/metrics.ts";

const port = z.number().int().min(0).max(65535);
const ms = (min: number, max: number) => z.number().int().min(min).max(max);

export const gatewayOptionsSchema = z
  .object({
    redisUrl: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL, e.g. "redis://127.0.0.1:6379"')
      .default("redis://127.0.0.1:6379"),
    redisPrefix: z
      .string()
      .regex(/^\S+$/, 'must be a non-empty prefix without spaces, e.g. "skiff:"')
      .default("skiff:"),
    /** Names this replica's counters in Redis; unique per running gateway. */
    id: z
      .string()
      .regex(
        /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/,
        'use letters, digits, ".", "_" and "-" (e.g. "gw-host1")',
      )
      .optional(),
    /** Where user traffic is served. */
    host: z.string().min(1).default("127.0.0.1"),
    port: port.default(8080),
    /** /metrics, /healthz and /readyz live here, never on the user-facing port. */
    adminHost: z.string().min(1).default("127.0.0.1"),
    adminPort: port.default(8081),
    /** Hosts are `{service}.{namespace}.{domain}`. */
    domain: z
      .string()
      .regex(
        /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
        'a DNS name such as "example.com"',
      )
      .default("localhost"),
    /** Requests one revision may hold waiting (no instance or no free slot); 503 beyond. */
    queueDepth: z.number().int().min(1).max(1_000_000).default(10_000),
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
    logger: z
      .custom<Logger>(
        (v) => typeof v === "object" && v !== null && typeof (v as Logger).warn === "function",
        "must be a pino logger",
      )
      .optional(),
    registry: z
      .custom<Registry>((v) => v instanceof Registry, "must be a prom-client Registry")
      .optional(),
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
  const parsed = gatewayOptionsSchema.safeParse(input);
  if (!parsed.success) {
    throw ValidationError.of(
      parsed.error.issues.map((i) => ({
        field: i.path.join("."),
        message: i.message,
        reason: "FieldValueInvalid",
      })),
      { kind: "GatewayOptions", name: "options" },
    );
  }
  return { ...parsed.data, id: parsed.data.id ?? defaultGatewayId() };
}
