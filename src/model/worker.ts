/**
 * Compiles a worker template into the one ES module the isolate runtime
 * loads: TypeScript stripped, the user's modules bundled, and wrapped so that
 * both `export default { fetch }` and `Deno.serve(handler)` modules work (see
 * worker-prelude.ts for how). The only I/O is esbuild's own process; the
 * sources never touch the file system.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { build, type Message, type Plugin } from "esbuild";
import { type Cause, ValidationError } from "../errors.ts";
import { child, item } from "./fields.ts";
import { MIB } from "./limits.ts";
import type { WorkerSpec } from "./types.ts";
import {
  entrySource,
  PRELUDE_SOURCE,
  PRELUDE_SPECIFIER,
  USER_SPECIFIER_PREFIX,
} from "./worker-prelude.ts";
import {
  inlineModuleName,
  MODULE_EXTENSIONS,
  sourceSizeProblem,
  validateWorkerShape,
} from "./worker-shape.ts";

export { validateWorkerShape } from "./worker-shape.ts";

export interface CompileOptions {
  /** Total UTF-8 bytes of all sources (default 1 MiB). */
  maxSourceBytes?: number;
  /** The worker's path in the submitted object, for error causes. */
  fieldPrefix?: string;
}

export interface CompiledWorker {
  /** One ES module whose default export is `{ fetch(request, env, ctx) }`. */
  code: string;
  /** sha256 hex of `code`. */
  sha256: string;
  /** UTF-8 bytes of `code`. */
  bytes: number;
}

const USER_NS = "worker";
const INTERNAL_NS = "skiff";
const MAX_CAUSES = 20;

const LOADERS = {
  ".js": "js",
  ".mjs": "js",
  ".ts": "ts",
  ".mts": "ts",
  ".json": "json",
} as const satisfies Record<(typeof MODULE_EXTENSIONS)[number], string>;

function loaderFor(name: string): "js" | "ts" | "json" {
  const ext = posix.extname(name) as keyof typeof LOADERS;
  return LOADERS[ext] ?? "js";
}

const FORBIDDEN_IMPORT =
  'workers can only import their own modules (relative paths such as "./util.ts") and node:* built-ins; ' +
  "bundle npm:, jsr:, URL and package dependencies into your modules first";

/** Resolves `spec` imported from module `from` against the given module names. */
function resolveRelative(
  spec: string,
  from: string,
  names: ReadonlySet<string>,
): { path: string } | { error: string } {
  const joined = posix.normalize(posix.join(posix.dirname(from), spec));
  if (joined.startsWith("../") || joined === "..") {
    return { error: `import "${spec}" in ${from} points outside the worker's modules` };
  }
  const candidates = [joined];
  // TypeScript's ESM convention imports "./x.js" for x.ts.
  if (joined.endsWith(".js")) candidates.push(`${joined.slice(0, -3)}.ts`);
  for (const ext of MODULE_EXTENSIONS) candidates.push(joined + ext, `${joined}/index${ext}`);
  const found = candidates.find((c) => names.has(c));
  if (found !== undefined) return { path: found };
  const have = [...names].map((n) => `"${n}"`).join(", ");
  return {
    error: `import "${spec}" in ${from}: no module named "${joined}" (the modules are ${have})`,
  };
}

function memoryPlugin(modules: ReadonlyMap<string, string>, main: string): Plugin {
  const names = new Set(modules.keys());
  return {
    name: "skiff-worker-modules",
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === "entry-point") return { path: "entry", namespace: INTERNAL_NS };
        if (args.namespace === INTERNAL_NS) {
          if (args.path === PRELUDE_SPECIFIER) return { path: "prelude", namespace: INTERNAL_NS };
          if (args.path.startsWith(USER_SPECIFIER_PREFIX)) {
            return { path: args.path.slice(USER_SPECIFIER_PREFIX.length), namespace: USER_NS };
          }
        }
        if (args.path.startsWith("node:")) return { path: args.path, external: true };
        if (
          args.namespace === USER_NS &&
          (args.path.startsWith("./") || args.path.startsWith("../"))
        ) {
          const r = resolveRelative(args.path, args.importer, names);
          if ("error" in r) return { errors: [{ text: r.error }] };
          return { path: r.path, namespace: USER_NS };
        }
        return { errors: [{ text: `import "${args.path}": ${FORBIDDEN_IMPORT}` }] };
      });
      b.onLoad({ filter: /.*/, namespace: INTERNAL_NS }, (args) => ({
        contents: args.path === "prelude" ? PRELUDE_SOURCE : entrySource(main),
        loader: "js",
      }));
      b.onLoad({ filter: /.*/, namespace: USER_NS }, (args) => ({
        contents: modules.get(args.path) ?? "",
        loader: loaderFor(args.path),
      }));
    },
  };
}

