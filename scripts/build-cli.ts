/**
 * Builds the `skiff` CLI bundle: deploy/cli/main.ts and everything the client
 * commands import (commander and yaml included) as one ES module, so that a
 * command starts without resolving hundreds of files or stripping TypeScript.
 * Server commands (api, agent, scaler, up, gateway) stay outside: the bundle
 * imports their modules from source when one of them runs.
 *
 *   npm run build:cli          (bin/skiff.js also rebuilds when a source changed)
 *
 * Writes .cache/cli/skiff.js and .cache/cli/inputs.json (the sources it was
 * built from, which bin/skiff.js compares with the bundle's age).
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const CLI_OUT_DIR = join(ROOT, ".cache", "cli");
export const CLI_BUNDLE = join(CLI_OUT_DIR, "skiff.js");
const ENTRY = join(ROOT, "deploy", "cli", "main.ts");
/** Loaded from source when run: they pull in every server module. */
const SERVER_MODULES = /[\\/]deploy[\\/]cli[\\/]commands[\\/](servers|gateway)\.ts$/;

const serverModulesOutside: Plugin = {
  name: "server-modules-outside",
  setup(b) {
    b.onResolve({ filter: /commands[\\/](servers|gateway)\.ts$/ }, (args) => {
      const abs = resolve(args.resolveDir, args.path);
      if (!SERVER_MODULES.test(abs)) return undefined;
      return { path: relative(CLI_OUT_DIR, abs).split("\\").join("/"), external: true };
    });
  },
};

/**
 * Node built-ins, loaded on first use. An ES import of a built-in makes Node
 * build its ESM facade at once (node:fs, node:process, node:child_process,
 * node:util: 7-12 ms each here), even for modules a command never touches
 * (commander imports child_process for git-style subcommands we do not use).
 * Each becomes a CommonJS shim whose exports are getters that load the
 * module through process.getBuiltinModule when first read.
 */
const lazyBuiltins: Plugin = {
  name: "lazy-builtins",
  setup(b) {
    const require = createRequire(import.meta.url);
    b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, "");
      return builtinModules.includes(name) ? { path: name, namespace: "lazy-builtin" } : undefined;
    });
    b.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => {
      const id = JSON.stringify(`node:${args.path}`);
      // process is a global already; its keys are not known at build time.
      if (args.path === "process") return { loader: "js", contents: "module.exports = process;" };
      const keys = Object.keys(require(`node:${args.path}`) as object);
      const lines = [
        "let m;",
        `const load = () => (m ??= process.getBuiltinModule(${id}));`,
        ...keys.map(
          (k) =>
            `Object.defineProperty(exports, ${JSON.stringify(k)}, { enumerable: true, get: () => load()[${JSON.stringify(k)}] });`,
        ),
      ];
      return { loader: "js", contents: lines.join("\n") };
    });
  },
};

export interface BuiltCli {
  bundle: string;
  bytes: number;
  /** Source files bundled (repository-relative), node_modules excluded. */
  inputs: string[];
  /** npm packages bundled. */
  packages: string[];
}

export async function buildCli(): Promise<BuiltCli> {
  const result = await build({
    entryPoints: [ENTRY],
    outfile: CLI_BUNDLE,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    write: false,
    metafile: true,
    legalComments: "none",
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: "error",
    plugins: [serverModulesOutside, lazyBuiltins],
    // `skiff deploy` loads wrangler from node_modules when it runs: 15 MB, and not bundleable.
    external: ["wrangler"],
    // commander is CommonJS: its require() of node built-ins needs a real require.
    banner: {
      js: 'const require = process.getBuiltinModule("node:module").createRequire(import.meta.url);',
    },
  });
  mkdirSync(CLI_OUT_DIR, { recursive: true });
  const code = result.outputFiles.find((f) => f.path === CLI_BUNDLE);
  if (!code) throw new Error(`esbuild wrote no ${CLI_BUNDLE}`);
  // Sources outside node_modules, plus the lockfile for dependency changes.
  const inputs = Object.keys(result.metafile.inputs)
    .filter((p) => !p.includes("node_modules") && !p.startsWith("lazy-builtin:"))
    .concat("package-lock.json")
    .map((p) => relative(ROOT, resolve(ROOT, p)).split("\\").join("/"));
  // Several CLIs may rebuild at once (a test run): each writes whole files by rename.
  const tmp = `.${process.pid}.tmp`;
  writeFileSync(CLI_BUNDLE + tmp, code.contents);
  renameSync(CLI_BUNDLE + tmp, CLI_BUNDLE);
  const list = join(CLI_OUT_DIR, "inputs.json");
  writeFileSync(list + tmp, `${JSON.stringify(inputs, null, 1)}\n`);
  renameSync(list + tmp, list);
  const packages = new Set(
    Object.keys(result.metafile.inputs)
      .map((p) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p)?.[1])
      .filter((p): p is string => p !== undefined),
  );
  return {
    bundle: CLI_BUNDLE,
    bytes: code.contents.byteLength,
    inputs: inputs.filter((p) => p !== "package-lock.json"),
    packages: [...packages].sort(),
  };
}

if (import.meta.main) {
  const { bundle, bytes, inputs } = await buildCli();
  process.stdout.write(
    `built ${relative(ROOT, bundle)} (${(bytes / 1024).toFixed(0)} KiB from ${inputs.length} sources)\n`,
  );
}
