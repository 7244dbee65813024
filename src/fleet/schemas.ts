/**
 * zod schemas of the fleet records (types.ts). Writers validate before they
 * write, readers skip (and log) what does not parse: several processes of
 * possibly different versions share these keys, and one bad entry must not
 * stop a gateway from routing to the rest.
 */
import { z } from "zod";
import type {
  AgentRecord,
  DesiredInstance,
  Endpoint,
  InstancePhase,
  InstanceStatus,
  RuntimeKind,
} from "./types.ts";

/** Agent and instance ids become key segments, container names and label values. */
export const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/;
const idMessage = "use 1-101 letters, digits, '_', '.', '-', starting with a letter or digit";

/** Namespaces and revision names become key segments ("{ns}:{rev}") and refs ("{ns}/{rev}"). */
const SEGMENT = /^[^\s:/]+$/;
const segmentMessage = 'must be a non-empty name without spaces, ":" or "/"';

export const fleetId = z.string().regex(ID_PATTERN, idMessage);
const segment = z.string().regex(SEGMENT, segmentMessage);

export const runtimeKindSchema = z.enum(["container", "isolate"]) satisfies z.ZodType<RuntimeKind>;

/** At most this many revisions are reported as held in standby (the agent record stays small). */
export const MAX_REPORTED_STANDBYS = 64;

export const agentRecordSchema = z.object({
  id: fleetId,
  address: z.string().min(1),
  runtimes: z.array(runtimeKindSchema),
  capacity: z.object({
    cpuMillis: z.number().nonnegative(),
    memoryBytes: z.number().nonnegative(),
    maxInstances: z.number().int().nonnegative(),
  }),
  labels: z.record(z.string(), z.string()),
  startedAt: z.string(),
  heartbeatAt: z.number(),
  draining: z.boolean().optional(),
  standbys: z.array(z.string().max(300)).max(MAX_REPORTED_STANDBYS).optional(),
  sandboxes: z.number().int().nonnegative().optional(),
  version: z.string(),
}) satisfies z.ZodType<AgentRecord>;

export const desiredInstanceSchema = z.object({
  id: fleetId,
  namespace: segment,
  revision: segment,
  runtime: runtimeKindSchema,
}) satisfies z.ZodType<DesiredInstance>;

export const instancePhaseSchema = z.enum([
  "starting",
  "ready",
  "backoff",
  "failed",
  "stopping",
]) satisfies z.ZodType<InstancePhase>;

export const instanceStatusSchema = z.object({
  id: fleetId,
  agentId: fleetId,
  namespace: segment,
  revision: segment,
  runtime: runtimeKindSchema,
  phase: instancePhaseSchema,
  reason: z.string().optional(),
  message: z.string().optional(),
  restarts: z.number().int().nonnegative(),
  since: z.number(),
  readyAt: z.number().optional(),
  lastFailure: z
    .object({
      condition: z.enum(["ContainerHealthy", "ResourcesAvailable"]),
      reason: z.string(),
      message: z.string(),
      at: z.number(),
    })
    .optional(),
  imageDigest: z.string().optional(),
}) satisfies z.ZodType<InstanceStatus>;

export const endpointSchema = z.object({
  instanceId: fleetId,
  agentId: fleetId,
  runtime: runtimeKindSchema,
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  // Defaults: what a record of an agent older than these fields means.
  protocol: z.enum(["http1", "h2c"]).default("http1"),
  header: z.object({ name: z.string().min(1), value: z.string() }).optional(),
  containerConcurrency: z.number().int().nonnegative().default(0),
  readyAt: z.number().default(0),
}) satisfies z.ZodType<Endpoint>;

export { segment as fleetSegment };
