/** The pool's Prometheus series; light on purpose (the gateway counts requests). */
import { Counter, Gauge, type Registry } from "prom-client";

export interface IsolateMetrics {
  coldStarts: Counter;
  restarts: Counter<"reason">;
  loaderEntries: Gauge<"process">;
}

/** Reuse series already in the registry (a second pool in the same process). */
function existing<T>(registry: Registry, name: string): T | undefined {
  return registry.getSingleMetric(name) as T | undefined;
}

export function isolateMetrics(registry: Registry): IsolateMetrics {
  const coldStarts =
    existing<Counter>(registry, "skiff_isolate_cold_starts_total") ??
    new Counter({
      name: "skiff_isolate_cold_starts_total",
      help: "Revisions loaded into a workerd process as a new isolate (router fetched their code)",
      registers: [registry],
    });
  const restarts =
    existing<Counter<"reason">>(registry, "skiff_isolate_process_restarts_total") ??
    new Counter({
      name: "skiff_isolate_process_restarts_total",
      help: "workerd processes replaced, by reason: stall (runaway CPU), exit (crash or abort), recycle (loader entries)",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
  const loaderEntries =
    existing<Gauge<"process">>(registry, "skiff_isolate_loader_entries") ??
    new Gauge({
      name: "skiff_isolate_loader_entries",
      help: "Revisions loaded in the current workerd process of each slot",
      labelNames: ["process"] as const,
      registers: [registry],
    });
  return { coldStarts, restarts, loaderEntries };
}
