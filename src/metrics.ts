/**
 * Prometheus metrics (prom-client). Each component owns a Registry so that an
 * all-in-one `skiff up` process can serve every component's metrics without
 * name clashes, and tests can inspect a fresh registry.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

export interface MetricsOptions {
  /** Collect process metrics (cpu, memory, event loop lag). Once per process. */
  defaults?: boolean;
  /** Added as the `component` label on every series. */
  component: string;
}

export function createRegistry(options: MetricsOptions): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component: options.component });
  if (options.defaults) collectDefaultMetrics({ register: registry, prefix: "skiff_" });
  return registry;
}

/** HTTP server metrics shared by the API and the gateway's own endpoints. */
export function httpServerMetrics(registry: Registry, prefix: string) {
  return {
    requests: new Counter({
      name: `${prefix}_http_requests_total`,
      help: "HTTP requests handled, by method, route pattern and status code",
      labelNames: ["method", "route", "code"] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: `${prefix}_http_request_duration_seconds`,
      help: "HTTP request handling time",
      labelNames: ["method", "route"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
}

/**
 * `skiff_redis_up`: whether this component's Redis connection is established
 * right now (RedisHealth.up), read at scrape time. A component started again
 * on the same registry replaces the gauge, so it reads the live connection.
 * The gateway's cluster keeps the lowest of its workers' values.
 */
export function redisUpGauge(registry: Registry, up: () => boolean): void {
  const name = "skiff_redis_up";
  if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
  new Gauge({
    name,
    help: "1 while this component's connection to Redis is established, else 0",
    aggregator: "min",
    registers: [registry],
    collect() {
      this.set(up() ? 1 : 0);
    },
  });
}
