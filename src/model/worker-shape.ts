/**
 * The synchronous checks of a `worker` template (Skiff's extension next to
 * `containers`): shape, module names, env, network, dates and source size.
 * Compiling (which finds syntax errors) is worker.ts's job and is async.
 */
import { Buffer } from "node:buffer";
import type { Cause } from "../errors.ts";
import { readEnv } from "./env.ts";
import {
  child,
  Issues,
  item,
  readArray,
  readObject,
  readString,
  readStringList,
} from "./fields.ts";
import { type ModelLimits, type ModelLimitsInput, resolveLimits } from "./limits.ts";
import { readResources } from "./resources.ts";
import type { WorkerModule, WorkerSpec } from "./types.ts";

export const WORKER_FIELDS = [
  "source",
  "language",
  "modules",
  "main",
  "env",
  "network",
  "compatibilityDate",
  "compatibilityFlags",
  "resources",
] as const;

/** Extensions a worker module may have (esbuild loader by extension). */
export const MODULE_EXTENSIONS = [".js", ".mjs", ".ts", ".mts", ".json"] as const;

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const FLAG = /^[a-z0-9_]+$/;

/** Name of the single module made from inline `source`. */
export function inlineModuleName(worker: Pick<WorkerSpec, "language">): string {
  return worker.language === "typescript" ? "main.ts" : "main.js";
}

/** The problem with a module name, if any: relative, no `.`/`..` segments, known extension. */
export function checkModuleName(name: string): string | undefined {
  if (name === "") return "must not be empty";
  if (name.startsWith("/")) return `"${name}" must be a relative path (e.g. "lib/util.ts")`;
  if (name.startsWith("./")) return `write "${name.slice(2)}" without the leading "./"`;
  if (name.includes("\\")) return `"${name}" must use "/" as the path separator`;
  for (const seg of name.split("/")) {
    if (seg === "..") return `"${name}" must not contain ".." (modules live in one tree)`;
    if (!SEGMENT.test(seg)) {
      return `"${name}" has an invalid path segment "${seg}"; use letters, digits, '_', '-' and '.'`;
    }
  }
  if (!MODULE_EXTENSIONS.some((ext) => name.endsWith(ext))) {
    return `"${name}" must end with one of ${MODULE_EXTENSIONS.join(", ")}`;
  }
  return undefined;
}

function checkDate(text: string): string | undefined {
  const m = DATE.exec(text);
  const bad = `must be a date as YYYY-MM-DD, e.g. "2025-01-01" (got "${text}")`;
  if (!m) return bad;
  const d = new Date(`${text}T00:00:00Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== text) return bad;
  return undefined;
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/** Problem with the total source size, if over the limit. */
export function sourceSizeProblem(bytes: number, limit: number): string | undefined {
  if (bytes <= limit) return undefined;
  return (
    `the worker's source is ${bytes} bytes, over the limit of ${limit} bytes` +
    (limit >= 1024 ? ` (${formatBytes(limit)}); ` : "; ") +
    "make it smaller or run it as a container"
  );
}

