/**
 * The deploy API: Knative serving.knative.dev/v1 over Kubernetes-shaped REST
 * paths, JSON or YAML in and out, Kubernetes Status objects for errors.
 *
 *   /apis/serving.knative.dev/v1/namespaces/{ns}/{services|configurations|revisions|routes}[/{name}]
 *
 * Services and Configurations are writable; Revisions are read-only (deletable);
 * Routes are read-only (they change through their Service).
 */

import type { Context, MiddlewareHandler } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { apply as mergePatch } from "json-merge-patch";
import type { Registry } from "prom-client";
import { stringify as toYaml } from "yaml";
import {
  applyConfiguration,
  applyService,
  type NamespaceQuota,
  type WriteMode,
} from "../../src/control/apply.ts";
import { deleteConfiguration, deleteRevision, deleteService } from "../../src/control/delete.ts";
import {
  BadRequestError,
  ForbiddenError,
  NotFoundError,
  TooLargeError,
  UnavailableError,
} from "../../src/errors.ts";
import type { Logger } from "../../src/logging.ts";
import { silentLogger } from "../../src/logging.ts";
import { httpServerMetrics } from "../../src/metrics.ts";
import { isDns1123Label } from "../../src/model/index.ts";
import type { ScalingDefaults } from "../../src/model/scaling.ts";
import { API_VERSION, KINDS, type Plural, type Resource } from "../../src/model/types.ts";
import type { Store } from "../../src/store/store.ts";
import {
  authenticate,
  authorize,
  parseTokenBody,
  principalOf,
  requireAdmin,
  TOKEN_API_VERSION,
  TOKENS_PATH,
  tokenObject,
  type Verb,
} from "./access.ts";
import { readObject } from "./body.ts";
import { prepareConfiguration, prepareService, type WriteLimits } from "./prepare.ts";
import { successStatus, toSkiffError } from "./status.ts";
import type { TokenStore } from "./token.ts";
import { DEFAULT_WATCH_LIMITS, isWatch, WatchHub, type WatchLimits } from "./watch.ts";

export interface ApiOptions {
  store: Store;
  /** Bearer tokens (admin and namespaced), checked against Redis on every request. */
  tokens: TokenStore;
  /**
   * False while the store's connection is down: requests get a 503 at once
   * instead of waiting for commands that cannot be sent.
   */
  storeReady?: () => boolean;
  /** The quota of one namespace (default: none). */
  quotaOf?: (namespace: string) => NamespaceQuota | undefined;
  domain: string;
  scheme?: string;
  bodyLimitBytes: number;
  limits: WriteLimits;
  /** The cluster's autoscaler settings, which bound the autoscaling annotations (e.g. allowZeroInitialScale). */
  scaling?: ScalingDefaults;
  registry: Registry;
  logger?: Logger;
  /** Bounds of `?watch=true` streams (defaults: DEFAULT_WATCH_LIMITS). */
  watch?: Partial<WatchLimits>;
  /** Aborted when the API stops: open watches end so the server can close. */
  shutdown?: AbortSignal;
  /** Registers a listener for "the store's change notices were interrupted" (watches then end). */
  onStoreResubscribe?: (listener: () => void) => () => void;
}

const BASE = "/apis/serving.knative.dev/v1";
const PLURALS = Object.keys(KINDS) as Plural[];

