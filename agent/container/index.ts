/**
 * Skiff's container runtime: revision instances as Docker containers. The
 * agent's view of it; the modules beside this one are its parts.
 */
export {
  type AdoptResult,
  ContainerRuntime,
  type ExitEvent,
  type ReadinessEvent,
} from "./runtime.ts";
export { type Supervisor, type SupervisorStatus, supervise } from "./supervise.ts";