/** Internal reader used by the template parser. */
export function readWorker(
  value: unknown,
  field: string,
  issues: Issues,
  limits: ModelLimits,
): WorkerSpec | undefined {
  const obj = readObject(value, field, issues, { known: WORKER_FIELDS });
  if (obj === undefined) return undefined;
  const before = issues.count;
  const out: WorkerSpec = {};
  const hasSource = obj.source !== undefined && obj.source !== null;
  const hasModules = obj.modules !== undefined && obj.modules !== null;

  if (hasSource === hasModules) {
    issues.add(
      field,
      hasSource
        ? 'set either "source" (one module) or "modules" + "main", not both'
        : 'set "source" (one inline module) or "modules" (several modules with "main" naming the entry)',
      hasSource ? "FieldValueForbidden" : "FieldValueRequired",
    );
  }

  let totalBytes = 0;
  let sizeField = field;
  if (hasSource) {
    const source = readString(obj.source, child(field, "source"), issues, { nonEmpty: true });
    if (source !== undefined) {
      out.source = source;
      totalBytes = Buffer.byteLength(source, "utf8");
      sizeField = child(field, "source");
    }
    const language = readString(obj.language, child(field, "language"), issues);
    if (language !== undefined) {
      if (language === "javascript" || language === "typescript") out.language = language;
      else {
        issues.add(
          child(field, "language"),
          `must be "javascript" or "typescript" (got "${language}")`,
          "FieldValueNotSupported",
        );
      }
    }
    if (obj.main !== undefined && obj.main !== null) {
      issues.add(
        child(field, "main"),
        'only used with "modules"; remove it',
        "FieldValueForbidden",
      );
    }
  } else {
    if (obj.language !== undefined && obj.language !== null) {
      issues.add(
        child(field, "language"),
        'only used with "source"; with "modules" the language follows each name (.ts or .js)',
        "FieldValueForbidden",
      );
    }
  }

  if (hasModules) {
    const modsField = child(field, "modules");
    sizeField = modsField;
    const list = readArray(obj.modules, modsField, issues, { maxItems: limits.maxWorkerModules });
    if (list !== undefined && list.length === 0) {
      issues.add(modsField, "must list at least one module", "FieldValueRequired");
    }
    const modules: WorkerModule[] = [];
    const seen = new Map<string, number>();
    list?.forEach((raw, i) => {
      const at = item(modsField, i);
      const m = readObject(raw, at, issues, { known: ["name", "source"] }, { required: true });
      if (m === undefined) return;
      const name = readString(m.name, child(at, "name"), issues, { required: true });
      const source = readString(m.source, child(at, "source"), issues, { required: true });
      if (name !== undefined) {
        const bad = checkModuleName(name);
        if (bad !== undefined) issues.add(child(at, "name"), bad);
        else if (seen.has(name)) {
          issues.add(
            child(at, "name"),
            `duplicate module name "${name}" (also at ${item(modsField, seen.get(name)!)})`,
            "FieldValueDuplicate",
          );
        } else seen.set(name, i);
      }
      if (source !== undefined) totalBytes += Buffer.byteLength(source, "utf8");
      if (name !== undefined && source !== undefined) modules.push({ name, source });
    });
    out.modules = modules;

    const mainField = child(field, "main");
    const main = readString(obj.main, mainField, issues);
    if (main !== undefined) {
      if (!seen.has(main)) {
        issues.add(
          mainField,
          `"${main}" is not one of the modules (${[...seen.keys()].map((n) => `"${n}"`).join(", ") || "none"})`,
        );
      }
      out.main = main;
    } else if (modules.length === 1) {
      out.main = modules[0]!.name;
    } else if (modules.length > 1) {
      issues.add(
        mainField,
        "required when there are several modules: name the entry module",
        "FieldValueRequired",
      );
    }
  }

  const tooBig = sourceSizeProblem(totalBytes, limits.maxWorkerSourceBytes);
  if (tooBig !== undefined) issues.add(sizeField, tooBig, "FieldValueTooLong");

  const env = readEnv(obj.env, child(field, "env"), issues, limits.maxEnvVars);
  if (env !== undefined) out.env = env;

  const network = readString(obj.network, child(field, "network"), issues);
  if (network !== undefined) {
    if (network === "none" || network === "internet") out.network = network;
    else {
      issues.add(
        child(field, "network"),
        `must be "none" (no outbound fetch, the default) or "internet" (got "${network}")`,
        "FieldValueNotSupported",
      );
    }
  }

  const date = readString(obj.compatibilityDate, child(field, "compatibilityDate"), issues);
  if (date !== undefined) {
    const bad = checkDate(date);
    if (bad !== undefined) issues.add(child(field, "compatibilityDate"), bad);
    else out.compatibilityDate = date;
  }

  const flagsField = child(field, "compatibilityFlags");
  const flags = readStringList(obj.compatibilityFlags, flagsField, issues, { maxItems: 64 });
  if (flags !== undefined) {
    flags.forEach((f, i) => {
      if (!FLAG.test(f)) {
        issues.add(
          item(flagsField, i),
          `"${f}" is not a workerd compatibility flag (e.g. "nodejs_compat")`,
        );
      }
    });
    out.compatibilityFlags = flags;
  }

  const resources = readResources(obj.resources, child(field, "resources"), issues, {
    requests: false,
  });
  if (resources !== undefined) out.resources = resources;

  return issues.count === before ? out : undefined;
}

/**
 * Checks a worker spec without compiling it. `fieldPrefix` is the worker's
 * path in the submitted object (default `spec.template.spec.worker`).
 */
export function validateWorkerShape(
  input: unknown,
  opts: { fieldPrefix?: string; limits?: ModelLimitsInput } = {},
): { worker: WorkerSpec | undefined; causes: Cause[] } {
  const issues = new Issues();
  const worker = readWorker(
    input,
    opts.fieldPrefix ?? "spec.template.spec.worker",
    issues,
    resolveLimits(opts.limits),
  );
  if (worker === undefined && issues.count === 0) {
    issues.add(opts.fieldPrefix ?? "spec.template.spec.worker", "required", "FieldValueRequired");
  }
  return { worker: issues.count === 0 ? worker : undefined, causes: issues.causes };
}
