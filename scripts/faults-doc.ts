/**
 * Render docs/reliability.md's results table from the counts the fault suite
 * measured (test/faults, written to .cache/faults/results.json). Only the
 * part between the BEGIN/END markers is replaced; the rest of the page is
 * prose kept by hand.
 *
 *   npm run faults:doc     # runs the suite (30 s Redis outage), then this
 *   node scripts/faults-doc.ts [results.json] [reliability.md]
 */
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

interface Row {
  id: string;
  scenario: string;
  sent: number;
  succeeded: number;
  failed: number;
  recoveryMs?: number;
  recovered: string;
  notes: string;
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const resultsFile = process.argv[2] ?? join(root, ".cache/faults/results.json");
const docFile = process.argv[3] ?? join(root, "docs/reliability.md");
const BEGIN = "<!-- BEGIN fault results (scripts/faults-doc.ts) -->";
const END = "<!-- END fault results -->";
/** The suite's order; rows of scenarios not listed here go last. */
const ORDER = [
  "agent-sigkill",
  "gateway-sigkill",
  "scaler-sigkill",
  "redis-restart",
  "redis-outage",
  "sentinel-failover",
  "rollout",
  "traffic-shift",
  "scale-down",
  "isolate-recycle",
];

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");

export function renderTable(rows: Row[], at: string): string {
  const rank = (id: string) => {
    const i = ORDER.indexOf(id);
    return i < 0 ? ORDER.length : i;
  };
  const sorted = [...rows].sort((a, b) => rank(a.id) - rank(b.id));
  const lines = [
    `Measured ${at} by \`npm run faults:doc\` (test/faults/faults.test.ts).`,
    "",
    "| scenario | requests sent | failed | recovery | recovered = | notes |",
    "| --- | ---: | ---: | ---: | --- | --- |",
    ...sorted.map((r) =>
      [
        "",
        cell(r.scenario),
        String(r.sent),
        String(r.failed),
        r.recoveryMs === undefined ? "-" : `${(r.recoveryMs / 1000).toFixed(1)} s`,
        cell(r.recovered),
        cell(r.notes),
        "",
      ]
        .join(" | ")
        .trim(),
    ),
  ];
  return lines.join("\n");
}

async function main(): Promise<void> {
  let data: { at: string; results: Row[] };
  try {
    data = JSON.parse(await readFile(resultsFile, "utf8"));
  } catch (err) {
    throw new Error(
      `no fault results at ${resultsFile} (${(err as Error).message}): run the suite first, npx vitest run test/faults`,
    );
  }
  const doc = await readFile(docFile, "utf8");
  const from = doc.indexOf(BEGIN);
  const to = doc.indexOf(END);
  if (from < 0 || to < from) {
    throw new Error(`${docFile} has no "${BEGIN}" ... "${END}" section to replace`);
  }
  const table = renderTable(data.results, data.at);
  const next = `${doc.slice(0, from + BEGIN.length)}\n\n${table}\n\n${doc.slice(to)}`;
  await writeFile(docFile, next);
  process.stdout.write(`${docFile}: ${data.results.length} scenario(s) from ${resultsFile}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}
