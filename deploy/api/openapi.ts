/**
 * OpenAPI documents of serving.knative.dev/v1, for kubectl: `apply`
 * validates manifests against them (or, seeing the fieldValidation
 * parameter, leaves validation to this server, which rejects unknown fields)
 * and `explain` reads them. The schemas are zod (openapi-schema.ts) turned
 * into JSON Schema by z.toJSONSchema; /openapi/v2 (Swagger 2.0) and
 * /openapi/v3 (an index, then one document per group version) carry the
 * same definitions with the x-kubernetes-group-version-kind extension
 * Kubernetes clients look kinds up by.
 */
import { createHash } from "node:crypto";
import type { Hono } from "hono";
import { z } from "zod";
import { NotFoundError } from "../../src/errors.ts";
import { API_VERSION, KINDS, type Plural } from "../../src/model/types.ts";
import { KIND_SCHEMAS } from "./openapi-schema.ts";

const GROUP = "serving.knative.dev";
const VERSION = "v1";
const V3_PATH = `apis/${API_VERSION}`;

type Json = Record<string, unknown>;

/** `dev.knative.serving.v1.Service`: reverse-domain names, as Kubernetes names definitions. */
const defName = (kind: string) => `dev.knative.serving.v1.${kind}`;

/** One kind's JSON Schema: inline (no $ref), OpenAPI 3.0 flavour, with its GVK. */
function kindSchema(plural: Plural): Json {
  const schema = z.toJSONSchema(KIND_SCHEMAS[plural], {
    target: "openapi-3.0",
    reused: "inline",
    unrepresentable: "any",
  }) as Json;
  delete schema.$schema;
  return {
    ...schema,
    "x-kubernetes-group-version-kind": [{ group: GROUP, version: VERSION, kind: KINDS[plural] }],
  };
}

const PLURALS = Object.keys(KINDS) as Plural[];
const WRITABLE: Plural[] = ["services", "configurations", "routes"];

/** The query parameters kubectl looks for before it trusts the server to validate. */
const PARAMS = [
  { name: "dryRun", in: "query", schema: { type: "string" }, description: "All: validate only." },
  {
    name: "fieldValidation",
    in: "query",
    schema: { type: "string" },
    description: "Unknown fields are always rejected (Strict).",
  },
  {
    name: "fieldManager",
    in: "query",
    schema: { type: "string" },
    description:
      "The field manager of a server-side apply (required with application/apply-patch+yaml).",
  },
  {
    name: "force",
    in: "query",
    schema: { type: "boolean" },
    description: "A server-side apply takes over fields other managers own instead of failing.",
  },
];

function gvkExt(plural: Plural) {
  return { group: GROUP, version: VERSION, kind: KINDS[plural] };
}

function v3Document(): Json {
  const schemas: Json = {};
  const paths: Json = {};
  for (const plural of PLURALS) {
    const ref = { $ref: `#/components/schemas/${defName(KINDS[plural])}` };
    schemas[defName(KINDS[plural])] = kindSchema(plural);
    const json = { "application/json": { schema: ref } };
    const item: Json = {
      get: {
        operationId: `read${KINDS[plural]}`,
        "x-kubernetes-action": "get",
        "x-kubernetes-group-version-kind": gvkExt(plural),
        responses: { "200": { description: "OK", content: json } },
      },
    };
    const collection: Json = {
      get: {
        operationId: `list${KINDS[plural]}`,
        "x-kubernetes-action": "list",
        "x-kubernetes-group-version-kind": gvkExt(plural),
        responses: { "200": { description: "OK" } },
      },
    };
    if (WRITABLE.includes(plural)) {
      const body = { content: json, required: true };
      collection.post = {
        operationId: `create${KINDS[plural]}`,
        "x-kubernetes-action": "post",
        "x-kubernetes-group-version-kind": gvkExt(plural),
        parameters: PARAMS,
        requestBody: body,
        responses: { "201": { description: "Created", content: json } },
      };
      item.put = {
        operationId: `replace${KINDS[plural]}`,
        "x-kubernetes-action": "put",
        "x-kubernetes-group-version-kind": gvkExt(plural),
        parameters: PARAMS,
        requestBody: body,
        responses: { "200": { description: "OK", content: json } },
      };
      item.patch = {
        operationId: `patch${KINDS[plural]}`,
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvkExt(plural),
        parameters: PARAMS,
        // No strategic merge patch (as for custom resources): kubectl's
        // client-side apply then computes JSON merge patches.
        requestBody: {
          content: {
            "application/merge-patch+json": { schema: { type: "object" } },
            "application/json-patch+json": { schema: { type: "object" } },
            "application/apply-patch+yaml": { schema: { type: "object" } },
          },
          required: true,
        },
        responses: { "200": { description: "OK", content: json } },
      };
    }
    const base = `/apis/${API_VERSION}/namespaces/{namespace}/${plural}`;
    const nsParam = [{ name: "namespace", in: "path", required: true, schema: { type: "string" } }];
    const nameParam = [{ name: "name", in: "path", required: true, schema: { type: "string" } }];
    paths[base] = { ...collection, parameters: nsParam };
    paths[`${base}/{name}`] = { ...item, parameters: [...nameParam, ...nsParam] };
  }
  return {
    openapi: "3.0.0",
    info: { title: "Skiff (Knative Serving API)", version: API_VERSION },
    paths,
    components: { schemas },
  };
}

