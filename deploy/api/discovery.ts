/**
 * Kubernetes discovery, so kubectl and client libraries find Knative's
 * resources here as on a cluster: /version, the legacy group lists (/api,
 * /apis, /apis/serving.knative.dev), the resource lists (short names,
 * categories, verbs) and namespaces as resources (/api/v1/namespaces).
 *
 * As on Kubernetes, /version is public and everything else needs a token;
 * a namespaced token sees only its own namespaces.
 */
import type { Context, Hono } from "hono";
import { BadRequestError, NotFoundError, ValidationError } from "../../src/errors.ts";
import { isDns1123Label } from "../../src/model/index.ts";
import { API_VERSION, KINDS, type Plural } from "../../src/model/types.ts";
import type { Store } from "../../src/store/store.ts";
import { principalOf, requireAdmin } from "./access.ts";
import { mediaType, readObject } from "./body.ts";
import type { NamespaceRecord, NamespaceStore } from "./namespaces.ts";
import { namespaceFromProtobuf, PROTOBUF } from "./protobuf.ts";
import { type Column, respondRead } from "./table.ts";
import type { Principal } from "./token.ts";

const GROUP = "serving.knative.dev";
const VERSION = "v1";
/** The Kubernetes API level Skiff's answers follow (kubectl warns beyond one minor of skew). */
const KUBE_MAJOR = "1";
const KUBE_MINOR = "32";

/** Knative's CRD names (config/core/300-resources), plus kcfg for symmetry with ksvc. */
const NAMES: Record<Plural, { shortNames: string[]; verbs: string[] }> = {
  services: {
    shortNames: ["kservice", "ksvc"],
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
  },
  configurations: {
    shortNames: ["config", "cfg", "kcfg"],
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
  },
  revisions: { shortNames: ["rev"], verbs: ["delete", "get", "list", "watch"] },
  routes: {
    shortNames: ["rt"],
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
  },
};

const PLURALS = Object.keys(KINDS) as Plural[];

export interface DiscoveryOptions {
  store: Store;
  /** Namespaces the configuration names (quotas), known even while empty. */
  configuredNamespaces?: readonly string[];
  /** Namespaces made through the API (kubectl create ns). */
  namespaces: NamespaceStore;
}

export function registerDiscoveryRoutes(app: Hono, options: DiscoveryOptions): void {
  app.get("/version", (c) =>
    c.json({
      major: KUBE_MAJOR,
      minor: KUBE_MINOR,
      gitVersion: `v${KUBE_MAJOR}.${KUBE_MINOR}.0+skiff`,
      gitCommit: "",
      gitTreeState: "",
      buildDate: "",
      goVersion: "",
      compiler: "",
      platform: `${process.platform}/${process.arch}`,
    }),
  );

  app.get("/api", (c) =>
    c.json({
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: serverAddress(c) }],
    }),
  );

  const groupVersion = { groupVersion: API_VERSION, version: VERSION };
  const group = { name: GROUP, versions: [groupVersion], preferredVersion: groupVersion };
  app.get("/apis", (c) =>
    c.json({ kind: "APIGroupList", apiVersion: "v1", groups: [{ ...group }] }),
  );
  app.get(`/apis/${GROUP}`, (c) => c.json({ kind: "APIGroup", apiVersion: "v1", ...group }));
  app.get(`/apis/${API_VERSION}`, (c) =>
    c.json({
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: API_VERSION,
      resources: PLURALS.map((name) => ({
        name,
        singularName: KINDS[name].toLowerCase(),
        namespaced: true,
        kind: KINDS[name],
        verbs: NAMES[name].verbs,
        shortNames: NAMES[name].shortNames,
        categories: ["all", "knative", "serving"],
      })),
    }),
  );

  app.get("/api/v1", (c) =>
    c.json({
      kind: "APIResourceList",
      groupVersion: "v1",
      resources: [
        {
          name: "namespaces",
          singularName: "namespace",
          namespaced: false,
          kind: "Namespace",
          verbs: ["create", "get", "list"],
          shortNames: ["ns"],
        },
      ],
    }),
  );

  app.get("/api/v1/namespaces", async (c) => {
    const created = await options.namespaces.all();
    const names = await visibleNamespaces(options, principalOf(c), created);
    const items = names.map((n) => namespaceObject(n, created.get(n)));
    return respondRead(
      c,
      { apiVersion: "v1", kind: "NamespaceList", metadata: {}, items },
      NAMESPACE_COLUMNS,
    );
  });
  app.get("/api/v1/namespaces/:name", async (c) => {
    const name = c.req.param("name");
    const created = await options.namespaces.all();
    const names = await visibleNamespaces(options, principalOf(c), created);
    // The same answer for "absent" and "not yours": a token learns nothing of others.
    if (!names.includes(name))
      throw new NotFoundError(`namespaces "${name}" not found`, { kind: "namespaces", name });
    return respondRead(c, namespaceObject(name, created.get(name)), NAMESPACE_COLUMNS);
  });
  // Only the admin makes namespaces: a namespaced token is bound to its own.
  app.post("/api/v1/namespaces", async (c) => {
    requireAdmin(principalOf(c), "creating namespaces");
    const protobuf = mediaType(c.req.header("content-type")) === PROTOBUF;
    const body = protobuf
      ? namespaceFromProtobuf(new Uint8Array(await c.req.arrayBuffer()))
      : await readObject(c);
    const name = namespaceNameOf(body);
    const dryRun = c.req.query("dryRun");
    if (dryRun !== undefined && dryRun !== "All")
      throw new BadRequestError(`dryRun must be "All" when given, not "${dryRun.slice(0, 40)}"`);
    const record = await options.namespaces.create(name, { dryRun: dryRun === "All" });
    return c.json(namespaceObject(name, record), 201);
  });
}

