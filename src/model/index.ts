/**
 * The resource model: Knative serving.knative.dev/v1 shapes, their parsing and
 * validation, autoscaling settings, worker compilation, conditions and status.
 * Pure functions; the only I/O is esbuild inside compileWorker.
 */
export * from "./conditions.ts";
export {
  DEFAULT_PORT,
  effectiveReadinessProbe,
  servingPort,
  servingProtocol,
} from "./container.ts";
export * from "./duration.ts";
export * from "./equal.ts";
export type { CauseReason } from "./fields.ts";
export * from "./limits.ts";
export * from "./names.ts";
export * from "./quantity.ts";
export * from "./scaling.ts";
export * from "./status.ts";
export {
  DEFAULT_TIMEOUT_SECONDS,
  MAX_CONTAINER_CONCURRENCY,
  MAX_TIMEOUT_SECONDS,
  revisionNameForTemplate,
} from "./template.ts";
export {
  defaultServiceTraffic,
  missingRevisionCauses,
  type TrafficOptions,
  type TrafficOwner,
  validateTraffic,
} from "./traffic.ts";
export * from "./types.ts";
export * from "./validate.ts";
export * from "./worker.ts";