export function createApiApp(options: ApiOptions): Hono {
  const { store, registry } = options;
  const logger = options.logger ?? silentLogger;
  const scheme = options.scheme ?? "http";
  const metrics = httpServerMetrics(registry, "skiff_api");
  const app = new Hono();
  const watches = new WatchHub(
    store,
    options.tokens,
    { ...DEFAULT_WATCH_LIMITS, ...options.watch },
    logger,
  );
  options.shutdown?.addEventListener("abort", () => watches.closeAll(), { once: true });
  // Notices missed while the store's subscription was down: watchers must re-read.
  options.onStoreResubscribe?.(() => watches.closeAll());

  app.onError((err, c) => {
    // hono's own middleware (bearer auth) throws responses it already shaped.
    if (err instanceof HTTPException) return err.getResponse();
    const e = toSkiffError(err);
    if (e.code === "INTERNAL") logger.error({ err, path: c.req.path }, "request failed");
    if (e.code === "UNAUTHORIZED") c.header("WWW-Authenticate", 'Bearer realm="skiff"');
    return c.json(e.toStatus(), e.status as 500);
  });
  app.notFound((c) => {
    const e = new NotFoundError(
      `the server could not find the requested resource: ${c.req.method} ${c.req.path}`,
    );
    return c.json(e.toStatus(), 404);
  });

  app.use("*", async (c, next) => {
    const started = performance.now();
    await next();
    const route = c.req.routePath || "unmatched";
    metrics.requests.inc({ method: c.req.method, route, code: String(c.res.status) });
    metrics.duration.observe({ method: c.req.method, route }, (performance.now() - started) / 1000);
  });

  app.get("/healthz", (c) => c.text("ok"));
  app.get("/readyz", async (c) => {
    try {
      await store.ping();
      return c.text("ok");
    } catch (err) {
      return c.text(`store unavailable: ${(err as Error).message}`, 503);
    }
  });

  // While Redis is down nothing below can answer: say so at once (the CLI fails fast on it).
  const storeUp: MiddlewareHandler = async (_c, next) => {
    if (options.storeReady && !options.storeReady()) {
      throw new UnavailableError(
        "the API cannot reach its store (Redis) right now; retry in a few seconds",
      );
    }
    await next();
  };
  const auth = authenticate(options.tokens);
  app.use("/metrics", storeUp, auth);
  app.use("/apis/*", storeUp, auth);

  // /metrics names tenants (namespaces, services in route labels): the admin token only.
  app.get("/metrics", async (c) => {
    requireAdmin(principalOf(c), "/metrics");
    c.header("Content-Type", registry.contentType);
    return c.body(await registry.metrics());
  });
  app.use(
    "/apis/*",
    bodyLimit({
      maxSize: options.bodyLimitBytes,
      onError: (c) => {
        const e = new TooLargeError(
          `request body larger than the ${options.bodyLimitBytes}-byte limit (api.bodyLimitBytes)`,
        );
        return c.json(e.toStatus(), 413);
      },
    }),
  );

  app.get(BASE, (c) =>
    c.json({
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: API_VERSION,
      resources: PLURALS.map((name) => ({
        name,
        singularName: KINDS[name].toLowerCase(),
        namespaced: true,
        kind: KINDS[name],
        verbs: verbsOf(name),
      })),
    }),
  );

  // Across namespaces: only the objects of namespaces the token may read.
  app.get(`${BASE}/:plural`, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const principal = principalOf(c);
    const labels = labelSelector(c.req.query("labelSelector"));
    if (isWatch(c.req.query("watch")))
      return watches.open(c, principal, { plural, namespace: undefined, labels });
    const items =
      principal.kind === "admin"
        ? await store.list(plural, undefined, { labels })
        : (
            await Promise.all(principal.namespaces.map((n) => store.list(plural, n, { labels })))
          ).flat();
    return respond(c, listOf(plural, items));
  });

  const ns = `${BASE}/namespaces/:ns/:plural`;
  app.get(ns, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const namespace = namespaceOf(c, plural, "list");
    const labels = labelSelector(c.req.query("labelSelector"));
    if (isWatch(c.req.query("watch")))
      return watches.open(c, principalOf(c), { plural, namespace, labels });
    const items = await store.list(plural, namespace, { labels });
    return respond(c, listOf(plural, items));
  });
  app.get(`${ns}/:name`, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const namespace = namespaceOf(c, plural, "get");
    const name = c.req.param("name");
    if (isWatch(c.req.query("watch")))
      return watches.open(c, principalOf(c), { plural, namespace, name });
    const obj = await store.get(plural, namespace, name);
    if (!obj) throw notFound(plural, namespace, name);
    return respond(c, obj);
  });

  const writeCtx = { domain: options.domain, scheme };
  const quotaOf = (namespace: string) => {
    const quota = options.quotaOf?.(namespace);
    return quota ? { quota } : {};
  };

  // Tokens: the admin token only. The secret is in the creation's answer, nowhere else.
  app.get(TOKENS_PATH, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    const items = (await options.tokens.list()).map((r) => tokenObject(r));
    return respond(c, { apiVersion: TOKEN_API_VERSION, kind: "TokenList", metadata: {}, items });
  });
  app.post(TOKENS_PATH, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    const spec = parseTokenBody(await readObject(c));
    const { record, secret } = await options.tokens.create(spec);
    logger.info(
      { kind: "tokens", name: record.name, role: record.role, namespaces: record.namespaces },
      "token created",
    );
    return respond(c, tokenObject(record, secret), 201);
  });
  app.get(`${TOKENS_PATH}/:name`, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    return respond(c, tokenObject(await options.tokens.get(c.req.param("name"))));
  });
  app.delete(`${TOKENS_PATH}/:name`, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    const name = c.req.param("name");
    await options.tokens.revoke(name);
    logger.info({ kind: "tokens", name }, "token revoked");
    return respond(
      c,
      successStatus(`token "${name}" revoked`, { name, group: "skiff.dev", kind: "tokens" }),
    );
  });

  app.post(ns, async (c) => {
    const plural = writable(pluralOf(c.req.param("plural")), "create");
    return write(c, plural, namespaceOf(c, plural, "create"), undefined, "create");
  });
  app.put(`${ns}/:name`, async (c) => {
    const plural = writable(pluralOf(c.req.param("plural")), "replace");
    return write(c, plural, namespaceOf(c, plural, "update"), c.req.param("name"), "replace");
  });
  app.patch(`${ns}/:name`, async (c) => {
    const plural = writable(pluralOf(c.req.param("plural")), "patch");
    const namespace = namespaceOf(c, plural, "patch");
    const name = c.req.param("name");
    const patch = await readObject(c);
    const current = await store.get(plural, namespace, name);
    if (!current) throw notFound(plural, namespace, name);
    // The patch applies to the user's view of the object (status is not theirs).
    const merged = mergePatch(userView(current), structuredClone(patch)) as Record<string, unknown>;
    return writeObject(c, plural, namespace, name, merged, "replace");
  });
  app.delete(`${ns}/:name`, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const namespace = namespaceOf(c, plural, "delete");
    const name = c.req.param("name");
    const dryRun = isDryRun(c);
    const remove =
      plural === "services"
        ? deleteService
        : plural === "configurations"
          ? deleteConfiguration
          : plural === "revisions"
            ? deleteRevision
            : undefined;
    if (!remove) throw routesReadOnly("delete");
    await store.transact((tx) => remove(tx, namespace, name), { dryRun });
    logger.info({ kind: plural, namespace, name, dryRun }, "deleted");
    return respond(
      c,
      successStatus(`${plural} "${name}" deleted`, {
        name,
        group: "serving.knative.dev",
        kind: plural,
      }),
    );
  });

  async function write(
    c: Context,
    plural: "services" | "configurations",
    namespace: string,
    name: string | undefined,
    mode: WriteMode,
  ): Promise<Response> {
    const body = await readObject(c);
    return writeObject(c, plural, namespace, name, body, mode);
  }

  async function writeObject(
    c: Context,
    plural: "services" | "configurations",
    namespace: string,
    name: string | undefined,
    body: Record<string, unknown>,
    mode: WriteMode,
  ): Promise<Response> {
    const dryRun = isDryRun(c);
    let result: Resource;
    if (plural === "services") {
      const { parsed, worker } = await prepareService(body, {
        namespace,
        name,
        limits: options.limits,
        ...(options.scaling ? { scaling: options.scaling } : {}),
      });
      result = (
        await store.transact(
          (tx) => applyService(tx, parsed, { mode, worker, ...writeCtx, ...quotaOf(namespace) }),
          { dryRun },
        )
      ).value;
    } else {
      const { parsed, worker } = await prepareConfiguration(body, {
        namespace,
        name,
        limits: options.limits,
        ...(options.scaling ? { scaling: options.scaling } : {}),
      });
      result = (
        await store.transact(
          (tx) =>
            applyConfiguration(tx, parsed, { mode, worker, ...writeCtx, ...quotaOf(namespace) }),
          {
            dryRun,
          },
        )
      ).value;
    }
    logger.info(
      {
        kind: plural,
        namespace,
        name: result.metadata.name,
        generation: result.metadata.generation,
        dryRun,
      },
      mode === "create" ? "created" : "updated",
    );
    return respond(c, result, mode === "create" ? 201 : 200);
  }

  return app;
}

