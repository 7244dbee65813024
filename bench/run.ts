/**
 * `npm run bench [-- NAME... | --all]`: run benchmarks one after another, each
 * in its own process (they measure timings, so never two at once), then
 * rewrite the consolidated figure table of BENCHMARKS.md (bench/summary.ts).
 *
 * Without arguments: issue 12's figures, each with shortened trials so the
 * whole run stays near 10 minutes on a 2-core machine (the `QUICK` list:
 * gateway capacity, from zero and the KPA step, the CLI, container cold
 * start, isolate request cost). `--all`: every benchmark with its own
 * defaults. A name is a file in bench/ without `.ts` (e.g. `store`), run with
 * its own defaults.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFigureSummary } from "./summary.ts";

const dir = fileURLToPath(new URL(".", import.meta.url));
/** Files in bench/ that are helpers, not benchmarks. */
const HELPERS = new Set([
  "run.ts",
  "stats.ts",
  "summary.ts",
  "floor-proxy.ts",
  "skiff-up.ts",
  "static-workerd.ts",
  "first-response.ts",
  "docker-runs.ts",
]);
/** The default run: each figure benchmark with trials that keep the whole near 10 minutes. */
const QUICK: [string, string[]][] = [
  ["gateway-capacity", ["--duration", "3", "--trials", "2"]],
  ["zero-burst", ["--duration", "5", "--trials", "1"]],
  ["cli", ["--n", "10", "--deploys", "5"]],
  ["container-cold-start", ["--n", "5"]],
  ["isolate-request-cost", ["--seconds", "3", "--trials", "1"]],
];
const all = readdirSync(dir)
  .filter((f) => f.endsWith(".ts") && !HELPERS.has(f))
  .map((f) => f.slice(0, -3))
  .sort();
const args = process.argv.slice(2);
const names = args.filter((a) => a !== "--all");
const unknown = names.filter((name) => !all.includes(name));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark ${unknown.join(", ")}; choose from: ${all.join(", ")}\n`);
  process.exit(2);
}
const runs: [string, string[]][] =
  names.length > 0
    ? names.map((n) => [n, []])
    : args.includes("--all")
      ? all.map((n) => [n, []])
      : QUICK;
const started = performance.now();
for (const [name, flags] of runs) {
  process.stdout.write(`\n== bench/${name}.ts ${flags.join(" ")}\n`);
  const r = spawnSync(process.execPath, [`${dir}${name}.ts`, ...flags], { stdio: "inherit" });
  if (r.status !== 0) {
    process.stderr.write(`bench/${name}.ts failed (exit ${r.status ?? r.signal})\n`);
    process.exit(1);
  }
}
await writeFigureSummary(join(dir, "..", "BENCHMARKS.md"));
process.stdout.write(
  `\nbenchmarks done in ${Math.round((performance.now() - started) / 1000)} s; BENCHMARKS.md's summary rewritten\n`,
);
