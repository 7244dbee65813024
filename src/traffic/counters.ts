/**
 * The one reader of a gateway's published counters (`RevisionCounters` JSON,
 * keys.ts): the scaler parses every field through this schema and skips what
 * does not parse, so a bad field from one gateway never stops the others.
 */
import { z } from "zod";
import type { RevisionCounters } from "./keys.ts";

export const revisionCountersSchema = z.object({
  v: z.literal(1),
  at: z.number(),
  since: z.number(),
  periodMs: z.number(),
  inflight: z.number(),
  queued: z.number(),
  avgInflight: z.number(),
  requests: z.number(),
  // Not read by the scaler: a publisher that leaves them out is still understood.
  completed: z.number().default(0),
  windowRequests: z.number(),
  concurrencyMs: z.number(),
  instances: z.record(z.string(), z.number()).default({}),
}) satisfies z.ZodType<RevisionCounters>;

/** One hash field's counters, or undefined when it is not JSON or not valid counters. */
export function parseRevisionCounters(raw: string): RevisionCounters | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const r = revisionCountersSchema.safeParse(value);
  return r.success ? r.data : undefined;
}
