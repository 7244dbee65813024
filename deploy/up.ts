/**
 * `skiff up`: a complete single-host Skiff in one process. For now it runs the
 * store (REDIS_URL, or a private redis-server with AOF under the state folder)
 * and the deploy API; the gateway, scaler and agent join as they land.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logging.ts";
import { type RedisServer, startRedisServer } from "../src/redis-server.ts";
import { startApiServer } from "./api/server.ts";

export interface UpOptions {
  configFile?: string | undefined;
  stateDir?: string | undefined;
  overrides?: Record<string, unknown>;
  /** Where the human-readable start-up lines go. */
  log?: (line: string) => void;
}

export interface Up {
  apiUrl: string;
  /** The token, when this start generated it or it was given. */
  token?: string;
  redisUrl: string;
  close(): Promise<void>;
}

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "skiff");
}

export async function startUp(options: UpOptions = {}): Promise<Up> {
  const log = options.log ?? (() => {});
  const stateDir = options.stateDir ?? defaultStateDir();
  const explicitRedis = Boolean(
    (options.overrides as { redisUrl?: string } | undefined)?.redisUrl || process.env.REDIS_URL,
  );
  let redisServer: RedisServer | undefined;
  let overrides = options.overrides ?? {};
  if (!explicitRedis) {
    const local = await localRedis(stateDir);
    redisServer = local.server;
    overrides = { ...overrides, redisUrl: local.url };
    log(
      `Store: ${local.reused ? "running" : "started"} redis-server at ${local.url} (data in ${join(stateDir, "redis")}, append-only)`,
    );
  }
  const config = loadConfig({ file: options.configFile, overrides });
  if (explicitRedis) log(`Store: Redis at ${config.redisUrl}`);
  const logger = createLogger({ component: "up", level: config.log.level });
  let api: Awaited<ReturnType<typeof startApiServer>>;
  try {
    api = await startApiServer({ config, logger: logger.child({ component: "api" }) });
  } catch (err) {
    await redisServer?.stop();
    throw err;
  }
  log(`API:     ${api.url}`);
  const token = api.generatedToken ?? config.api.token;
  if (api.generatedToken) log(`Token:   ${api.generatedToken}   (generated now and shown once)`);
  else if (!config.api.token)
    log("Token:   the one generated on first start (kept in your CLI settings)");
  log(
    `Gateway: not part of this build yet (services get URLs like http://NAME.default.${config.domain}:${config.gateway.port})`,
  );
  const result: Up = {
    apiUrl: api.url,
    redisUrl: config.redisUrl,
    async close() {
      await api.close();
      await redisServer?.stop();
    },
  };
  if (token) result.token = token;
  return result;
}

/**
 * Reuse the redis-server this state folder already runs (a previous `skiff up`
 * that was killed), or start one with AOF so that nothing is lost on restart.
 */
async function localRedis(
  stateDir: string,
): Promise<{ url: string; server?: RedisServer; reused: boolean }> {
  const dir = join(stateDir, "redis");
  mkdirSync(dir, { recursive: true });
  const portFile = join(stateDir, "redis.port");
  let previous: number | undefined;
  try {
    previous = Number(readFileSync(portFile, "utf8").trim()) || undefined;
  } catch {}
  if (previous && (await answers(`redis://127.0.0.1:${previous}`))) {
    return { url: `redis://127.0.0.1:${previous}`, reused: true };
  }
  let server: RedisServer;
  try {
    server = await startRedisServer({
      appendonly: true,
      dir,
      ...(previous ? { port: previous } : {}),
    });
  } catch (err) {
    if (previous) server = await startRedisServer({ appendonly: true, dir });
    else {
      throw new Error(
        `no REDIS_URL given and cannot start a local redis-server: ${(err as Error).message}. Install it (apt-get install redis-server) or pass --redis-url`,
      );
    }
  }
  writeFileSync(portFile, `${server.port}\n`);
  return { url: server.url, server, reused: false };
}

async function answers(url: string): Promise<boolean> {
  const probe = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on("error", () => {}); // a refused connection is the answer we look for
  try {
    await probe.connect();
    await probe.ping();
    return true;
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
