/**
 * Fleet state: what the scaler asks of agents, what agents report, and what
 * gateways route to. It lives in Redis beside the resources but is not a
 * resource: it changes often, carries no user intent, and is rebuilt from the
 * running system after any loss. Keys and channels are in fleet/keys.ts.
 */

export type RuntimeKind = "container" | "isolate";

/** One host's agent, as it registers itself (refreshed by its heartbeat). */
export interface AgentRecord {
  /** Stable across restarts of the same host (config, else derived from hostname + address). */
  id: string;
  /** Data address its instances listen on (e.g. 127.0.0.2); gateways connect here. */
  address: string;
  runtimes: RuntimeKind[];
  capacity: {
    /** CPU the agent may hand out, in millicores. */
    cpuMillis: number;
    memoryBytes: number;
    maxInstances: number;
  };
  labels: Record<string, string>;
  /** RFC 3339. */
  startedAt: string;
  /** ms since epoch of the last heartbeat. */
  heartbeatAt: number;
  /** Set while a graceful stop drains: place nothing new here. */
  draining?: boolean;
  /**
   * Revisions ("namespace/revision") it holds a paused container standby of
   * (at most 64): placement prefers it, as a start there resumes the standby.
   */
  standbys?: string[];
  /**
   * Network sandboxes it has ready (agent/container/sandboxes.ts): a container
   * started there skips Docker's network setup, so placement prefers it.
   */
  sandboxes?: number;
  version: string;
}

/** The scaler's wish for one instance on one agent. */
export interface DesiredInstance {
  /** Unique per instance, e.g. `hello-00001-7f3a9c`. Never reused. */
  id: string;
  namespace: string;
  revision: string;
  runtime: RuntimeKind;
}

export type InstancePhase = "starting" | "ready" | "backoff" | "failed" | "stopping";

/**
 * A failure the agent saw that is the revision's own (a crash, a missing
 * image, a stalled worker; not an innocent neighbour's), and which of the
 * Revision's conditions it belongs on. The scaler derives Revision status
 * from these; the agent only observes.
 */
export interface InstanceFailureReport {
  condition: "ContainerHealthy" | "ResourcesAvailable";
  reason: string;
  message: string;
  /** ms since epoch it was seen. */
  at: number;
}

/** An agent's report on one instance it runs (or tries to). */
export interface InstanceStatus {
  id: string;
  agentId: string;
  namespace: string;
  revision: string;
  runtime: RuntimeKind;
  phase: InstancePhase;
  /** Short machine-readable reason: ImageNotFound, ExitCode3, OOMKilled, ... */
  reason?: string;
  /** Readable explanation, what Revision status shows. */
  message?: string;
  restarts: number;
  /** ms since epoch when the phase was entered. */
  since: number;
  /** ms since epoch it last passed readiness (absent: never yet). */
  readyAt?: number;
  /** The last failure that is the revision's own; kept for the instance's life. */
  lastFailure?: InstanceFailureReport;
  /** The image digest that ran (containers). */
  imageDigest?: string;
}

/** A ready instance gateways may send requests to. */
export interface Endpoint {
  instanceId: string;
  agentId: string;
  runtime: RuntimeKind;
  host: string;
  port: number;
  protocol: "http1" | "h2c";
  /** Isolates share a workerd socket: the gateway sets this header to pick the revision. */
  header?: { name: string; value: string };
  /** Hard per-instance limit (0 = none), copied from the revision for the gateway's hot path. */
  containerConcurrency: number;
  /** ms since epoch when it passed readiness. */
  readyAt: number;
}
