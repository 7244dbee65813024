/**
 * The report of a gateway-capacity run: how a figure is judged against its
 * goal when the trials disagree, how numbers are printed, and the figure
 * table written to BENCHMARKS.md (block "gateway").
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { join } from "node:path";
import { type FigureRow, figureTable, writeBenchmarkBlock } from "../stats.ts";
import { PINNED, ROOT } from "./processes.ts";

/** `n` with `d` decimals, or "n/a" when the measurement failed. */
export const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

/**
 * Trials whose slowest and fastest differ by more than this say the machine
 * was busy with other work: the figure is reported, but not as a goal met.
 */
const MAX_SPREAD = 1.5;
const noisy = (...series: number[][]) =>
  series.some((xs) => xs.length > 1 && Math.max(...xs) / Math.min(...xs) > MAX_SPREAD);

/** A row's "met": only when the goal holds and the trials agree. */
export function verdict(
  ok: boolean,
  limit: string | undefined,
  ...series: number[][]
): Pick<FigureRow, "met" | "limit"> {
  if (ok && noisy(...series)) {
    return {
      met: false,
      limit: `not counted: the trials spread by more than ${MAX_SPREAD}x (other load on the machine); rerun on a quiet host`,
    };
  }
  if (!ok && noisy(...series)) {
    return {
      met: false,
      limit: `the trials spread by more than ${MAX_SPREAD}x (other load on the machine), so this run cannot tell; otherwise: ${limit}`,
    };
  }
  return { met: ok, limit: ok ? undefined : limit };
}

/** The spread of a figure's trials, for the table: "min-max". */
export const spread = (xs: number[], d = 0) => `${f(Math.min(...xs), d)}-${f(Math.max(...xs), d)}`;

function version(cmd: string, flag: string): string {
  const r = spawnSync(cmd, [flag], { encoding: "utf8" });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.split("\n")[0]?.trim() ?? cmd;
}

/** Prints the table and, when `write`, puts it into BENCHMARKS.md with the machine it ran on. */
export async function report(
  rows: FigureRow[],
  notes: string[],
  run: { started: Date; load: string | undefined; write: boolean },
): Promise<void> {
  const machine = `${run.started.toISOString().slice(0, 16)}Z, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Node ${process.versions.node}, ${version("nginx", "-v")}, ${version("wrk", "-v")}, load average at start ${run.load}${PINNED ? "" : "; fewer than 2 cores, nothing pinned"}`;
  const table = figureTable(rows);
  console.log(`\n${machine}\n\n${table}\n${notes.join("\n")}`);
  if (!run.write) return;
  await writeBenchmarkBlock(
    join(ROOT, "BENCHMARKS.md"),
    "gateway",
    `Last run of \`node bench/gateway-capacity.ts\` (${machine}):\n\n${table}\n\n${notes.join("\n\n")}`,
  );
  console.log("BENCHMARKS.md updated (block figures:gateway)");
}
