/**
 * Request bodies: JSON or YAML by Content-Type, one object per request.
 * The byte limit is enforced by hono's bodyLimit before we get here.
 */
import type { Context } from "hono";
import { parseAllDocuments } from "yaml";
import { BadRequestError, UnsupportedMediaTypeError } from "../../src/errors.ts";

const JSON_TYPES = new Set(["application/json", "application/merge-patch+json"]);
const YAML_TYPES = new Set(["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"]);

export type BodyFormat = "json" | "yaml";

/** Media type without parameters, lower-cased. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}

export function bodyFormat(header: string | undefined, method: string): BodyFormat {
  const type = mediaType(header);
  if (type === "application/merge-patch+json" && method !== "PATCH") {
    throw new UnsupportedMediaTypeError(
      `Content-Type ${type} is only for PATCH; send the whole object as application/json or application/yaml`,
    );
  }
  if (JSON_TYPES.has(type)) return "json";
  if (YAML_TYPES.has(type)) return "yaml";
  const hint =
    method === "PATCH"
      ? "use application/merge-patch+json (or application/yaml for a YAML merge patch)"
      : "use application/json or application/yaml";
  if (!type) throw new UnsupportedMediaTypeError(`missing Content-Type header; ${hint}`);
  throw new UnsupportedMediaTypeError(`unsupported Content-Type "${type}"; ${hint}`);
}

/** Parse the body as exactly one JSON/YAML mapping. */
export async function readObject(c: Context): Promise<Record<string, unknown>> {
  const format = bodyFormat(c.req.header("content-type"), c.req.method);
  const text = await c.req.text();
  if (!text.trim()) throw new BadRequestError("the request body is empty; send one object");
  const value = format === "json" ? parseJson(text) : parseYaml(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BadRequestError(
      `the request body must be one object (a mapping), not ${Array.isArray(value) ? "a list" : typeof value === "object" ? "null" : `a ${typeof value}`}`,
    );
  }
  return value as Record<string, unknown>;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

function parseYaml(text: string): unknown {
  const docs = parseAllDocuments(text, { uniqueKeys: true });
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
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new BadRequestError(`the body is not valid YAML: ${(err as Error).message}`);
  }
}
