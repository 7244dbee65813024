/**
 * `npm run bench [-- NAME...]`: run the benchmarks one after another, each in
 * its own process (they measure timings, so never two at once). Without names,
 * all of them; a name is a file in bench/ without `.ts` (e.g. `store`).
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL(".", import.meta.url));
/** Files in bench/ that are helpers, not benchmarks. */
const HELPERS = new Set([
  "run.ts",
  "stats.ts",
  "floor-proxy.ts",
  "skiff-up.ts",
  "static-workerd.ts",
]);
const all = readdirSync(dir)
  .filter((f) => f.endsWith(".ts") && !HELPERS.has(f))
  .map((f) => f.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !all.includes(name));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark ${unknown.join(", ")}; choose from: ${all.join(", ")}\n`);
  process.exit(2);
}
for (const name of wanted.length > 0 ? wanted : all) {
  process.stdout.write(`\n== bench/${name}.ts\n`);
  const r = spawnSync(process.execPath, [`${dir}${name}.ts`], { stdio: "inherit" });
  if (r.status !== 0) {
    process.stderr.write(`bench/${name}.ts failed (exit ${r.status ?? r.signal})\n`);
    process.exit(1);
  }
}
