/**
 * Size limits on user input, so one request cannot make the API or the store
 * carry something unreasonable. Overridable by the global config.
 */
import { z } from "zod";

export const MIB = 1024 * 1024;

export const modelLimitsSchema = z.object({
  /** Total UTF-8 bytes of a worker's sources (inline source or all modules). */
  maxWorkerSourceBytes: z.number().int().positive().default(MIB),
  /** Modules in one worker. */
  maxWorkerModules: z.number().int().positive().default(100),
  /** Env entries per container or worker. */
  maxEnvVars: z.number().int().positive().default(500),
  /** Total bytes of all annotation keys and values on one object (Kubernetes: 256 KiB). */
  maxAnnotationsBytes: z
    .number()
    .int()
    .positive()
    .default(256 * 1024),
  /** Targets in one traffic list. */
  maxTrafficTargets: z.number().int().positive().default(100),
});

export type ModelLimits = z.output<typeof modelLimitsSchema>;
export type ModelLimitsInput = z.input<typeof modelLimitsSchema>;

export const defaultModelLimits: ModelLimits = modelLimitsSchema.parse({});

/** Defaults filled in; throws a zod error on a bad config value (a programming/config error). */
export function resolveLimits(input?: ModelLimitsInput | ModelLimits): ModelLimits {
  return input === undefined ? defaultModelLimits : modelLimitsSchema.parse(input);
}
