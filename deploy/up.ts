/**
 * `skiff up` (what `npm start` runs): a complete single-host Skiff in one
 * process. The store (REDIS_URL; else a private redis-server with AOF under
 * the state folder; else, with no redis-server installed, an in-process Redis
 * saved to a file in the state folder), the deploy API, the agent (isolates
 * always, containers when a Docker engine answers), the scaler and the
 * gateway, each the same code as its own command, wired to one
 * configuration. Stops in the reverse order of the data flow: scaler (no new
 * decisions), gateway (requests in flight finish), agent (instances drained),
 * API, store.
 */
import { randomBytes } from "node:crypto";
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { pino } from "pino";
import { type RunningAgent, startAgent } from "../agent/server.ts";
import { type Gateway, gatewayOptionsFromConfig, startGateway } from "../gateway/server.ts";
import { scalerOptionsFromConfig } from "../scaler/options.ts";
import { type RunningScaler, startScaler } from "../scaler/server.ts";
import { ensureClusterIdentity } from "../src/cluster.ts";
import {
  configFromEnv,
  loadConfig,
  mergeConfig,
  readConfigFile,
  type SkiffConfig,
} from "../src/config.ts";
import type { RuntimeKind } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import { createRegistry } from "../src/metrics.ts";
import { connectRedis, openRedis, quitRedis, redactRedisUrl } from "../src/redis/connect.ts";
import { isMemoryRedisUrl } from "../src/redis/memory.ts";
import { openMemoryRedisFile } from "../src/redis/memory-file.ts";
import { type RedisServer, startRedisServer } from "../src/redis/server.ts";
import { type ApiServer, startApiServer } from "./api/server.ts";

export interface UpOptions {
  configFile?: string | undefined;
  stateDir?: string | undefined;
  /** Highest precedence (flags), in the configuration's shape. */
  overrides?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Where the human-readable start-up lines go. */
  log?: (line: string) => void;
  /** Structured logs of every component (default: JSON on stderr at the configured level). */
  logger?: Logger;
}

export interface Up {
  apiUrl: string;
  /** User traffic: http://host:port, services answer on Host {name}.{ns}.{domain}. */
  gatewayUrl: string;
  /** The token, when this start generated it or it was given. */
  token?: string;
  /** With credentials: print only redactRedisUrl(redisUrl). */
  redisUrl: string;
  /** This install's cluster id (src/cluster.ts): names it in the CLI settings and agent id. */
  clusterId: string;
  /** What the agent offers: "isolate" always, "container" when Docker answered. */
  runtimes: RuntimeKind[];
  config: SkiffConfig;
  close(): Promise<void>;
}

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "skiff");
}