function isBuildFailure(err: unknown): err is { errors: Message[] } {
  return (
    typeof err === "object" && err !== null && Array.isArray((err as { errors?: unknown }).errors)
  );
}

/** esbuild messages -> causes naming the module's source field and `module:line:col`. */
function toCauses(
  messages: readonly Message[],
  fieldOf: (module: string) => string,
  prefix: string,
): Cause[] {
  return messages.slice(0, MAX_CAUSES).map((m) => {
    const loc = m.location;
    if (loc === null) return { field: prefix, message: m.text, reason: "FieldValueInvalid" };
    const module = loc.file.startsWith(`${USER_NS}:`)
      ? loc.file.slice(USER_NS.length + 1)
      : loc.file;
    return {
      field: fieldOf(module),
      message: `${module}:${loc.line}:${loc.column + 1}: ${m.text}`,
      reason: "FieldValueInvalid",
    };
  });
}

/**
 * Bundles a worker into one ES module (esm, browser-like neutral platform,
 * es2022, not minified, names kept). Throws ValidationError for a bad shape,
 * too-large sources, syntax/TypeScript errors (with module:line:col) and
 * imports other than the worker's own modules and node:* built-ins.
 * TypeScript types are stripped, not checked (like `deno run`).
 */
export async function compileWorker(
  worker: WorkerSpec,
  opts: CompileOptions = {},
): Promise<CompiledWorker> {
  const prefix = opts.fieldPrefix ?? "spec.template.spec.worker";
  const maxSourceBytes = opts.maxSourceBytes ?? MIB;
  const shape = validateWorkerShape(worker, {
    fieldPrefix: prefix,
    limits: { maxWorkerSourceBytes: Math.max(maxSourceBytes, 1) },
  });
  if (shape.worker === undefined) throw ValidationError.of(shape.causes);
  const spec = shape.worker;

  const modules = new Map<string, string>();
  let main: string;
  let fieldOf: (module: string) => string;
  if (spec.source !== undefined) {
    main = inlineModuleName(spec);
    modules.set(main, spec.source);
    fieldOf = () => child(prefix, "source");
  } else {
    const list = spec.modules ?? [];
    for (const m of list) modules.set(m.name, m.source);
    main = spec.main ?? list[0]?.name ?? "";
    fieldOf = (module) => {
      const i = list.findIndex((m) => m.name === module);
      return i < 0 ? child(prefix, "modules") : child(item(child(prefix, "modules"), i), "source");
    };
  }
  // validateWorkerShape already checks this; kept here so the limit is explicit at the compile boundary.
  const total = [...modules.values()].reduce((n, s) => n + Buffer.byteLength(s, "utf8"), 0);
  const tooBig = sourceSizeProblem(total, maxSourceBytes);
  if (tooBig !== undefined) {
    throw ValidationError.of([
      {
        field: spec.source !== undefined ? child(prefix, "source") : child(prefix, "modules"),
        message: tooBig,
        reason: "FieldValueTooLong",
      },
    ]);
  }

  let code: string;
  try {
    const result = await build({
      entryPoints: ["skiff-worker-entry"],
      bundle: true,
      write: false,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      minify: false,
      keepNames: true,
      treeShaking: true,
      charset: "utf8",
      logLevel: "silent",
      tsconfigRaw: {},
      banner: { js: `// Skiff worker bundle (entry: ${main})` },
      plugins: [memoryPlugin(modules, main)],
    });
    code = result.outputFiles[0]?.text ?? "";
  } catch (err) {
    if (isBuildFailure(err)) throw ValidationError.of(toCauses(err.errors, fieldOf, prefix));
    throw err;
  }
  return {
    code,
    sha256: createHash("sha256").update(code).digest("hex"),
    bytes: Buffer.byteLength(code, "utf8"),
  };
}
