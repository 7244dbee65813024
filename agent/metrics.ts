/** The agent's Prometheus series. */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { InstancePhase, RuntimeKind } from "../src/fleet/types.ts";
import type { Capacity } from "./identity.ts";

export interface AgentMetrics {
  starts: Counter<"runtime">;
  failures: Counter<"runtime" | "reason">;
  coldStart: Histogram<"runtime">;
  reconcile: Histogram;
  isolateResumes: Counter;
  isolateStandbyReloads: Counter<"outcome">;
  wakes: Counter<"outcome">;
}

function existing<T>(registry: Registry, name: string): T | undefined {
  return registry.getSingleMetric(name) as T | undefined;
}

/**
 * `count()` is read at scrape time, so the instances gauge is always what the
 * agent holds right now.
 */
export function agentMetrics(
  registry: Registry,
  count: () => Iterable<{ phase: InstancePhase; runtime: RuntimeKind }>,
): AgentMetrics {
  if (!existing(registry, "skiff_agent_instances")) {
    new Gauge({
      name: "skiff_agent_instances",
      help: "Instances this agent holds, by phase and runtime",
      labelNames: ["phase", "runtime"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const i of count()) this.inc({ phase: i.phase, runtime: i.runtime });
      },
    });
  }
  return {
    starts:
      existing(registry, "skiff_agent_instance_starts_total") ??
      new Counter({
        name: "skiff_agent_instance_starts_total",
        help: "Instance start attempts (first starts and restarts), by runtime",
        labelNames: ["runtime"] as const,
        registers: [registry],
      }),
    failures:
      existing(registry, "skiff_agent_instance_failures_total") ??
      new Counter({
        name: "skiff_agent_instance_failures_total",
        help: "Instance failures (could not start, crashed, stalled), by runtime and reason",
        labelNames: ["runtime", "reason"] as const,
        registers: [registry],
      }),
    coldStart:
      existing(registry, "skiff_agent_cold_start_seconds") ??
      new Histogram({
        name: "skiff_agent_cold_start_seconds",
        help: "From the decision to start an instance to its endpoint being ready, by runtime",
        labelNames: ["runtime"] as const,
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers: [registry],
      }),
    reconcile:
      existing(registry, "skiff_agent_reconcile_duration_seconds") ??
      new Histogram({
        name: "skiff_agent_reconcile_duration_seconds",
        help: "Duration of one reconcile pass (desired read, starts/stops decided, Redis checked)",
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [registry],
      }),
    isolateResumes:
      existing(registry, "skiff_agent_isolate_resumes_total") ??
      new Counter({
        name: "skiff_agent_isolate_resumes_total",
        help: "Isolate instances started from a standby (the revision's isolate still loaded)",
        registers: [registry],
      }),
    isolateStandbyReloads:
      existing(registry, "skiff_agent_isolate_standby_reloads_total") ??
      new Counter({
        name: "skiff_agent_isolate_standby_reloads_total",
        help: "Isolate standbys loaded and parked again in the replacement of a workerd process that stalled, hung or exited (which lost them), by outcome: parked, or skipped (started or dropped meanwhile) or failed",
        labelNames: ["outcome"] as const,
        registers: [registry],
      }),
    wakes:
      existing(registry, "skiff_agent_wakes_total") ??
      new Counter({
        name: "skiff_agent_wakes_total",
        help: "Wakes of a standby at a gateway's notice, ahead of the scaler (src/fleet/wake.ts), by outcome: started, or claimed first by another agent or the scaler",
        labelNames: ["outcome"] as const,
        registers: [registry],
      }),
  };
}

/** `skiff_agent_isolate_standbys`, read at scrape time. */
export function isolateStandbysGauge(registry: Registry, count: () => number): void {
  if (existing(registry, "skiff_agent_isolate_standbys")) return;
  new Gauge({
    name: "skiff_agent_isolate_standbys",
    help: "Worker revisions at zero whose isolate this agent keeps loaded (not instances: no endpoint, not capacity)",
    registers: [registry],
    collect() {
      this.set(count());
    },
  });
}

/**
 * `skiff_agent_capacity`: what this agent offers the scaler's placement, by
 * resource (compare with skiff_agent_instances for a host's headroom). A
 * restarted agent on the same registry replaces it.
 */
export function capacityGauge(registry: Registry, capacity: Capacity): void {
  const name = "skiff_agent_capacity";
  if (existing(registry, name)) registry.removeSingleMetric(name);
  const gauge = new Gauge({
    name,
    help: "Capacity this agent offers for placement: cpu_millis, memory_bytes, instances (the most it runs)",
    labelNames: ["resource"] as const,
    registers: [registry],
  });
  gauge.set({ resource: "cpu_millis" }, capacity.cpuMillis);
  gauge.set({ resource: "memory_bytes" }, capacity.memoryBytes);
  gauge.set({ resource: "instances" }, capacity.maxInstances);
}
