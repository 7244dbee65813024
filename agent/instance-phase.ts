/**
 * What happened to an instance, as the agent books it: a runtime driver's
 * notices (ready, starting, failed) become the instance's phase, its
 * readiness and its last failure, and every change queues a write of its
 * endpoint and report (fleet-mirror.ts).
 */
import { performance } from "node:perf_hooks";
import { conditionForFailure } from "../src/control/revision-health.ts";
import type { Endpoint } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import type { Failure, Instance, InstanceSink, ReadyAt } from "./instance.ts";
import type { AgentMetrics } from "./metrics.ts";

export interface InstancePhaseDeps {
  agentId: string;
  log: Logger;
  metrics: AgentMetrics;
  /** Queue a write of the instance's endpoint and report. */
  push(inst: Instance): Promise<void>;
}

/** The sink the runtime drivers report through. */
export function instanceSink(d: InstancePhaseDeps): InstanceSink {
  return {
    ready: (inst, at, health) => onReady(d, inst, at, health),
    starting: (inst, detail) => {
      if (inst.stopping) return;
      setPhase(d, inst, "starting", detail);
    },
    failed: (inst, phase, failure, health = true) => {
      if (inst.stopping) return;
      setPhase(d, inst, phase, failure, health);
    },
  };
}

function onReady(
  d: InstancePhaseDeps,
  inst: Instance,
  at: ReadyAt,
  health: { imageDigest?: string } = {},
): void {
  if (inst.stopping) return;
  const endpoint: Endpoint = {
    instanceId: inst.id,
    agentId: d.agentId,
    runtime: inst.desired.runtime,
    host: at.host,
    port: at.port,
    protocol: at.protocol,
    containerConcurrency: at.containerConcurrency,
    readyAt: Date.now(),
  };
  if (at.header) endpoint.header = at.header;
  inst.endpoint = endpoint;
  inst.readyHealth = health;
  inst.readyAt = endpoint.readyAt;
  if (!inst.coldStartRecorded) {
    inst.coldStartRecorded = true;
    d.metrics.coldStart.observe(
      { runtime: inst.desired.runtime },
      (performance.now() - inst.startedAt) / 1000,
    );
  }
  setPhase(d, inst, "ready");
  d.log.info(
    { instance: inst.id, revision: inst.desired.revision, host: at.host, port: at.port },
    "instance ready",
  );
}

/**
 * Returns whether anything changed (and so was queued for Redis). `health`:
 * the failure is the revision's own, so the report's lastFailure says it
 * (seen now, even when the phase is the same: a crash again).
 */
export function setPhase(
  d: InstancePhaseDeps,
  inst: Instance,
  phase: Instance["phase"],
  detail?: Failure,
  health = false,
): boolean {
  const changed =
    inst.phase !== phase || inst.reason !== detail?.reason || inst.message !== detail?.message;
  if (health && detail && (changed || inst.lastFailure?.reason !== detail.reason)) {
    inst.lastFailure = {
      condition: conditionForFailure(detail.reason),
      reason: detail.reason,
      message: detail.message,
      at: Date.now(),
    };
    if (!changed) {
      void d.push(inst);
      return true;
    }
  }
  if (!changed) return false;
  if (inst.phase !== phase) inst.since = Date.now();
  inst.phase = phase;
  inst.reason = detail?.reason;
  inst.message = detail?.message;
  if (phase === "backoff" || phase === "failed") {
    d.log.warn({ instance: inst.id, phase, ...detail }, "instance not running");
  }
  void d.push(inst);
  return true;
}