export async function startUp(options: UpOptions = {}): Promise<Up> {
  const log = options.log ?? (() => {});
  const env = options.env ?? process.env;
  const stateDir = options.stateDir ?? defaultStateDir(env);
  const configFile = options.configFile ?? env.SKIFF_CONFIG;
  let overrides = options.overrides ?? {};

  // Redis named anywhere (file, env, flag) is used as is; otherwise a private one.
  const named = mergeConfig(
    configFile ? readConfigFile(configFile) : {},
    configFromEnv(env),
    overrides,
  ).redisUrl;
  let stopRedis: (() => Promise<void>) | undefined;
  if (!named) {
    const local = await localStore(stateDir, env, log);
    stopRedis = local.stop;
    overrides = mergeConfig(overrides, { redisUrl: local.url });
    log(`Store:    ${local.describe}`);
  }

  const stops: { name: string; stop: () => Promise<void> }[] = [];
  const stopAll = async (logger?: Logger) => {
    for (const { name, stop } of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        logger?.warn({ err, component: name }, "stop failed");
      }
    }
  };
  if (stopRedis) stops.push({ name: "redis", stop: stopRedis });

  try {
    const config = loadConfig({ file: configFile, env, overrides });
    if (named && isMemoryRedisUrl(config.redisUrl)) {
      log(
        `Store:    in-process (${config.redisUrl}), kept in memory only: gone when this process stops`,
      );
    } else if (named) {
      log(`Store:    Redis at ${redactRedisUrl(config.redisUrl)} (prefix ${config.redisPrefix})`);
    }
    const logger =
      options.logger ??
      pino({ level: config.log.level, base: { pid: process.pid } }, pino.destination(2));

    // Created here if this is the install's first start; the agent id and the CLI settings name it.
    const identityRedis = await openRedis(config.redisUrl, { connectionName: "skiff-up" });
    let clusterId: string;
    try {
      clusterId = (await ensureClusterIdentity(identityRedis, config.redisPrefix)).id;
    } finally {
      await quitRedis(identityRedis);
    }
    log(`Cluster:  ${clusterId}`);

    const api: ApiServer = await startApiServer({
      config,
      logger: logger.child({ component: "api" }),
    });
    stops.push({ name: "api", stop: () => api.close() });
    log(`API:      ${api.url}`);
    const token = api.generatedToken ?? config.api.token;
    if (api.generatedToken) log(`Token:    ${api.generatedToken}   (generated now and shown once)`);
    else if (!config.api.token)
      log("Token:    the one generated on first start (kept in your CLI settings)");

    // The agent registers before the scaler's first pass, so that the instances it
    // adopts after a crash are not taken for a dead host's; the gateway meanwhile.
    const [agentR, gatewayR] = await Promise.allSettled([
      startAgent(agentOptions(config, stateDir, logger)),
      startGateway({
        ...gatewayOptionsFromConfig(config),
        logger,
        registry: createRegistry({ component: "gateway" }),
      }),
    ]);
    // Registered in start order: stopAll runs scaler, gateway, agent, API, store.
    if (agentR.status === "fulfilled") {
      const running = agentR.value;
      stops.push({ name: "agent", stop: () => running.stop() });
    }
    if (gatewayR.status === "fulfilled") {
      const running = gatewayR.value;
      stops.push({ name: "gateway", stop: () => running.close(5_000) });
    }
    for (const r of [agentR, gatewayR]) if (r.status === "rejected") throw r.reason;
    const agent = (agentR as PromiseFulfilledResult<RunningAgent>).value;
    const gateway = (gatewayR as PromiseFulfilledResult<Gateway>).value;
    const scaler: RunningScaler = await startScaler({
      ...scalerOptionsFromConfig(config),
      logger: logger.child({ component: "scaler" }),
      registry: createRegistry({ component: "scaler" }),
    });
    stops.push({ name: "scaler", stop: () => scaler.stop() });

    log(`Gateway:  ${gateway.url}`);
    const port = gateway.port === 80 ? "" : `:${gateway.port}`;
    log(
      `Services: http://{name}.default.${config.domain}${port} (other namespaces: {name}.{namespace})`,
    );
    const runtimes = agent.agent.runtimes;
    const socket = agent.agent.options.dockerSocket;
    if (runtimes.includes("container")) {
      log(`Runtimes: isolates and containers (Docker at ${socket})`);
    } else if (!config.agent.containers) {
      log("Runtimes: isolates only (containers turned off: --no-containers or agent.containers)");
    } else {
      log(
        `Runtimes: isolates only: no Docker engine answered at ${socket}; container revisions report RuntimeUnavailable until Docker runs and skiff up restarts`,
      );
    }
    const a = config.autoscaler;
    log(
      `Scaling:  stable window ${seconds(a.stableWindow)}, scale to zero after ${seconds(a.scaleToZeroGracePeriod)} more without traffic${a.enableScaleToZero ? "" : " (disabled)"}`,
    );
    log(
      `Admin:    gateway ${gateway.adminUrl}, agent ${agent.url}, scaler ${scaler.adminUrl} (/healthz /readyz /metrics)`,
    );
    await scaler.whenLeading();

    const result: Up = {
      apiUrl: api.url,
      gatewayUrl: gateway.url,
      redisUrl: config.redisUrl,
      clusterId,
      runtimes,
      config,
      close: () => stopAll(logger),
    };
    if (token) result.token = token;
    return result;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(3))}s`;

function agentOptions(
  config: SkiffConfig,
  stateDir: string,
  logger: Logger,
): Parameters<typeof startAgent>[0] {
  const { host, port, address, containers, ...tuning } = config.agent;
  const options: Record<string, unknown> = {
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    domain: config.domain,
    urlScheme: config.urlScheme,
    host,
    port,
    address,
    containers,
    // Under the state folder: a restart after a crash finds and stops stray workerd processes.
    isolateStateDir: join(stateDir, "isolate"),
    logger: logger.child({ component: "agent" }),
    registry: createRegistry({ component: "agent" }),
  };
  for (const [key, value] of Object.entries(tuning)) if (value !== undefined) options[key] = value;
  return options;
}

/** Whether an executable of this name is on PATH. */
function onPath(name: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

interface LocalStore {
  url: string;
  stop: () => Promise<void>;
  /** The start-up line saying which store is in use. */
  describe: string;
}

/**
 * The store when no Redis is named: reuse the redis-server this state folder
 * already runs (a previous `skiff up` that was killed), or start one with AOF
 * so that nothing is lost on restart; without redis-server on PATH, the
 * in-process Redis kept in a snapshot file under the state folder.
 */
async function localStore(
  stateDir: string,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): Promise<LocalStore> {
  const dir = join(stateDir, "redis");
  const portFile = join(stateDir, "redis.port");
  let previous: number | undefined;
  try {
    previous = Number(readFileSync(portFile, "utf8").trim()) || undefined;
  } catch {}
  const password = redisPassword(stateDir);
  const withAuth = (port: number) => `redis://:${password.value}@127.0.0.1:${port}`;
  const auth = `password in ${password.file}`;
  // One that answers without a password is not ours as it must be (see stopOpenRedisOfDir).
  if (previous) await stopOpenRedisOfDir(previous, dir);
  // Still open: someone else's server took the port (a wrong password would not be refused there).
  const taken = previous !== undefined && (await answers(`redis://127.0.0.1:${previous}`));
  if (previous && !taken && (await answers(withAuth(previous)))) {
    // Left running by a run that was killed: ours again, stopped with us.
    const url = withAuth(previous);
    return {
      url,
      stop: () => shutdownRedis(url),
      describe: `running redis-server at ${redactRedisUrl(url)} (data in ${dir}, append-only, ${auth})`,
    };
  }
  if (!onPath("redis-server", env)) {
    const file = join(stateDir, "store.json");
    const mem = await openMemoryRedisFile({
      file,
      onError: (err) => log(`Store:    saving ${file} failed (retrying): ${err.message}`),
    });
    const kept = mem.restored ? `, ${mem.restored} keys restored` : "";
    return {
      url: mem.url,
      stop: () => mem.stop(),
      describe: `in-process (redis-server is not on PATH), saved to ${file}${kept}; install redis-server (or pass --redis-url) for a store that separate processes can share`,
    };
  }
  mkdirSync(dir, { recursive: true });
  let server: RedisServer;
  try {
    server = await startRedisServer({
      appendonly: true,
      dir,
      detached: true,
      password: password.value,
      ...(previous ? { port: previous } : {}),
    });
  } catch (err) {
    if (!previous) {
      throw new Error(
        `cannot start a local redis-server: ${(err as Error).message}; pass --redis-url to use another Redis`,
      );
    }
    // The port of the last run is taken by something else: any free one will do.
    server = await startRedisServer({
      appendonly: true,
      dir,
      detached: true,
      password: password.value,
    });
  }
  writeFileSync(portFile, `${server.port}\n`);
  return {
    url: server.url,
    stop: () => server.stop(),
    describe: `started redis-server at ${redactRedisUrl(server.url)} (data in ${dir}, append-only, ${auth})`,
  };
}

