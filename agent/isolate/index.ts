/** The isolate runtime of the node agent: a pool of workerd processes running worker revisions. */
export {
  DEFAULT_COMPATIBILITY_DATE,
  GATEWAY_AUTH_HEADER,
  ISOLATE_ERROR_HEADER,
  REVISION_HEADER,
  type RevisionCodeInput,
  type WorkerdPoolOptions,
  type WorkerdPoolOptionsInput,
} from "./options.ts";
export {
  type IsolateEndpoint,
  type IsolateEvent,
  type IsolateEventType,
  type LogEvent,
  type SandboxInfo,
  type SlotStats,
  type SpawnEvent,
  WorkerdPool,
  type WorkerdPoolEvents,
  type WorkerLogEvent,
} from "./pool.ts";
export type { LoadResult } from "./process.ts";
