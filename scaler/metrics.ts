/** Prometheus metrics of the scaler (prom-client, one Registry per component). */
import { Counter, Gauge, Histogram, type Registry } from "../src/metrics.ts";

export function scalerMetrics(registry: Registry) {
  const revisionLabels = ["namespace", "revision"] as const;
  return {
    leader: new Gauge({
      name: "skiff_scaler_leader",
      help: "1 while this scaler holds the leader lease and acts, else 0",
      registers: [registry],
    }),
    desired: new Gauge({
      name: "skiff_scaler_desired_instances",
      help: "Instances the autoscaler wants for a revision",
      labelNames: revisionLabels,
      registers: [registry],
    }),
    actual: new Gauge({
      name: "skiff_scaler_ready_instances",
      help: "Instances of a revision that pass readiness (published endpoints on live agents)",
      labelNames: revisionLabels,
      registers: [registry],
    }),
    panic: new Gauge({
      name: "skiff_scaler_panic_mode",
      help: 'Per revision and reason, 1 while its autoscaler is in panic mode for that reason: "load" (the panic window passed the threshold) or "starting" (a fresh autoscaler, e.g. after a leader change, holds the placed count for one stable window)',
      labelNames: [...revisionLabels, "reason"] as const,
      registers: [registry],
    }),
    observed: new Gauge({
      name: "skiff_scaler_observed_load",
      help: "Average of the scaling metric (concurrency or rps) over the stable or panic window",
      labelNames: [...revisionLabels, "window"] as const,
      registers: [registry],
    }),
    decisions: new Counter({
      name: "skiff_scaler_decisions_total",
      help: "Autoscaler decisions, by the reason that decided the count",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    scaleChanges: new Counter({
      name: "skiff_scaler_instances_changed_total",
      help: "Instances added to or removed from agents' desired sets",
      labelNames: ["change"] as const,
      registers: [registry],
    }),
    placementFailures: new Counter({
      name: "skiff_scaler_placement_failures_total",
      help: "Instances that could not be placed, by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    activations: new Counter({
      name: "skiff_scaler_activations_total",
      help: "Activation signals received from gateways (a request waits for a revision at zero)",
      registers: [registry],
    }),
    fastActivations: new Counter({
      name: "skiff_scaler_fast_activation_instances_total",
      help: "Instances placed for an activation from the last pass's view, before the full pass",
      registers: [registry],
    }),
    heldPasses: new Counter({
      name: "skiff_scaler_held_passes_total",
      help: "Scaling passes that changed nothing because some agent had no heartbeat record within agentGraceMs of a leader change or a Redis reconnect (presumed alive, not back yet)",
      registers: [registry],
    }),
    tick: new Histogram({
      name: "skiff_scaler_tick_duration_seconds",
      help: "Time one scaling pass took (read fleet, decide, place, write)",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    routePublishes: new Counter({
      name: "skiff_scaler_route_reconciles_total",
      help: "Route reconciles, by outcome (published, held, removed)",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    gcDeleted: new Counter({
      name: "skiff_scaler_gc_revisions_deleted_total",
      help: "Revisions deleted by garbage collection",
      registers: [registry],
    }),
    errors: new Counter({
      name: "skiff_scaler_errors_total",
      help: "Failed passes, by stage",
      labelNames: ["stage"] as const,
      registers: [registry],
    }),
  };
}

export type ScalerMetrics = ReturnType<typeof scalerMetrics>;
