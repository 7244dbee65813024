/** Reading one series of a prom-client registry in tests. */
import type { Registry } from "prom-client";

/**
 * The value of the series of `name` whose labels are exactly `labels` (none:
 * the unlabelled series); 0 while that series has no value yet. Throws when
 * the registry has no such metric, as `getSingleMetricAsString` does.
 */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name} in the registry`);
  const wanted = Object.entries(labels);
  const series = (await metric.get()).values.find(
    (v) =>
      Object.keys(v.labels).length === wanted.length &&
      wanted.every(([k, x]) => String(v.labels[k]) === x),
  );
  return series?.value ?? 0;
}
