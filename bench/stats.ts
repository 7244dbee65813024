/** Sample statistics shared by the benchmarks (nearest-rank quantiles). */

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  min: number;
  max: number;
}

/** The nearest-rank q-quantile (0 < q <= 1); NaN for no samples. */
export function quantile(samples: number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? Number.NaN;
}

export function summarize(samples: number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    min: s[0] ?? Number.NaN,
    max: s.at(-1) ?? Number.NaN,
  };
}

/**
 * One row of the figures table in BENCHMARKS.md (issue 12's format): a figure
 * measured beside its baseline in the same run. A goal not met stays, with
 * what limits it in `limit`.
 */
export interface FigureRow {
  figure: string;
  baseline: string;
  skiff: string;
  /** Skiff / baseline, or whatever ratio the goal is stated in. */
  ratio: string;
  goal: string;
  /** "context": a row with no goal of its own (shown as "-" and its note). */
  met: boolean | "context";
  /** What keeps the figure from its goal (shown when not met), or a note. */
  limit?: string;
  trials: number | string;
}

export const FIGURE_TABLE_HEADER =
  "| figure | baseline | Skiff | ratio | goal | met | trials |\n| --- | --- | --- | --- | --- | --- | --- |";

export function figureTable(rows: readonly FigureRow[]): string {
  const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const lines = rows.map((r) => {
    const met = r.met ? "yes" : `**no**${r.limit ? `: ${r.limit}` : ""}`;
    const metCell =
      r.met === "context"
        ? `-${r.limit ? ` (${r.limit})` : ""}`
        : r.met && r.limit
          ? `yes (${r.limit})`
          : met;
    return `| ${[r.figure, r.baseline, r.skiff, r.ratio, r.goal, metCell, String(r.trials)].map(cell).join(" | ")} |`;
  });
  return [FIGURE_TABLE_HEADER, ...lines].join("\n");
}

/**
 * Replace the block between `<!-- figures:NAME:start -->` and
 * `<!-- figures:NAME:end -->` in BENCHMARKS.md with `body` (a figure table and
 * its notes), so each benchmark rewrites only its own rows. A missing block is
 * appended at the end of the file.
 */
export async function writeBenchmarkBlock(
  benchmarksMd: string,
  name: string,
  body: string,
): Promise<void> {
  const { readFile, writeFile } = await import("node:fs/promises");
  const start = `<!-- figures:${name}:start -->`;
  const end = `<!-- figures:${name}:end -->`;
  const text = await readFile(benchmarksMd, "utf8");
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  const next =
    i >= 0 && j > i
      ? text.slice(0, i) + block + text.slice(j + end.length)
      : `${text.trimEnd()}\n\n${block}\n`;
  await writeFile(benchmarksMd, next);
}