/**
 * The password of the redis-server `skiff up` runs: generated on first start,
 * kept in `{stateDir}/redis.password` (mode 0600, folder 0700) and reused, so a
 * restart finds its data and a running server again. Containers and other
 * users of the host cannot read it.
 */
export function redisPassword(stateDir: string): { value: string; file: string } {
  const file = join(stateDir, "redis.password");
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  let value = "";
  try {
    value = readFileSync(file, "utf8").trim();
  } catch {}
  if (!value) {
    value = randomBytes(24).toString("hex");
    // wx: two starts racing on a fresh folder must not end up with two passwords.
    try {
      writeFileSync(file, `${value}\n`, { mode: 0o600, flag: "wx" });
    } catch {
      value = readFileSync(file, "utf8").trim();
    }
  }
  // A copy restored from a backup may have come back readable by others.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return { value, file };
}

/**
 * A redis-server without a password on the last run's port that serves this
 * state folder's data was started by a Skiff from before passwords: stop it
 * (SHUTDOWN syncs the AOF), so that ours starts on the same data with a
 * password. A server of anyone else (another data folder) is left alone.
 */
async function stopOpenRedisOfDir(port: number, dir: string): Promise<void> {
  const url = `redis://127.0.0.1:${port}`;
  if (!(await answers(url))) return;
  const r = connectRedis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on("error", () => {});
  try {
    await r.connect();
    const [, served] = (await r.config("GET", "dir")) as [string, string];
    if (served !== resolve(dir)) return;
  } catch {
    return;
  } finally {
    r.disconnect();
  }
  await shutdownRedis(url);
}

/** Stop a redis-server an earlier run started: SHUTDOWN syncs the AOF first. */
async function shutdownRedis(url: string): Promise<void> {
  const r = connectRedis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on("error", () => {});
  try {
    await r.connect();
    await r.shutdown();
  } catch {
    // SHUTDOWN closes the connection instead of replying.
  } finally {
    r.disconnect();
  }
}

async function answers(url: string): Promise<boolean> {
  const probe = connectRedis(url, {
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