function verbsOf(plural: Plural): string[] {
  if (plural === "routes") return ["get", "list"];
  if (plural === "revisions") return ["get", "list", "delete"];
  return ["get", "list", "create", "update", "patch", "delete"];
}

function pluralOf(value: string): Plural {
  if ((PLURALS as string[]).includes(value)) return value as Plural;
  throw new NotFoundError(
    `the server could not find the requested resource: "${value}" is not one of ${PLURALS.join(", ")}`,
  );
}

/** The URL's namespace, once the caller's token may `verb` `plural` there (else 403). */
function namespaceOf(c: Context, plural: Plural, verb: Verb): string {
  const ns = c.req.param("ns") ?? "";
  if (!isDns1123Label(ns)) {
    throw new BadRequestError(
      `namespace "${ns.slice(0, 80)}" is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`,
    );
  }
  authorize(principalOf(c), verb, plural, ns);
  return ns;
}

function writable(plural: Plural, verb: string): "services" | "configurations" {
  if (plural === "services" || plural === "configurations") return plural;
  if (plural === "routes") throw routesReadOnly(verb);
  throw new ForbiddenError(
    `revisions cannot be ${verb === "create" ? "created" : "changed"} directly: they are immutable snapshots created from a Configuration's template; change the Service or Configuration instead`,
    { kind: "revisions" },
  );
}

