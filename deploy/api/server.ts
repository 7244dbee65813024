/** `skiff api`: the deploy API as a process, on Redis. */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Redis } from "ioredis";
import type { SkiffConfig } from "../../src/config.ts";
import type { NamespaceQuota } from "../../src/control/apply.ts";
import type { Logger } from "../../src/logging.ts";
import { createLogger } from "../../src/logging.ts";
import { createRegistry, type Registry } from "../../src/metrics.ts";
import { openRedis } from "../../src/redis.ts";
import { createRedisStore } from "../../src/store/index.ts";
import { createApiApp } from "./app.ts";
import { resolveApiToken, TokenStore } from "./token.ts";

export interface ApiServer {
  url: string;
  /** Set when this start generated the token (first start on this Redis). */
  generatedToken?: string;
  close(): Promise<void>;
}

export interface StartApiOptions {
  config: SkiffConfig;
  logger?: Logger;
  registry?: Registry;
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
  const stopWatching = watchRedisState(redis, logger);
  const store = await createRedisStore({ redis, prefix: config.redisPrefix, logger });
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
    storeReady: () => redis.status === "ready",
    quotaOf: (namespace) => quotaFor(config.quotas, namespace),
    domain: config.domain,
    scheme: config.urlScheme,
    bodyLimitBytes: config.api.bodyLimitBytes,
    limits: config.limits,
    scaling: config.autoscaler,
    registry,
    logger,
    watch: config.api.watch,
  });
  const server = serve({ fetch: app.fetch, hostname: config.api.host, port: config.api.port });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", (err) =>
      reject(new Error(`cannot listen on ${config.api.host}:${config.api.port}: ${err.message}`)),
    );
  });
  const { port } = server.address() as AddressInfo;
  const host = config.api.host.includes(":") ? `[${config.api.host}]` : config.api.host;
  const url = `http://${host}:${port}`;
  logger.info({ url }, "deploy API listening");
  const result: ApiServer = {
    url,
    async close() {
      // Watches are open responses: end them, or closing waits for their timeouts.
      shutdown.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.close();
      stopWatching();
      redis.disconnect();
    },
  };
  if (token.generated) result.generatedToken = token.generated;
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

/**
 * Logs "redis connection lost" once when the connection drops (with the first
 * error) and "redis connection back" once it is ready again; the errors of
 * each reconnect attempt in between are counted, not logged.
 */
export function watchRedisState(redis: Redis, logger: Logger): () => void {
  let lost = false;
  let failures = 0;
  let since = 0;
  const onError = (err: Error) => {
    failures += 1;
    if (lost) return;
    lost = true;
    since = Date.now();
    logger.warn({ event: "redis-lost", err: err.message }, "redis connection lost; retrying");
  };
  const onClose = () => {
    if (lost || redis.status === "end") return;
    lost = true;
    since = Date.now();
    failures = 0;
    logger.warn({ event: "redis-lost" }, "redis connection lost; retrying");
  };
  const onReady = () => {
    if (!lost) return;
    logger.info(
      { event: "redis-back", downMs: Date.now() - since, failedAttempts: failures },
      "redis connection back",
    );
    lost = false;
    failures = 0;
  };
  redis.on("error", onError);
  redis.on("close", onClose);
  redis.on("ready", onReady);
  return () => {
    redis.off("close", onClose);
    redis.off("ready", onReady);
    // Keep swallowing errors of a connection being torn down.
    redis.off("error", onError);
    redis.on("error", () => {});
  };
}
