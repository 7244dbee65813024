/**
 * The consolidated figure table at the top of BENCHMARKS.md: every row of
 * every benchmark's figures block (`<!-- figures:NAME:start -->`), with the
 * benchmark it comes from, so one table answers "which goals are met". Each
 * row keeps the date of its own block's run.
 */
import { readFile } from "node:fs/promises";
import { FIGURE_TABLE_HEADER, writeBenchmarkBlock } from "./stats.ts";

const BLOCK = /<!-- figures:([a-z0-9-]+):start -->([\s\S]*?)<!-- figures:\1:end -->/g;
const HEADER = FIGURE_TABLE_HEADER.split("\n");

/** Rows ("| ... |" lines) of the figure tables in each block but the summary's own. */
export function figureRows(markdown: string): { bench: string; row: string; date?: string }[] {
  const out: { bench: string; row: string; date?: string }[] = [];
  for (const [, name, body] of markdown.matchAll(BLOCK)) {
    if (name === "summary" || body === undefined) continue;
    const date = /\b(20\d\d-\d\d-\d\d)\b/.exec(body)?.[1];
    for (const line of body.split("\n")) {
      if (!line.startsWith("| ") || HEADER.includes(line)) continue;
      out.push({ bench: name as string, row: line, ...(date ? { date } : {}) });
    }
  }
  return out;
}

/** Rewrite the summary block of `benchmarksMd` from the other blocks. */
export async function writeFigureSummary(benchmarksMd: string): Promise<void> {
  const rows = figureRows(await readFile(benchmarksMd, "utf8"));
  const table = [
    "| benchmark (run) | figure | baseline | Skiff | ratio | goal | met | trials |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r.bench}${r.date ? ` (${r.date})` : ""} ${r.row}`),
  ].join("\n");
  const met = rows.filter((r) => /\| yes( \(|\s*\|)/.test(r.row)).length;
  const goals = rows.filter((r) => /\| (yes|\*\*no\*\*)/.test(r.row)).length;
  await writeBenchmarkBlock(
    benchmarksMd,
    "summary",
    `### All figures (collected from the blocks below by \`npm run bench\`)

${met} of ${goals} goals met. Each row is its benchmark's last run (the date in the first column); the
blocks below say how each was measured and what limits the goals not met.

${table}`,
  );
}
