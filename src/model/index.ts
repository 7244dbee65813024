/**
 * The resource model: Knative serving.knative.dev/v1 shapes, their parsing and
 * validation, autoscaling settings, worker compilation, conditions and status.
 * Pure functions; the only I/O is esbuild inside compileWorker.
 */
export * from "./conditions.ts";
export { effectiveReadinessProbe, servingPort, servingProtocol } from "./container.ts";
export * from "./duration.ts";
export * from "./equal.ts";
export * from "./limits.ts";
export * from "./names.ts";
export * from "./quantity.ts";
export * from "./scaling.ts";
export * from "./status.ts";
export { revisionNameForTemplate } from "./template.ts";
export { missingRevisionCauses, type TrafficOptions, validateTraffic } from "./traffic.ts";
export * from "./types.ts";
export * from "./validate.ts";
export * from "./worker.ts";
