/** The gateway's Prometheus metrics (served on the admin port). */
import { Counter, Gauge, Histogram, type Registry } from "../src/metrics.ts";

export interface GatewayMetrics {
  requests: Counter<"code" | "namespace" | "service">;
  duration: Histogram<"namespace" | "service">;
  queueDepth: Gauge<"namespace" | "revision">;
  inflight: Gauge<"namespace" | "revision">;
  coldStartWait: Histogram;
  retries: Counter<"reason">;
  upstreamErrors: Counter<"code" | "reason">;
  websockets: Gauge;
}

export interface QueueSource {
  revisions(): Iterable<{ namespace: string; revision: string; queued: number; inflight: number }>;
}

export function gatewayMetrics(registry: Registry, queues: QueueSource): GatewayMetrics {
  const queueDepth = new Gauge({
    name: "skiff_gateway_queue_depth",
    help: "Requests waiting for an instance or a hard-limit slot, by revision",
    labelNames: ["namespace", "revision"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const r of queues.revisions()) {
        this.set({ namespace: r.namespace, revision: r.revision }, r.queued);
      }
    },
  });
  const inflight = new Gauge({
    name: "skiff_gateway_inflight_requests",
    help: "Requests accepted and not finished (queued ones included), by revision",
    labelNames: ["namespace", "revision"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const r of queues.revisions()) {
        this.set({ namespace: r.namespace, revision: r.revision }, r.inflight);
      }
    },
  });
  return {
    requests: new Counter({
      name: "skiff_gateway_requests_total",
      help: "Requests answered, by status code (404 for unknown hosts has empty labels)",
      labelNames: ["code", "namespace", "service"] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: "skiff_gateway_request_duration_seconds",
      help: "Arrival to the last byte of the response, through the gateway",
      labelNames: ["namespace", "service"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    queueDepth,
    inflight,
    coldStartWait: new Histogram({
      name: "skiff_gateway_cold_start_wait_seconds",
      help: "How long requests for a revision at zero waited for its first instance",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300],
      registers: [registry],
    }),
    retries: new Counter({
      name: "skiff_gateway_retries_total",
      help: "Requests sent again to another instance after a connection failure",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: "skiff_gateway_upstream_errors_total",
      help: "Responses the gateway made itself because of the instance: 502 (failed) and 504 (timed out)",
      labelNames: ["code", "reason"] as const,
      registers: [registry],
    }),
    websockets: new Gauge({
      name: "skiff_gateway_websockets",
      help: "Upgraded connections (WebSockets) open through the gateway",
      registers: [registry],
    }),
  };
}
