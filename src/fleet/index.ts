/** The fleet state in Redis: agents, desired instances, instance reports, endpoints. */
export {
  agentsWithDesired,
  type DesiredChange,
  type DesiredFence,
  DesiredWriter,
  writeDesired,
} from "./desired.ts";
export { type PublishedRef, parseEndpoints } from "./endpoints.ts";
export { createFleet, Fleet, type FleetChannel, type FleetOptions } from "./fleet.ts";
export { type FleetKeys, fleetKeys, parseRevisionRef, revisionRef } from "./keys.ts";
export { parseRecord, parseRecords } from "./records.ts";
export {
  agentRecordSchema,
  desiredInstanceSchema,
  endpointSchema,
  fleetId,
  ID_PATTERN,
  instanceStatusSchema,
} from "./schemas.ts";
export type {
  AgentRecord,
  DesiredInstance,
  Endpoint,
  InstancePhase,
  InstanceStatus,
  RuntimeKind,
} from "./types.ts";
export { type FleetWatch, type WatchFleetOptions, watchFleet } from "./watch.ts";
