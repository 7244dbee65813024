/** The scaler (`skiff scaler`): Knative's autoscaler, placement on agents, routing tables, revision status, revision GC. */
export { ObjectCache } from "./cache.ts";
export { GcController } from "./controllers/gc.ts";
export {
  RevisionStatusController,
  startRevisionStatus,
} from "./controllers/revision-status.ts";
export { RoutesController } from "./controllers/routes.ts";
export { ScaleController } from "./controllers/scale.ts";
export { type GcSettings, gcSettingsSchema, selectRevisionsToDelete } from "./gc.ts";
export { type Decision, KpaAutoscaler } from "./kpa.ts";
export { startLeaderElection } from "./leader.ts";
export { GatewayMetricsSource, type RevisionLoad } from "./metrics-source.ts";
export {
  parseScalerOptions,
  type ScalerOptions,
  type ScalerOptionsInput,
  scalerOptionsFromConfig,
  scalerOptionsSchema,
} from "./options.ts";
export { chooseVictims, place, revisionNeeds } from "./placement.ts";
export { planScale } from "./plan.ts";
export { holdReason, RouteReconciler } from "./routes.ts";
export { type RevisionScaleState, ScalerLoop } from "./scaler.ts";
export { leaderKey, type RunningScaler, type StartScalerOptions, startScaler } from "./server.ts";
