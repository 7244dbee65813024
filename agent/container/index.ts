/** Skiff's container runtime: revision instances as Docker containers. */
export { type FailureReason, InstanceError, type InstanceFailure } from "./errors.ts";
export type { RegistryConfig, ResolvedImage } from "./images.ts";
export {
  type AdoptedInstance,
  type AdoptResult,
  ContainerRuntime,
  type ContainerRuntimeOptions,
  ContainerRuntimeOptionsSchema,
  type Endpoint,
  type ExitEvent,
  type InstanceInfo,
  type InstanceState,
  type ReadinessEvent,
  type RuntimeEvents,
  type StandbyInfo,
  type StartedInstance,
  type StartTimings,
  type StopOptions,
} from "./runtime.ts";
export {
  type InstanceSpec,
  type InstanceSpecInput,
  InstanceSpecSchema,
  RESERVED_ENV,
} from "./spec.ts";
export { type StandbyOptions, StandbyOptionsSchema, standbyKey } from "./standby.ts";
export {
  type SuperviseOptions,
  type Supervisor,
  type SupervisorStatus,
  supervise,
} from "./supervise.ts";