function routesReadOnly(verb: string): ForbiddenError {
  return new ForbiddenError(
    `routes cannot be ${verb === "delete" ? "deleted" : verb === "create" ? "created" : "changed"} directly: a Route is managed by its Service; change spec.traffic of the Service (skiff service update NAME --traffic ...)`,
    { kind: "routes" },
  );
}

function notFound(plural: Plural, namespace: string, name: string): NotFoundError {
  return new NotFoundError(`${plural} "${name}" not found in namespace "${namespace}"`, {
    kind: plural,
    name,
  });
}

function isDryRun(c: Context): boolean {
  const value = c.req.query("dryRun");
  if (value === undefined) return false;
  if (value === "All") return true;
  throw new BadRequestError(`dryRun must be "All" when given, not "${value}"`);
}

/** Equality-only label selectors: `a=b,c==d`. */
function labelSelector(value: string | undefined): Record<string, string> | undefined {
  if (!value) return undefined;
  const out: Record<string, string> = {};
  for (const part of value.split(",")) {
    const m = /^\s*([^=!\s]+)\s*==?\s*([^=\s]*)\s*$/.exec(part);
    if (!m) {
      throw new BadRequestError(
        `unsupported labelSelector term "${part}"; only equality terms like key=value are supported`,
      );
    }
    out[m[1]!] = m[2]!;
  }
  return out;
}

function listOf(plural: Plural, items: Resource[]) {
  return {
    apiVersion: API_VERSION,
    kind: `${KINDS[plural]}List`,
    metadata: {},
    items: items.sort((a, b) =>
      a.metadata.namespace === b.metadata.namespace
        ? a.metadata.name.localeCompare(b.metadata.name)
        : a.metadata.namespace.localeCompare(b.metadata.namespace),
    ),
  };
}

/** What a user may PATCH: identity, labels, annotations, resourceVersion and spec. */
function userView(obj: Resource): Record<string, unknown> {
  const { name, namespace, labels, annotations, resourceVersion } = obj.metadata;
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata: { name, namespace, labels, annotations, resourceVersion },
    spec: structuredClone(obj.spec),
  };
}

function respond(c: Context, body: unknown, status: 200 | 201 = 200): Response {
  const accept = c.req.header("accept") ?? "";
  if (/\b(application|text)\/(x-)?yaml\b/.test(accept)) {
    c.header("Content-Type", "application/yaml; charset=utf-8");
    return c.body(toYaml(body), status);
  }
  return c.json(body, status);
}
