/**
 * The `gateway` section: `skiff gateway` and the gateway of `skiff up`. The
 * gateway's options (gateway/options.ts) are this schema plus what only code
 * passes in, so the defaults and ranges live here once.
 */
import { z } from "zod";
import { setting } from "./meta.ts";
import { hostSchema, msSchema, portSchema, replicaIdSchema } from "./values.ts";

const gw = (flag: string) => ({ gateway: flag });

export const gatewaySection = z
  .object({
    id: setting(replicaIdSchema("gw-host1").optional(), {
      description: "Names this replica's counters in Redis; unique per running gateway.",
      defaultText: "the hostname and a random suffix",
      flags: gw("--id <id>"),
    }),
    host: setting(hostSchema, {
      description: "Listen address of user traffic.",
      flags: { gateway: "--host <host>", up: "--host <host>" },
    }),
    port: setting(portSchema.default(8080), {
      description: "Listen port of user traffic.",
      flags: { gateway: "--port <port>", up: "--gateway-port <port>" },
    }),
    adminHost: setting(hostSchema, {
      description: "Listen address of /metrics, /healthz and /readyz (never the user-facing port).",
      flags: gw("--admin-host <host>"),
    }),
    adminPort: setting(portSchema.default(8081), {
      description: "Listen port of /metrics, /healthz and /readyz.",
      flags: gw("--admin-port <port>"),
    }),
    queueDepth: setting(z.number().int().min(1).max(1_000_000).default(10_000), {
      description:
        "Requests one revision may hold waiting (no instance or no free slot); 503 beyond.",
      flags: gw("--queue-depth <n>"),
    }),
    maxQueued: setting(z.number().int().min(1).max(10_000_000).default(50_000), {
      description: "Requests waiting across all revisions together; 503 beyond.",
      flags: gw("--max-queued <n>"),
    }),
    publishPeriodMs: setting(msSchema(50, 60_000).default(500), {
      description: "How often counters go to Redis for the autoscaler.",
      flags: gw("--publish-period <ms>"),
    }),
    counterTtlMs: setting(msSchema(100, 600_000).default(3_000), {
      description:
        "Counters of a gateway that stopped publishing vanish after this; longer than publishPeriodMs.",
      flags: gw("--counter-ttl <ms>"),
    }),
    resyncIntervalMs: setting(msSchema(100, 3_600_000).default(10_000), {
      description:
        "Level-triggered resync of routing tables, endpoints and agents (a digest per page of 128; only changed pages are re-read).",
      flags: gw("--resync-interval <ms>"),
    }),
    agentCheckIntervalMs: setting(msSchema(50, 60_000).default(1_000), {
      description:
        "How often agent records are checked, so a dead agent's endpoints stop being used.",
      flags: gw("--agent-check-interval <ms>"),
    }),
    slotLeaseMs: setting(msSchema(300, 600_000).default(5_000), {
      description:
        "A containerConcurrency slot a gateway holds expires this long after its last renewal.",
      flags: gw("--slot-lease <ms>"),
    }),
    activationTtlMs: setting(msSchema(100, 600_000).default(10_000), {
      description:
        "One scale-from-zero signal per revision stands this long; still-waiting requests re-signal after.",
      flags: gw("--activation-ttl <ms>"),
    }),
    trustForwardedHeaders: setting(z.boolean().default(false), {
      description:
        "Keep Forwarded / X-Forwarded-* sent by the client and append to them (only behind a trusted proxy); otherwise they are replaced.",
      flags: gw("--trust-forwarded-headers"),
    }),
    headersTimeoutMs: setting(msSchema(100, 600_000).default(10_000), {
      description:
        "A request's complete headers must arrive within this of its first byte, else 408 and the connection closes.",
      flags: gw("--headers-timeout <ms>"),
    }),
    keepAliveTimeoutMs: setting(msSchema(100, 3_600_000).default(65_000), {
      description: "An idle keep-alive client connection is closed after this.",
      flags: gw("--keep-alive-timeout <ms>"),
    }),
    maxConnections: setting(z.number().int().min(1).max(1_000_000).default(10_000), {
      description: "Client connections open at once at most; further ones are closed at once.",
      flags: gw("--max-connections <n>"),
    }),
    maxHeaderBytes: setting(
      z
        .number()
        .int()
        .min(1_024)
        .max(1024 * 1024)
        .default(16 * 1024),
      {
        description: "Largest request head (request line and headers); 431 beyond.",
        flags: gw("--max-header-bytes <n>"),
      },
    ),
    maxBodyBytes: setting(
      z
        .number()
        .int()
        .min(0)
        .max(2 ** 50)
        .default(1024 * 1024 * 1024),
      {
        description:
          "Largest request body proxied; 413 beyond (a declared length at once, a chunked one when it gets there).",
        flags: gw("--max-body-bytes <n>"),
      },
    ),
  })
  .refine((o) => o.counterTtlMs > o.publishPeriodMs, {
    message: "must be longer than publishPeriodMs, or counters would expire between publishes",
    path: ["counterTtlMs"],
  });
