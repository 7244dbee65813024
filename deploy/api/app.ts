/**
 * The deploy API: Knative serving.knative.dev/v1 over Kubernetes-shaped REST
 * paths (resource-routes.ts), API tokens (token-routes.ts), JSON or YAML in
 * and out, Kubernetes Status objects for errors (status.ts). This module
 * wires them with what every request shares: metrics, health, the store's
 * readiness, authentication and the body limit. The web console (console/)
 * sits beside them under /console, with its own cookie session.
 */

import type { MiddlewareHandler } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Registry } from "prom-client";
import type { ImagesConfig } from "../../src/config/images.ts";
import type { NamespaceQuota } from "../../src/control/quota.ts";
import { TooLargeError, UnavailableError } from "../../src/errors.ts";
import type { Logger } from "../../src/logging.ts";
import { silentLogger } from "../../src/logging.ts";
import { httpServerMetrics } from "../../src/metrics.ts";
import type { ScalingDefaults } from "../../src/model/scaling.ts";
import type { Store } from "../../src/store/store.ts";
import { authenticate, principalOf, requireAdmin } from "./access.ts";
import type { ConsoleSources } from "./console/data.ts";
import { registerConsole } from "./console/routes.ts";
import { registerDescribeRoutes } from "./describe.ts";
import { registerDiscoveryRoutes } from "./discovery.ts";
import { registerLogRoutes } from "./logs.ts";
import type { NamespaceStore } from "./namespaces.ts";
import { registerOpenApiRoutes } from "./openapi.ts";
import type { WriteLimits } from "./prepare.ts";
import { registerResourceRoutes } from "./resource-routes.ts";
import { answerErrors } from "./status.ts";
import type { TokenStore } from "./token.ts";
import { registerTokenRoutes } from "./token-routes.ts";
import { DEFAULT_WATCH_LIMITS, WatchHub, type WatchLimits } from "./watch.ts";
import type { WriteDeps } from "./write.ts";

export interface ApiOptions {
  store: Store;
  /** Bearer tokens (admin and namespaced), checked against Redis on every request. */
  tokens: TokenStore;
  /**
   * False while the store's connection is down: requests get a 503 at once
   * instead of waiting for commands that cannot be sent.
   */
  storeReady?: () => boolean;
  /** Namespaces the configuration names (quota overrides): listed even while empty. */
  configuredNamespaces?: readonly string[];
  /** Namespaces made through the API (kubectl create ns). */
  namespaces: NamespaceStore;
  /** The quota of one namespace (default: none). */
  quotaOf?: (namespace: string) => NamespaceQuota | undefined;
  domain: string;
  scheme?: string;
  bodyLimitBytes: number;
  limits: WriteLimits;
  /** The cluster's autoscaler settings, which bound the autoscaling annotations (e.g. allowZeroInitialScale). */
  scaling?: ScalingDefaults;
  registry: Registry;
  /** Image registries: a new revision's tag is resolved to a digest on the listed ones. */
  images?: ImagesConfig;
  logger?: Logger;
  /** Bounds of `?watch=true` streams (defaults: DEFAULT_WATCH_LIMITS). */
  watch?: Partial<WatchLimits>;
  /** Aborted when the API stops: open watches end so the server can close. */
  shutdown?: AbortSignal;
  /** Registers a listener for "the store's change notices were interrupted" (watches then end). */
  onStoreResubscribe?: (listener: () => void) => () => void;
  /** Fleet records and gateway counters the web console reads (hosts, request rates). */
  consoleSources?: ConsoleSources;
}

export function createApiApp(options: ApiOptions): Hono {
  const { store, registry } = options;
  const logger = options.logger ?? silentLogger;
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

  answerErrors(app, logger);

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
  // Discovery needs a token as on Kubernetes (only /version is public).
  app.use("/apis/*", storeUp, auth);
  app.use("/api/*", storeUp, auth);
  app.use("/openapi/*", storeUp, auth);

  // /metrics names tenants (namespaces, services in route labels): the admin token only.
  app.get("/metrics", async (c) => {
    requireAdmin(principalOf(c), "/metrics");
    c.header("Content-Type", registry.contentType);
    return c.body(await registry.metrics());
  });
  const limit = bodyLimit({
    maxSize: options.bodyLimitBytes,
    onError: (c) => {
      const e = new TooLargeError(
        `request body larger than the ${options.bodyLimitBytes}-byte limit (api.bodyLimitBytes)`,
      );
      return c.json(e.toStatus(), 413);
    },
  });
  app.use("/apis/*", limit);
  app.use("/api/*", limit);

  registerDiscoveryRoutes(app, {
    store,
    configuredNamespaces: options.configuredNamespaces,
    namespaces: options.namespaces,
  });
  registerOpenApiRoutes(app);
  const writes: WriteDeps = {
    store,
    logger,
    domain: options.domain,
    scheme: options.scheme ?? "http",
    limits: options.limits,
    scaling: options.scaling,
    quotaOf: options.quotaOf,
    images: options.images,
  };
  registerResourceRoutes(app, { ...writes, watches, bodyLimitBytes: options.bodyLimitBytes });
  registerTokenRoutes(app, options.tokens, logger);
  if (options.consoleSources) {
    registerLogRoutes(app, {
      store,
      redis: options.consoleSources.redis,
      prefix: options.consoleSources.prefix,
      logger,
      shutdown: options.shutdown,
    });
    registerDescribeRoutes(app, { store, sources: options.consoleSources, logger });
  }
  registerConsole(app, {
    ...writes,
    tokens: options.tokens,
    storeReady: options.storeReady,
    sources: options.consoleSources,
  });
  return app;
}
