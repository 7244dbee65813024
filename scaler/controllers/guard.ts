/**
 * How a controller's pass fails: never thrown into its loop. Losing the lease
 * mid-pass is one warning (no more writes follow); a failure while Redis is
 * away is the expected consequence of the outage (logged once elsewhere), so
 * debug; anything else is counted and logged as an error.
 */
import { SkiffError } from "../../src/errors.ts";
import type { Logger } from "../../src/logging.ts";
import type { ScalerMetrics } from "../metrics.ts";

export interface GuardDeps {
  /** Counts failures by stage (none: not counted). */
  metrics?: Pick<ScalerMetrics, "errors">;
  logger: Logger;
  /** False once the scaler stopped: failures then are the stop's, not news. */
  active(): boolean;
  /** Whether Redis is reachable (src/redis/health.ts). Default: always. */
  redisUp?: () => boolean;
}

/** The lease was lost (the fenced desired writer, or a check before a write). */
export function isNotLeader(err: unknown): boolean {
  return err instanceof SkiffError && err.code === "NOT_LEADER";
}

/** A pass that logs and counts its failure instead of throwing it. */
export function guarded(d: GuardDeps, stage: string, fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    if (!d.active()) return;
    try {
      await fn();
    } catch (err) {
      if (!d.active()) return;
      if (isNotLeader(err)) {
        d.logger.warn(`lease lost during the ${stage} pass: no more writes`);
        return;
      }
      d.metrics?.errors.inc({ stage });
      if (d.redisUp?.() === false) {
        d.logger.debug({ err: (err as Error).message }, `scaler ${stage} failed: redis is away`);
        return;
      }
      d.logger.error({ err }, `scaler ${stage} failed`);
    }
  };
}