/** Swagger 2.0: the same schemas, $refs to #/definitions. */
function v2Document(): Json {
  const v3 = v3Document();
  const text = JSON.stringify((v3.components as Json).schemas).replaceAll(
    "#/components/schemas/",
    "#/definitions/",
  );
  const paths: Json = {};
  for (const [path, item] of Object.entries(v3.paths as Record<string, Json>)) {
    const out: Json = {};
    for (const [method, op] of Object.entries(item)) {
      if (method === "parameters") {
        out.parameters = (op as Json[]).map(v2Param);
        continue;
      }
      const { requestBody, responses, parameters, ...rest } = op as Json;
      const params = ((parameters as Json[] | undefined) ?? []).map(v2Param);
      const consumes = requestBody
        ? Object.keys((requestBody as { content: Json }).content)
        : undefined;
      if (requestBody) {
        const { kind } = rest["x-kubernetes-group-version-kind"] as { kind: string };
        const schema =
          method === "patch" ? { type: "object" } : { $ref: `#/definitions/${defName(kind)}` };
        params.push({ name: "body", in: "body", required: true, schema });
      }
      out[method] = {
        ...rest,
        ...(consumes ? { consumes } : {}),
        produces: ["application/json", "application/yaml"],
        parameters: params,
        responses: Object.fromEntries(
          Object.entries(responses as Json).map(([code]) => [code, { description: "OK" }]),
        ),
      };
    }
    paths[path] = out;
  }
  return {
    swagger: "2.0",
    info: { title: "Skiff (Knative Serving API)", version: API_VERSION },
    paths,
    definitions: JSON.parse(text),
  };
}

function v2Param(p: Json): Json {
  const { schema, ...rest } = p;
  return { ...rest, type: (schema as { type: string }).type };
}

export function registerOpenApiRoutes(app: Hono): void {
  // Built once: the schemas do not change while the process runs.
  const v3 = JSON.stringify(v3Document());
  const v2 = JSON.stringify(v2Document());
  const hash = createHash("sha512").update(v3).digest("hex").slice(0, 32).toUpperCase();
  const json = { "Content-Type": "application/json" };

  app.get("/openapi/v2", (c) => {
    // client-go asks for protobuf only and parses whatever comes as protobuf:
    // a clear 404 (it then gives up on v2 and uses v3) beats JSON it cannot read.
    const accept = c.req.header("accept") ?? "";
    if (accept && !/application\/json|\*\/\*/.test(accept)) {
      throw new NotFoundError(
        "the OpenAPI v2 document is served as JSON only (Accept: application/json); Kubernetes clients use /openapi/v3",
      );
    }
    return c.body(v2, 200, json);
  });
  app.get("/openapi/v3", (c) =>
    c.json({ paths: { [V3_PATH]: { serverRelativeURL: `/openapi/v3/${V3_PATH}?hash=${hash}` } } }),
  );
  app.get("/openapi/v3/*", (c) => {
    if (c.req.path !== `/openapi/v3/${V3_PATH}`) {
      throw new NotFoundError(`no OpenAPI document for ${c.req.path.slice("/openapi/v3/".length)}`);
    }
    return c.body(v3, 200, json);
  });
}
