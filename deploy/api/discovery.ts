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
import { NotFoundError } from "../../src/errors.ts";
import { API_VERSION, KINDS, type Plural } from "../../src/model/types.ts";
import type { Store } from "../../src/store/store.ts";
import { principalOf } from "./access.ts";
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
          verbs: ["get", "list"],
          shortNames: ["ns"],
        },
      ],
    }),
  );

  app.get("/api/v1/namespaces", async (c) => {
    const names = await visibleNamespaces(options, principalOf(c));
    return respondRead(
      c,
      { apiVersion: "v1", kind: "NamespaceList", metadata: {}, items: names.map(namespaceObject) },
      NAMESPACE_COLUMNS,
    );
  });
  app.get("/api/v1/namespaces/:name", async (c) => {
    const name = c.req.param("name");
    const names = await visibleNamespaces(options, principalOf(c));
    // The same answer for "absent" and "not yours": a token learns nothing of others.
    if (!names.includes(name))
      throw new NotFoundError(`namespaces "${name}" not found`, { kind: "namespaces", name });
    return respondRead(c, namespaceObject(name), NAMESPACE_COLUMNS);
  });
}

const NAMESPACE_COLUMNS: Column[] = [
  { name: "Status", type: "string", description: "The namespace's phase.", cell: () => "Active" },
];

/**
 * The namespaces a principal may see: a namespaced token its own; the admin
 * every namespace that holds an object, is configured, or is "default".
 */
async function visibleNamespaces(options: DiscoveryOptions, p: Principal): Promise<string[]> {
  if (p.kind === "token") return [...p.namespaces].sort();
  const found = new Set(["default", ...(options.configuredNamespaces ?? [])]);
  for (const plural of ["services", "configurations"] as const) {
    for (const obj of await options.store.list(plural)) found.add(obj.metadata.namespace);
  }
  return [...found].sort();
}

function namespaceObject(name: string) {
  return {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name },
    spec: { finalizers: ["kubernetes"] },
    status: { phase: "Active" },
  };
}

/** The address the client reached us at (what the Host header names). */
function serverAddress(c: Context): string {
  return c.req.header("host") ?? new URL(c.req.url).host;
}
