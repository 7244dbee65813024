/**
 * Request bodies: JSON or YAML by Content-Type, one object per request.
 * The byte limit is enforced by hono's bodyLimit before we get here; this
 * module bounds the rest of the work an untrusted body can cause: nesting
 * depth (JSON and YAML), and for YAML, whose parser is far slower per node
 * than JSON.parse and quadratic in some shapes, the number of tokens and the
 * alias expansions (billion laughs).
 */
import type { Context } from "hono";
import { Lexer, parseAllDocuments } from "yaml";
import { BadRequestError, UnsupportedMediaTypeError } from "../../src/errors.ts";

const JSON_TYPES = new Set(["application/json", "application/merge-patch+json"]);
const YAML_TYPES = new Set(["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"]);
/** Patch formats: a JSON Patch (RFC 6902) list, and a server-side apply configuration (YAML, or JSON as kubectl sends it). */
export const JSON_PATCH = "application/json-patch+json";
export const APPLY_PATCH = "application/apply-patch+yaml";
const PATCH_ONLY = new Set(["application/merge-patch+json", JSON_PATCH, APPLY_PATCH]);

export type BodyFormat = "json" | "yaml";

/** Deepest nesting of objects/lists accepted; a Knative manifest needs about 10. */
export const MAX_DEPTH = 64;
/** Most YAML tokens in one body: a manifest with hundreds of env entries needs a few thousand. */
export const MAX_YAML_TOKENS = 20_000;
/** Most alias (`*name`) expansions while building the object. */
export const MAX_YAML_ALIASES = 50;

/** Media type without parameters, lower-cased. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}

export function bodyFormat(header: string | undefined, method: string): BodyFormat {
  const type = mediaType(header);
  if (PATCH_ONLY.has(type) && method !== "PATCH") {
    throw new UnsupportedMediaTypeError(
      `Content-Type ${type} is only for PATCH; send the whole object as application/json or application/yaml`,
    );
  }
  if (JSON_TYPES.has(type) || type === JSON_PATCH) return "json";
  // YAML is a superset of JSON: an apply configuration in either reads as YAML.
  if (YAML_TYPES.has(type) || type === APPLY_PATCH) return "yaml";
  const hint =
    method === "PATCH"
      ? `use application/merge-patch+json (or application/yaml for a YAML merge patch), ${JSON_PATCH} or ${APPLY_PATCH}`
      : "use application/json or application/yaml";
  if (!type) throw new UnsupportedMediaTypeError(`missing Content-Type header; ${hint}`);
  throw new UnsupportedMediaTypeError(`unsupported Content-Type "${type}"; ${hint}`);
}

/** Parse the body as exactly one JSON/YAML value (a JSON Patch is a list). */
export async function readValue(c: Context): Promise<unknown> {
  const format = bodyFormat(c.req.header("content-type"), c.req.method);
  const text = await c.req.text();
  if (!text.trim()) throw new BadRequestError("the request body is empty; send one object");
  return format === "json" ? parseJson(text) : parseYaml(text);
}

/** Parse the body as exactly one JSON/YAML mapping. */
export async function readObject(c: Context): Promise<Record<string, unknown>> {
  const value = await readValue(c);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BadRequestError(
      `the request body must be one object (a mapping), not ${Array.isArray(value) ? "a list" : typeof value === "object" ? "null" : `a ${typeof value}`}`,
    );
  }
  return value as Record<string, unknown>;
}

function tooDeep(): BadRequestError {
  return new BadRequestError(
    `the body nests objects/lists deeper than ${MAX_DEPTH} levels; a Service needs about 10`,
  );
}

/** Nesting depth of JSON text, outside strings, stopping as soon as it is too deep. */
function checkJsonDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) throw tooDeep();
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

/**
 * A linear pre-scan with yaml's lexer: refuses too many tokens or too deep
 * flow nesting before the (slower) parser and composer see the text. The
 * lexer is a generator, so the scan stops at the first token over a bound.
 */
function checkYamlShape(text: string): void {
  let tokens = 0;
  let flow = 0;
  for (const token of new Lexer().lex(text)) {
    if (++tokens > MAX_YAML_TOKENS) {
      throw new BadRequestError(
        `the YAML body has more than ${MAX_YAML_TOKENS} tokens; a Service needs far fewer (send large data such as worker source as one block scalar, or use JSON)`,
      );
    }
    if (token === "[" || token === "{") {
      if (++flow > MAX_DEPTH) throw tooDeep();
    } else if (token === "]" || token === "}") flow--;
  }
}

/** Depth of a decoded value (iterative: deep input must not overflow our own stack). */
function checkDepth(value: unknown): void {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (d > MAX_DEPTH) throw tooDeep();
    for (const child of Object.values(v)) {
      if (typeof child === "object" && child !== null) stack.push([child, d + 1]);
    }
  }
}

function parseJson(text: string): unknown {
  checkJsonDepth(text);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

function parseYaml(text: string): unknown {
  checkYamlShape(text);
  let docs: ReturnType<typeof parseAllDocuments>;
  try {
    // logLevel "error": yaml's warnings (e.g. collection keys) would go to process warnings.
    docs = parseAllDocuments(text, { uniqueKeys: true, logLevel: "error" });
  } catch (err) {
    throw new BadRequestError(`the body is not valid YAML: ${(err as Error).message}`);
  }
  const list = Array.isArray(docs) ? docs : [docs];
  const nonEmpty = list.filter((d) => d.contents !== null || d.errors.length);
  if (nonEmpty.length > 1) {
    throw new BadRequestError(
      `the body holds ${nonEmpty.length} YAML documents; send one object per request (skiff apply -f splits files for you)`,
    );
  }
  const doc = nonEmpty[0];
  if (!doc) throw new BadRequestError("the request body is empty; send one object");
  if (doc.errors.length) {
    throw new BadRequestError(`the body is not valid YAML: ${doc.errors[0]!.message}`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    const message = (err as Error).message;
    if (/alias/i.test(message)) {
      throw new BadRequestError(
        `the YAML body expands aliases (*name) more than ${MAX_YAML_ALIASES} times; write the values out instead of referring to anchors`,
      );
    }
    throw new BadRequestError(`the body is not valid YAML: ${message}`);
  }
  // Block nesting is not visible to the flow-depth scan.
  checkDepth(value);
  return value;
}
