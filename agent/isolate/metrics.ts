/** The pool's Prometheus series; light on purpose (the gateway counts requests). */
import { Counter, Gauge, type Registry } from "prom-client";

export interface IsolateMetrics {
  coldStarts: Counter;
  /** Requests refused for lack of the gateway secret. */
  forbidden: Counter;
  /** Probes late because the process did not get the CPU (host contention): not stalls. */
  starved: Counter;
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
      help: "workerd processes replaced, by reason: stall (runaway CPU), hang (unresponsive without CPU), exit (crash, abort, OOM kill), recycle (loader entries), rss (memory)",
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
  const forbidden =
    existing<Counter>(registry, "skiff_agent_isolate_forbidden_total") ??
    new Counter({
      name: "skiff_agent_isolate_forbidden_total",
      help: "Requests to isolates refused (403) because they lacked the cluster's gateway secret (x-skiff-gateway-auth)",
      registers: [registry],
    });
  const starved =
    existing<Counter>(registry, "skiff_isolate_probe_starved_total") ??
    new Counter({
      name: "skiff_isolate_probe_starved_total",
      help: "Health probes of a workerd process late while it did not get the CPU (host contention): not counted as stalls",
      registers: [registry],
    });
  return { coldStarts, forbidden, starved, restarts, loaderEntries };
}
