/** Printing: `-o json|yaml` for machines, aligned tables for people. */
import { UsageError } from "../../src/errors.ts";
import type { Condition, Resource } from "../../src/model/types.ts";

export type OutputFormat = "json" | "yaml" | "table";

export function parseOutput(value: string | undefined): OutputFormat {
  if (value === undefined) return "table";
  if (value === "json" || value === "yaml") return value;
  throw new UsageError(`-o ${value}: use json or yaml`);
}

/** yaml is loaded only when asked for: most commands never print it, and every start counts. */
export async function printObject(
  value: unknown,
  format: "json" | "yaml",
  out = process.stdout,
): Promise<void> {
  if (format === "json") return void out.write(`${JSON.stringify(value, null, 2)}\n`);
  const { stringify } = await import("yaml");
  out.write(stringify(value));
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("   ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** kubectl-style age: 45s, 3m, 2h, 4d. */
export function age(timestamp: string | undefined, now = Date.now()): string {
  if (!timestamp) return "";
  const s = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function condition(obj: Resource, type: string): Condition | undefined {
  return obj.status.conditions?.find((c) => c.type === type);
}

/** kn's CONDITIONS column: "2 OK / 3". */
export function conditionSummary(obj: Resource): string {
  const all = obj.status.conditions ?? [];
  const ok = all.filter((c) => c.status === "True").length;
  return `${ok} OK / ${all.length}`;
}

export function readyCell(obj: Resource): string {
  return condition(obj, "Ready")?.status ?? "Unknown";
}

export function reasonCell(obj: Resource): string {
  const ready = condition(obj, "Ready");
  return ready && ready.status !== "True" ? (ready.reason ?? "") : "";
}
