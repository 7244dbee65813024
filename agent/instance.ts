/**
 * One instance the agent holds, whatever its runtime, and the narrow
 * interface through which a runtime driver tells the agent what happened to
 * it. The agent turns those notices into endpoint publishes/withdrawals and
 * instance reports (from which the scaler derives revision status).
 */

import type {
  DesiredInstance,
  Endpoint,
  InstanceFailureReport,
  InstancePhase,
  InstanceStatus,
} from "../src/fleet/types.ts";
import type { Supervisor } from "./container/index.ts";
import type { InstanceSpecInput } from "./container/spec.ts";

export interface Instance {
  readonly id: string;
  readonly desired: DesiredInstance;
  phase: InstancePhase;
  reason: string | undefined;
  message: string | undefined;
  restarts: number;
  /** ms since epoch the phase was entered. */
  since: number;
  /** Where it answers, once ready (kept while unready so it can be republished). */
  endpoint: Endpoint | undefined;
  /** What its readiness said about the revision (its report carries it). */
  readyHealth: { imageDigest?: string };
  /** ms since epoch it last passed readiness. */
  readyAt: number | undefined;
  /** The last failure that is the revision's own (its report carries it; the scaler derives status). */
  lastFailure: InstanceFailureReport | undefined;
  /** Set once a stop began; never cleared. */
  stopping: boolean;
  /** It was routable when the stop began: give gateways time to notice the withdrawal. */
  drainOnStop: boolean;
  stopped: Promise<void> | undefined;
  /** A failure a later pass may retry (revision or bundle missing, agent full). */
  retryable: boolean;
  /** performance.now() of the decision to start (cold start metric). */
  startedAt: number;
  coldStartRecorded: boolean;
  /**
   * Woken ahead of the scaler (src/fleet/wake.ts): kept though not desired
   * until this time (ms since epoch); cleared once a desired set names it.
   */
  heldUntil?: number;
  /** Bounds the drain on stop (the revision's timeoutSeconds). */
  timeoutSeconds: number;
  /** The revision's hard per-instance limit, copied onto the endpoint. */
  containerConcurrency: number;

  // Redis mirror, kept by the agent's per-instance chain.
  chain: Promise<void>;
  /** JSON of the endpoint as last published; undefined when withdrawn. */
  published: string | undefined;
  /** JSON of the report as last written. */
  reported: string | undefined;
  /** A write failed or a resync found Redis different: write again. */
  dirty: boolean;

  // Container runtime.
  spec?: InstanceSpecInput;
  supervisor?: Supervisor;
  /** Taken over from a previous run of this agent (not started by this one). */
  adopted?: boolean;
  restartTimer?: NodeJS.Timeout;

  // Isolate runtime.
  revisionKey?: string;
  slot?: string;
}

export function newInstance(desired: DesiredInstance, now = Date.now()): Instance {
  return {
    id: desired.id,
    desired,
    phase: "starting",
    reason: undefined,
    message: undefined,
    restarts: 0,
    since: now,
    endpoint: undefined,
    readyHealth: {},
    readyAt: undefined,
    lastFailure: undefined,
    stopping: false,
    drainOnStop: false,
    stopped: undefined,
    retryable: false,
    startedAt: performance.now(),
    coldStartRecorded: false,
    timeoutSeconds: 300,
    containerConcurrency: 0,
    chain: Promise.resolve(),
    published: undefined,
    reported: undefined,
    dirty: false,
  };
}

export function statusOf(inst: Instance, agentId: string): InstanceStatus {
  const s: InstanceStatus = {
    id: inst.id,
    agentId,
    namespace: inst.desired.namespace,
    revision: inst.desired.revision,
    runtime: inst.desired.runtime,
    phase: inst.phase,
    restarts: inst.restarts,
    since: inst.since,
  };
  if (inst.reason) s.reason = inst.reason;
  if (inst.message) s.message = inst.message;
  if (inst.readyAt !== undefined) s.readyAt = inst.readyAt;
  if (inst.lastFailure) s.lastFailure = inst.lastFailure;
  if (inst.readyHealth.imageDigest) s.imageDigest = inst.readyHealth.imageDigest;
  return s;
}

export interface ReadyAt {
  host: string;
  port: number;
  protocol: "http1" | "h2c";
  header?: { name: string; value: string };
  containerConcurrency: number;
}

export interface Failure {
  reason: string;
  message: string;
}

/** How a runtime driver reports on its instances. */
export interface InstanceSink {
  /** Passed readiness (first time, after a restart, or again after being unready). */
  ready(inst: Instance, at: ReadyAt, health?: { imageDigest?: string }): void;
  /** (Re)starting, or unready while it runs: not routable. */
  starting(inst: Instance, detail?: Failure): void;
  /**
   * Not running: "backoff" (will be restarted) or "failed" (will not).
   * `health: false` keeps the failure out of the report's `lastFailure`, so off
   * the Revision's status (the revision is not at fault, e.g. an innocent
   * neighbour of a stalled worker).
   */
  failed(inst: Instance, phase: "backoff" | "failed", failure: Failure, health?: boolean): void;
}
