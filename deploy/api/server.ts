/** `skiff api`: the deploy API as a process, on Redis. */
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import type { SkiffConfig } from "../../src/config.ts";
import type { NamespaceQuota } from "../../src/control/quota.ts";
import { UnavailableError } from "../../src/errors.ts";
import type { Logger } from "../../src/logging.ts";
import { createLogger } from "../../src/logging.ts";
import { createRegistry, type Registry, redisUpGauge } from "../../src/metrics.ts";
import { openRedis } from "../../src/redis/connect.ts";
import { RedisHealth } from "../../src/redis/health.ts";
import { createRedisStore } from "../../src/store/index.ts";
import { createApiApp } from "./app.ts";
import { NamespaceStore } from "./namespaces.ts";
import { tlsMaterial } from "./tls.ts";
import { resolveApiToken, TokenStore } from "./token.ts";

export interface ApiServer {
  url: string;
  /** With TLS: the CA clients should trust (PEM), when known (generated, or api.tls.caFile). */
  ca?: string;
  /** Where that CA is on disk (the CLI's settings name it). */
  caFile?: string;
  /** Set when this start generated the token (first start on this Redis). */
  generatedToken?: string;
  close(): Promise<void>;
}

export interface StartApiOptions {
  config: SkiffConfig;
  logger?: Logger;
  registry?: Registry;
  /** The state folder: generated TLS material goes in its tls/ unless api.tls.dir says otherwise. */
  stateDir?: string;
}

export async function startApiServer(options: StartApiOptions): Promise<ApiServer> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ component: "api", level: config.log.level });
  const registry = options.registry ?? createRegistry({ component: "api", defaults: true });
  // A command that gets no answer (Redis hung, not gone) fails within the
  // timeout: clients get a 503 in seconds, never a request that hangs.
  const redis = await openRedis(config.redisUrl, {
    connectionName: "skiff-api",
    maxRetriesPerRequest: 1,
    commandTimeout: 3_000,
  });
  // Without a listener ioredis prints "[ioredis] Unhandled error event" and a
  // stack for every failed reconnect; one structured line per change instead.
  const health = new RedisHealth(redis, logger, {
    whileLost: "answering 503 until it is back",
  });
  redisUpGauge(registry, () => health.up);
  const store = await createRedisStore({
    redis,
    prefix: config.redisPrefix,
    logger: health.quietLogger,
    registry,
  });
  const token = await resolveApiToken({
    redis,
    prefix: config.redisPrefix,
    given: config.api.token,
  });
  const shutdown = new AbortController();
  const app = createApiApp({
    store,
    shutdown: shutdown.signal,
    onStoreResubscribe: (listener) => store.onResubscribe(listener),
    tokens: new TokenStore(redis, config.redisPrefix),
    namespaces: new NamespaceStore(redis, config.redisPrefix),
    storeReady: () => redis.status === "ready",
    quotaOf: (namespace) => quotaFor(config.quotas, namespace),
    configuredNamespaces: Object.keys(config.quotas.namespaces),
    domain: config.domain,
    scheme: config.urlScheme,
    bodyLimitBytes: config.api.bodyLimitBytes,
    limits: config.limits,
    scaling: config.autoscaler,
    images: config.images,
    registry,
    logger,
    watch: config.api.watch,
    consoleSources: { redis, prefix: config.redisPrefix },
  });
  const tls = config.api.tls.enabled
    ? tlsMaterial(
        config.api.tls,
        config.api.tls.dir ?? join(options.stateDir ?? defaultStateDir(), "tls"),
        config.api.host,
      )
    : undefined;
  const server = serve({
    fetch: app.fetch,
    hostname: config.api.host,
    port: config.api.port,
    ...(tls
      ? { createServer: createHttpsServer, serverOptions: { cert: tls.cert, key: tls.key } }
      : {}),
  });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", (err) =>
      reject(
        new UnavailableError(
          `cannot listen on ${config.api.host}:${config.api.port}: ${err.message}; free the port or set api.port (--port)`,
        ),
      ),
    );
  });
  const { port } = server.address() as AddressInfo;
  const host = config.api.host.includes(":") ? `[${config.api.host}]` : config.api.host;
  const url = `${tls ? "https" : "http"}://${host}:${port}`;
  logger.info({ url }, "deploy API listening");
  const result: ApiServer = {
    url,
    async close() {
      // Watches are open responses: end them, or closing waits for their timeouts.
      shutdown.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.close();
      health.close();
      redis.disconnect();
    },
  };
  if (token.generated) result.generatedToken = token.generated;
  if (tls?.ca) result.ca = tls.ca;
  if (tls?.caFile) result.caFile = tls.caFile;
  return result;
}

/** The quota of one namespace: its overrides over the cluster defaults. */
export function quotaFor(quotas: SkiffConfig["quotas"], namespace: string): NamespaceQuota {
  const own = Object.hasOwn(quotas.namespaces, namespace)
    ? quotas.namespaces[namespace]
    : undefined;
  return {
    services: own?.services ?? quotas.services,
    revisions: own?.revisions ?? quotas.revisions,
    artifactBytes: own?.artifactBytes ?? quotas.artifactBytes,
  };
}

/** Where `skiff up` and `skiff api` keep local state: $XDG_STATE_HOME/skiff, else ~/.local/state/skiff. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "skiff");
}
