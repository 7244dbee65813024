import { z } from "zod";
import { ID_PATTERN } from "../src/fleet/schemas.ts";
import {
  domainSchema,
  loggerSchema,
  parseOptions,
  portSchema,
  redisPrefixSchema,
  redisUrlSchema,
  registrySchema,
} from "../src/options.ts";
import type { WorkerdPoolOptionsInput } from "./isolate/index.ts";

const port = portSchema;
const ms = (min: number) => z.number().int().min(min);

export const AgentOptionsSchema = z
  .object({
    redisUrl: redisUrlSchema,
    redisPrefix: redisPrefixSchema,
    /** Stable agent id; derived from hostname + data address when absent. */
    id: z
      .string()
      .regex(
        ID_PATTERN,
        "use 1-101 letters, digits, '_', '.', '-', starting with one of the first two",
      )
      .optional(),
    /** Data address: instances listen here and gateways connect here. */
    address: z.ipv4().default("127.0.0.1"),
    /** The agent's own HTTP server (/healthz, /readyz, /metrics). */
    host: z.string().min(1).default("127.0.0.1"),
    port: port.default(8091),
    /** Advertised capacity; each defaults to what the host has. */
    capacity: z
      .object({
        cpuMillis: z.number().int().positive().optional(),
        memoryBytes: z.number().int().positive().optional(),
        maxInstances: z.number().int().positive().optional(),
      })
      .prefault({}),
    labels: z.record(z.string(), z.string()).default({}),
    heartbeatIntervalMs: ms(10).default(1_000),
    /** A host silent for this long is dead (its record expires). */
    heartbeatTtlMs: ms(50).default(5_000),
    /** Level-triggered reconcile period (desired set re-read, endpoints and reports checked). */
    resyncIntervalMs: ms(10).default(5_000),
    /** false: never offer containers (no Docker engine needed). */
    containers: z.boolean().default(true),
    dockerSocket: z.string().min(1).default("/var/run/docker.sock"),
    /** Serving ports of containers are allocated from here. */
    portRange: z
      .object({ min: port.min(1), max: port.min(1) })
      .refine((r) => r.min <= r.max, "min must not exceed max")
      .optional(),
    /** Pull missing images from here; without it only local images run. */
    imageRegistry: z
      .object({
        address: z.string().min(1),
        username: z.string().optional(),
        password: z.string().optional(),
        insecure: z.boolean().optional(),
      })
      .optional(),
    /**
     * Install host firewall rules for the containers' bridge (agent/container/firewall.ts):
     * containers may not reach this host's own addresses nor these CIDRs (the
     * fleet's control network). Needs root and iptables; absent: no rules.
     */
    containerFirewall: z
      .object({ blockCidrs: z.array(z.cidrv4("use IPv4 CIDRs such as 10.0.0.0/24")) })
      .optional(),
    /**
     * Paused standbys: a ready container instance stopped by a scale-down is
     * paused and kept this long; a new instance of the same revision and spec
     * resumes it. Off with retentionMs 0, maxStandbys 0, or while the host has
     * less than minFreeMemoryBytes available (agent/container/standby.ts).
     */
    containerStandby: z
      .object({
        retentionMs: ms(0).default(300_000),
        maxStandbys: z.number().int().min(0).default(16),
        minFreeMemoryBytes: z
          .number()
          .int()
          .min(0)
          .default(1024 * 1024 * 1024),
        /** A resumed standby not ready within this long is replaced by a new container. */
        resumeTimeoutMs: ms(1).default(2_000),
      })
      .prefault({}),
    /** A container not ready within this long counts as failed (and is restarted with backoff). */
    startupTimeoutMs: ms(100).default(60_000),
    /** workerd processes; default: one per core. */
    isolateProcesses: z.number().int().min(1).max(256).optional(),
    /** Where the isolate pool keeps its config and pid file (lets a restart kill strays). */
    isolateStateDir: z.string().min(1).optional(),
    /**
     * The cluster's gateway secret isolates demand (x-skiff-gateway-auth);
     * default: read from Redis (src/cluster.ts), as gateways do.
     */
    gatewaySecret: z.string().min(16).optional(),
    /** Each namespace's workerd sandbox: uid range, cgroup limits (agent/isolate/options.ts `sandbox`). */
    isolateSandbox: z
      .custom<WorkerdPoolOptionsInput["sandbox"]>((v) => typeof v === "object")
      .optional(),
    /** V8 heap limit per isolate (MB). */
    isolateMaxHeapMb: z.number().int().min(16).optional(),
    /**
     * After withdrawing an endpoint, how long gateways get to notice before the
     * instance is told to stop (bounded by the revision's timeoutSeconds).
     */
    drainDelayMs: ms(0).default(1_000),
    restartBackoff: z
      .object({
        initialMs: ms(1).default(1_000),
        maxMs: ms(1).default(300_000),
      })
      .prefault({}),
    /** A failure on a serving revision stays on its status at least this long. */
    statusHoldMs: ms(0).default(10_000),
    /** Used in the URLs of Route/Service status the agent recomputes. */
    domain: domainSchema,
    urlScheme: z.enum(["http", "https"]).default("http"),
    logger: loggerSchema.optional(),
    registry: registrySchema.optional(),
  })
  .refine((o) => o.heartbeatTtlMs >= 2 * o.heartbeatIntervalMs, {
    message: "must be at least twice heartbeatIntervalMs, so that one late heartbeat is not death",
    path: ["heartbeatTtlMs"],
  });

export type AgentOptionsInput = z.input<typeof AgentOptionsSchema>;
export type AgentOptions = z.output<typeof AgentOptionsSchema>;

export function parseAgentOptions(input: unknown): AgentOptions {
  return parseOptions(AgentOptionsSchema, input, "AgentOptions");
}
