/**
 * The `scaler` section: `skiff scaler` and the scaler of `skiff up`, with
 * Knative's config-gc (revision garbage collection). The scaler's options
 * (scaler/options.ts) are this schema plus the autoscaler section and what
 * only code passes in.
 */
import { z } from "zod";
import { DURATION_FORMAT, parseGoDuration } from "../model/duration.ts";
import { AGENT_HEARTBEAT_TTL_MS } from "./agent.ts";
import { setting } from "./meta.ts";
import { hostSchema, msSchema, portSchema, replicaIdSchema } from "./values.ts";

/** Knative's "disabled" for any GC setting. */
export const GC_DISABLED = -1;

const HOUR = 3_600_000;

/** Milliseconds, a Go duration, or "disabled" / -1. */
const retention = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (v === "disabled" || v === GC_DISABLED) return GC_DISABLED;
  const ms = typeof v === "number" ? v : parseGoDuration(v);
  if (ms === undefined || ms < 0) {
    ctx.addIssue({
      code: "custom",
      message: `must be ${DURATION_FORMAT}, milliseconds, or "disabled"`,
    });
    return z.NEVER;
  }
  return ms;
});

const count = z
  .union([z.number().int().min(-1), z.literal("disabled")])
  .transform((v) => (v === "disabled" ? GC_DISABLED : v));

/** Knative's config-gc, with its defaults. */
export const gcSettingsSchema = z
  .object({
    retainSinceCreateTime: setting(retention.default(48 * HOUR), {
      defaultText: "48h",
      description:
        'A non-active revision is stale once created this long ago (and last active retainSinceLastActiveTime ago): Go duration, ms, or "disabled".',
    }),
    retainSinceLastActiveTime: setting(retention.default(15 * HOUR), {
      defaultText: "15h",
      description: 'A non-active revision is stale once last routed this long ago, or "disabled".',
    }),
    minNonActiveRevisions: setting(z.number().int().min(0).default(20), {
      description: "Non-active revisions kept per configuration whatever their age.",
    }),
    maxNonActiveRevisions: setting(count.default(1000), {
      description:
        'Non-active revisions kept at most per configuration (the oldest beyond go), or "disabled".',
    }),
  })
  .superRefine((s, ctx) => {
    if (
      s.maxNonActiveRevisions !== GC_DISABLED &&
      s.minNonActiveRevisions > s.maxNonActiveRevisions
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["maxNonActiveRevisions"],
        message: `must be >= minNonActiveRevisions (${s.minNonActiveRevisions}), or "disabled"`,
      });
    }
  });
export type GcSettings = z.output<typeof gcSettingsSchema>;
export type GcSettingsInput = z.input<typeof gcSettingsSchema>;
export const defaultGcSettings: GcSettings = gcSettingsSchema.parse({});

const scaler = (flag: string) => ({ scaler: flag });

export const scalerSection = z.object({
  id: setting(replicaIdSchema("scaler-host1").optional(), {
    description: "Names this replica in the leader lease and logs; unique per running scaler.",
    defaultText: "the hostname and a random suffix",
    flags: scaler("--id <id>"),
  }),
  host: setting(hostSchema, {
    description: "Listen address of the scaler's /healthz, /readyz and /metrics.",
    flags: scaler("--host <host>"),
  }),
  port: setting(portSchema.default(8092), {
    description: "Listen port of the scaler's /healthz, /readyz and /metrics.",
    flags: scaler("--port <port>"),
  }),
  statusHoldMs: setting(msSchema(0).default(10_000), {
    description:
      "A failure on a serving revision stays on its status at least this long (a crash followed by a fast restart stays visible).",
  }),
  leaseMs: setting(msSchema(300, 600_000).default(3_000), {
    description:
      "The leader lease: a standby takes over within about this long of the leader dying.",
    flags: scaler("--lease <ms>"),
  }),
  agentGraceMs: setting(msSchema(0, 600_000).optional(), {
    description:
      "After a leader change or a Redis reconnect, an agent without a heartbeat record is presumed alive this long before its instances are placed elsewhere.",
    defaultText: `agent.heartbeatTtlMs, at least ${AGENT_HEARTBEAT_TTL_MS}`,
    flags: scaler("--agent-grace <ms>"),
  }),
  scrapeIntervalMs: setting(msSchema(100, 1_000).optional(), {
    description:
      "How often the gateways' counters are read into 1-second buckets; not longer than autoscaler.tickInterval.",
    defaultText: "1000, or the tick interval when shorter",
  }),
  resyncIntervalMs: setting(msSchema(200, 3_600_000).default(10_000), {
    description: "Level-triggered re-read of every object, agent and routing table.",
    flags: scaler("--resync-interval <ms>"),
  }),
  gcIntervalMs: setting(msSchema(1_000, 86_400_000).default(60_000), {
    description: "Revision garbage collection period (what is collected: `gc`).",
    flags: scaler("--gc-interval <ms>"),
  }),
  activationTimeoutMs: setting(msSchema(1_000, 3_600_000).default(610_000), {
    description:
      "A revision started from zero that shows no ready instance this long goes back to zero.",
  }),
  isolateWarmupMs: setting(msSchema(0, 86_400_000).default(300_000), {
    description:
      "A worker revision created at zero (initial-scale 0) gets one instance at once, stopped as soon as it is ready: its agent keeps the isolate as a standby, so the first request wakes it instead of building it (and a module that fails to load shows at deploy). Only revisions created within this long (a new leader does not warm older ones); 0: off.",
  }),
  containerWarmupMs: setting(msSchema(0, 86_400_000).default(300_000), {
    description:
      "A container revision created at zero (initial-scale 0) gets one instance at once, stopped as soon as it is ready: its agent keeps it paused as a standby (agent.containerStandby), so the first request resumes it instead of starting a container (and an image that does not start shows at deploy). Only revisions created within this long; 0: off (Knative's initial-scale 0: no instance until the first request).",
  }),
  gc: gcSettingsSchema.prefault({}),
});

/** The scaler's agentGraceMs when none is set: the agents' heartbeat TTL, at least the default one. */
export function agentGraceFor(heartbeatTtlMs: number): number {
  return Math.max(AGENT_HEARTBEAT_TTL_MS, heartbeatTtlMs);
}
