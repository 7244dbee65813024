#!/usr/bin/env node
// The `skiff` command. Runs the prebuilt CLI bundle (.cache/cli/skiff.js, made
// by scripts/build-cli.ts), rebuilding it first when it is missing or older
// than one of its sources, so a checkout or an edit never runs stale code.
// Plain JavaScript: nothing here needs TypeScript stripped before it starts.
// Built-ins through getBuiltinModule: an ES import of node:fs costs ~10 ms of facade building.
const { readFileSync, statSync } = process.getBuiltinModule("node:fs");
// Reuses V8's compiled code of the bundle across runs.
process.getBuiltinModule("node:module").enableCompileCache?.();

const root = new URL("../", import.meta.url);
const bundle = new URL(".cache/cli/skiff.js", root);

function stale() {
  try {
    const built = statSync(bundle).mtimeMs;
    const inputs = JSON.parse(readFileSync(new URL(".cache/cli/inputs.json", root), "utf8"));
    return inputs.some((file) => {
      try {
        return statSync(new URL(file, root)).mtimeMs > built;
      } catch {
        return true;
      }
    });
  } catch {
    return true;
  }
}

if (stale()) {
  const { buildCli } = await import("../scripts/build-cli.ts");
  await buildCli();
}
const { main } = await import(bundle.href);
const code = await main();
// Servers keep running; client commands exit with their status.
if (code !== 0) process.exit(code);