const NAMESPACE_COLUMNS: Column[] = [
  { name: "Status", type: "string", description: "The namespace's phase.", cell: () => "Active" },
];

/** The name of a Namespace body (`kubectl create ns NAME`), checked as Kubernetes does. */
function namespaceNameOf(body: Record<string, unknown>): string {
  const issues: { field: string; message: string; reason?: string }[] = [];
  if (body.apiVersion !== undefined && body.apiVersion !== "v1")
    issues.push({ field: "apiVersion", message: 'must be "v1"', reason: "FieldValueNotSupported" });
  if (body.kind !== undefined && body.kind !== "Namespace")
    issues.push({
      field: "kind",
      message: 'must be "Namespace"',
      reason: "FieldValueNotSupported",
    });
  const meta = body.metadata;
  const name =
    typeof meta === "object" && meta !== null ? (meta as Record<string, unknown>).name : undefined;
  if (typeof name !== "string" || !isDns1123Label(name)) {
    issues.push({
      field: "metadata.name",
      message:
        name === undefined
          ? "required: the namespace's name"
          : "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
      reason: name === undefined ? "FieldValueRequired" : "FieldValueInvalid",
    });
  }
  if (issues.length) throw ValidationError.of(issues);
  return name as string;
}

/**
 * The namespaces a principal may see: a namespaced token its own; the admin
 * every namespace that holds an object, is configured, was created, or is "default".
 */
async function visibleNamespaces(
  options: DiscoveryOptions,
  p: Principal,
  created: Map<string, NamespaceRecord>,
): Promise<string[]> {
  if (p.kind === "token") return [...p.namespaces].sort();
  const found = new Set(["default", ...(options.configuredNamespaces ?? []), ...created.keys()]);
  for (const plural of ["services", "configurations"] as const) {
    for (const obj of await options.store.list(plural)) found.add(obj.metadata.namespace);
  }
  return [...found].sort();
}

function namespaceObject(name: string, record?: NamespaceRecord) {
  return {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, ...record },
    spec: { finalizers: ["kubernetes"] },
    status: { phase: "Active" },
  };
}

/** The address the client reached us at (what the Host header names). */
function serverAddress(c: Context): string {
  return c.req.header("host") ?? new URL(c.req.url).host;
}
