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
import { join } from "node:path";
import { pino } from "pino";
import { agentOptionsFromConfig } from "../agent/options.ts";
import { type RunningAgent, startAgent } from "../agent/server.ts";
import { type Gateway, gatewayOptionsFromConfig, startGateway } from "../gateway/server.ts";
import { scalerOptionsFromConfig } from "../scaler/options.ts";
import { type RunningScaler, startScaler } from "../scaler/server.ts";
import { ensureClusterIdentity } from "../src/cluster.ts";
import {
  configLayers,
  type Layer,
  mergeLayers,
  parseConfig,
  type SkiffConfig,
  uniformLayer,
} from "../src/config.ts";
import type { RuntimeKind } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import { createRegistry } from "../src/metrics.ts";
import { openRedis, quitRedis, redactRedisUrl } from "../src/redis/connect.ts";
import { isMemoryRedisUrl } from "../src/redis/memory.ts";
import { type ApiServer, defaultStateDir, startApiServer } from "./api/server.ts";
import { writeKubeconfig } from "./kubeconfig.ts";
import { localStore } from "./up-store.ts";

export interface UpOptions {
  configFile?: string | undefined;
  stateDir?: string | undefined;
  /** Highest precedence: the flags (a layer naming each one), or settings given in code. */
  overrides?: Layer | Record<string, unknown>;
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
  /** With api.tls: the kubeconfig written for kubectl ({state}/kubeconfig). */
  kubeconfig?: string;
  /** With api.tls: the CA clients trust (PEM file), when known. */
  caFile?: string;
  close(): Promise<void>;
}

export async function startUp(options: UpOptions = {}): Promise<Up> {
  const log = options.log ?? (() => {});
  const env = options.env ?? process.env;
  const stateDir = options.stateDir ?? defaultStateDir(env);
  // defaults < file < environment < flags, as every server command.
  let layers = configLayers({
    file: options.configFile,
    env,
    ...(options.overrides ? { overrides: options.overrides } : {}),
  });

  // Redis named anywhere (file, env, flag) is used as is; otherwise a private one.
  const named = layers.values.redisUrl;
  let stopRedis: (() => Promise<void>) | undefined;
  if (!named) {
    const local = await localStore(stateDir, env, log);
    stopRedis = local.stop;
    layers = mergeLayers([layers, uniformLayer({ redisUrl: local.url }, { kind: "given" })]);
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
    const config = parseConfig(layers.values, layers.origins);
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
      stateDir,
    });
    stops.push({ name: "api", stop: () => api.close() });
    log(`API:      ${api.url}`);
    log(`Console:  ${api.url}/console (log in with the token)`);
    const token = api.generatedToken ?? config.api.token;
    let kubeconfig: string | undefined;
    if (config.api.tls.enabled) {
      kubeconfig = join(stateDir, "kubeconfig");
      const hasToken = writeKubeconfig(kubeconfig, { server: api.url, ca: api.ca, token });
      log(`kubectl:  export KUBECONFIG=${kubeconfig}   (then: kubectl get ksvc)`);
      // The admin token is kept only hashed: a later start cannot write it unless given.
      if (!hasToken) {
        log(
          `          it has no token yet: kubectl config set-credentials skiff --token=TOKEN --kubeconfig ${kubeconfig}`,
        );
      }
    }
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
    if (kubeconfig) result.kubeconfig = kubeconfig;
    if (api.caFile) result.caFile = api.caFile;
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
  return {
    ...agentOptionsFromConfig(config),
    // Under the state folder: a restart after a crash finds and stops stray workerd processes.
    isolateStateDir: config.agent.isolateStateDir ?? join(stateDir, "isolate"),
    logger: logger.child({ component: "agent" }),
    registry: createRegistry({ component: "agent" }),
  };
}
