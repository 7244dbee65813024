/** `skiff api`: the deploy API as a process, on Redis. */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { SkiffConfig } from "../../src/config.ts";
import type { Logger } from "../../src/logging.ts";
import { createLogger } from "../../src/logging.ts";
import { createRegistry, type Registry } from "../../src/metrics.ts";
import { openRedis } from "../../src/redis.ts";
import { createRedisStore } from "../../src/store/index.ts";
import { createApiApp } from "./app.ts";
import { resolveApiToken } from "./token.ts";

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
  const redis = await openRedis(config.redisUrl, {
    connectionName: "skiff-api",
    maxRetriesPerRequest: 3,
    logger,
  });
  const store = await createRedisStore({ redis, prefix: config.redisPrefix, logger });
  const token = await resolveApiToken({
    redis,
    prefix: config.redisPrefix,
    given: config.api.token,
  });
  const app = createApiApp({
    store,
    verifyToken: token.verify,
    domain: config.domain,
    scheme: config.urlScheme,
    bodyLimitBytes: config.api.bodyLimitBytes,
    limits: config.limits,
    scaling: config.autoscaler,
    registry,
    logger,
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
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.close();
      redis.disconnect();
    },
  };
  if (token.generated) result.generatedToken = token.generated;
  return result;
}
