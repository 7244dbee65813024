/**
 * `skiff deploy` for a Workers project: wrangler itself reads the project's
 * wrangler.toml / wrangler.jsonc / wrangler.json and bundles it
 * (`wrangler deploy --dry-run --outdir`, nothing uploaded), and its name,
 * main, vars, compatibility_date and compatibility_flags become a worker
 * revision. Keys Skiff cannot honour (bindings, routes, triggers, ...) stop
 * the deploy with their names, before anything is built.
 *
 * wrangler runs with its banner, update check and telemetry off (a fresh
 * update-check cache in a private TMPDIR: it never asks npm), so a deploy
 * sends nothing anywhere but to the Skiff API.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { UsageError } from "../../src/errors.ts";
import type { EnvVar, WorkerSpec } from "../../src/model/types.ts";

const run = promisify(execFile);

export const CONFIG_FILES = ["wrangler.jsonc", "wrangler.json", "wrangler.toml"] as const;

/** Keys that shape the bundle or only concern Cloudflare's account: read by wrangler, no effect here. */
const IGNORED_KEYS = new Set([
  "$schema",
  "account_id",
  "workers_dev",
  "preview_urls",
  "send_metrics",
  "observability",
  "upload_source_maps",
  "build",
  "rules",
  "find_additional_modules",
  "base_dir",
  "preserve_file_names",
  "no_bundle",
  "minify",
  "keep_names",
  "tsconfig",
  "define",
  "alias",
  "jsx_factory",
  "jsx_fragment",
]);
/** What Skiff maps onto the worker revision. */
const MAPPED_KEYS = new Set(["name", "main", "vars", "compatibility_date", "compatibility_flags"]);

export interface WorkersProject {
  configPath: string;
  name: string;
  worker: WorkerSpec;
}

/** The Workers config in `dir`, or undefined when there is none. */
export function findWranglerConfig(dir: string): string | undefined {
  for (const file of CONFIG_FILES) {
    const path = join(dir, file);
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Raw keys of the config that Skiff cannot honour (pure). */
export function unsupportedKeys(raw: Record<string, unknown>): string[] {
  return Object.keys(raw).filter((k) => !MAPPED_KEYS.has(k) && !IGNORED_KEYS.has(k));
}

function wranglerBin(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("wrangler/package.json")), "bin", "wrangler.js");
}

/** Read, check and bundle the project with wrangler; the worker spec to deploy. */
export async function buildWorkersProject(configPath: string): Promise<WorkersProject> {
  const path = resolve(configPath);
  // wrangler's own reader (TOML, JSONC, JSON), loaded only for this command: it is large.
  const wrangler = await import("wrangler");
  const { rawConfig } = wrangler.experimental_readRawConfig({ config: path });
  const raw = rawConfig as Record<string, unknown>;
  const unsupported = unsupportedKeys(raw);
  if (unsupported.length > 0) {
    throw new UsageError(
      `${basename(path)}: Skiff cannot honour ${unsupported.map((k) => `"${k}"`).join(", ")}; a worker revision takes name, main, vars, compatibility_date and compatibility_flags (remove the others, or deploy them to Cloudflare)`,
    );
  }
  const config = wrangler.unstable_readConfig({ config: path }, { hideWarnings: true });
  if (!config.name) throw new UsageError(`${basename(path)}: give the worker a "name"`);
  if (!config.main) throw new UsageError(`${basename(path)}: give the entry module as "main"`);
  const env: EnvVar[] = [];
  for (const [name, value] of Object.entries(config.vars ?? {})) {
    if (typeof value !== "string") {
      throw new UsageError(
        `${basename(path)}: vars.${name} is not a string; Skiff passes vars as environment strings`,
      );
    }
    env.push({ name, value });
  }

  const scratch = join(dirname(path), ".wrangler");
  const hadScratch = existsSync(scratch);
  const work = await mkdtemp(join(tmpdir(), "skiff-wrangler-"));
  try {
    const out = join(work, "out");
    const home = join(work, "home");
    const tmp = join(work, "tmp");
    const version = (
      JSON.parse(await readFile(join(dirname(wranglerBin()), "..", "package.json"), "utf8")) as {
        version: string;
      }
    ).version;
    await mkdir(join(tmp, "update-check"), { recursive: true });
    await mkdir(home, { recursive: true });
    const cache = JSON.stringify({ latest: version, lastUpdate: Date.now() });
    await writeFile(join(tmp, "update-check", "wrangler-latest.json"), cache);
    await writeFile(join(tmp, "update-check", "wrangler-beta.json"), cache);
    try {
      await run(
        process.execPath,
        [wranglerBin(), "deploy", "--dry-run", "--outdir", out, "--config", path],
        {
          cwd: dirname(path),
          env: {
            PATH: process.env.PATH ?? "",
            HOME: home,
            TMPDIR: tmp,
            XDG_CONFIG_HOME: join(home, ".config"),
            WRANGLER_HIDE_BANNER: "true",
            WRANGLER_SEND_METRICS: "false",
            NO_COLOR: "1",
            CI: "1",
          },
          maxBuffer: 8 * 1024 * 1024,
          timeout: 120_000,
        },
      );
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      const why = (e.stderr || e.stdout || e.message).trim().split("\n").slice(-15).join("\n");
      throw new UsageError(`wrangler could not build ${basename(path)}:\n${why}`);
    }
    const files = (await readdir(out)).filter((f) => /\.(m?js)$/.test(f));
    const mainOut = `${basename(config.main, extname(config.main))}.js`;
    const entry = files.includes(mainOut) ? mainOut : files.length === 1 ? files[0] : undefined;
    if (!entry) throw new UsageError(`wrangler's bundle of ${basename(path)} has no entry module`);
    const modules = await Promise.all(
      files.map(async (f) => ({ name: f, source: await readFile(join(out, f), "utf8") })),
    );
    const worker: WorkerSpec = { modules, main: entry };
    if (env.length) worker.env = env;
    if (config.compatibility_date) worker.compatibilityDate = config.compatibility_date;
    if (config.compatibility_flags.length) worker.compatibilityFlags = config.compatibility_flags;
    return { configPath: path, name: config.name, worker };
  } finally {
    await rm(work, { recursive: true, force: true });
    // wrangler leaves its scratch folder in the project: gone again unless it was there before.
    await rm(hadScratch ? join(scratch, "tmp") : scratch, { recursive: true, force: true });
  }
}
