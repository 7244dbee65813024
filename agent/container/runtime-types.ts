/** What the container runtime hands out and reports: endpoints, start results, events. */
import type { InstanceFailure } from "../errors.ts";
import type { ResolvedImage } from "./images.ts";
import type { InstanceSpec } from "./spec.ts";

export interface Endpoint {
  host: string;
  port: number;
  protocol: "http1" | "h2c";
}

export interface StartTimings {
  /** Local image lookup (and pull, if any). */
  imageMs: number;
  /** Waiting for a slot of the start gate (startConcurrency). */
  queuedMs: number;
  /** Port allocation and docker create. */
  createMs: number;
  /** docker start. */
  startMs: number;
  /** From started to the first passing readiness probe. */
  readyMs: number;
  totalMs: number;
}

export interface StartedInstance extends Endpoint {
  instanceId: string;
  containerId: string;
  image: ResolvedImage;
  timings: StartTimings;
  /** A paused standby was resumed (no container created; timings.startMs is the unpause). */
  resumed?: boolean;
  /** A new container joined a network sandbox (sandboxes.ts) instead of a namespace of its own. */
  sandboxed?: boolean;
}

/** A paused container kept for a later start() of the same spec. */
export interface StandbyInfo extends Endpoint {
  containerId: string;
  namespace: string;
  revision: string;
  /** ms since epoch it was paused (or adopted as a standby). */
  pausedAt: number;
}

/** An instance that had been ready (or adopted) exited without stop(). */
export interface ExitEvent extends InstanceFailure {
  instanceId: string;
  containerId: string;
  namespace: string;
  revision: string;
}

export interface ReadinessEvent {
  instanceId: string;
  revision: string;
  ready: boolean;
  message: string;
}

export interface AdoptedInstance extends Endpoint {
  instanceId: string;
  containerId: string;
  spec: InstanceSpec;
  imageId: string;
  /** Whether one probe just now passed (periodic probing continues either way). */
  ready: boolean;
}

export interface AdoptResult {
  running: AdoptedInstance[];
  /** Containers of this owner found dead: reported (and removed when removeExited). */
  exited: ExitEvent[];
}

export interface StopOptions {
  /** Resolves when the caller knows in-flight requests are done (e.g. from the gateway). */
  drained?: PromiseLike<unknown>;
  /** Without `drained`: wait this long before SIGTERM (default 0). */
  drainMs?: number;
  /** SIGTERM -> SIGKILL grace; default options.stopGraceSeconds, else the spec's timeoutSeconds. */
  graceSeconds?: number;
  /**
   * After the drain, pause the container as a standby instead of stopping it
   * (when it was ready, standbys are on and memory allows; else a normal stop).
   */
  standby?: boolean;
}

export type InstanceState = "starting" | "ready" | "unready" | "stopping";

export interface InstanceInfo extends Endpoint {
  instanceId: string;
  containerId: string;
  state: InstanceState;
  namespace: string;
  revision: string;
}

export interface RuntimeEvents {
  exit: [ExitEvent];
  readiness: [ReadinessEvent];
  /** Something went wrong in the background (events stream lost, removal failed). */
  warning: [Error];
  /** A start waits for an image pull: what it has pulled so far (at most about once a second). */
  pulling: [{ instanceId: string; message: string }];
  /** A standby was paused, resumed or removed (the count changed). */
  standby: [{ change: "paused" | "resumed" | "removed"; containerId: string; reason?: string }];
}
