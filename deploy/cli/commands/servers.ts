/** Server commands: `skiff api`, `skiff agent`, `skiff scaler` and `skiff up`. */
import type { Command } from "commander";
import { startAgent } from "../../../agent/server.ts";
import { scalerOptionsFromConfig } from "../../../scaler/options.ts";
import { startScaler } from "../../../scaler/server.ts";
import { loadConfig, mergeConfig } from "../../../src/config.ts";
import { createLogger } from "../../../src/logging.ts";
import { handleShutdownSignals } from "../../../src/signals.ts";
import { startApiServer } from "../../api/server.ts";
import { ACL_ROLES, type AclRole, generateAcl } from "../../redis/acl.ts";
import { startUp, type Up } from "../../up.ts";
import { ownsSettings, settingsPath, writeSettings } from "../settings.ts";
import { readTokenFile } from "../token-file.ts";

interface ServerFlags {
  config?: string;
  redisUrl?: string;
  redisSentinels?: string;
  redisMaster?: string;
  host?: string;
  port?: string;
  token?: string;
  tokenFile?: string;
  domain?: string;
}

/** The admin token a server was given: --token, else --token-file / SKIFF_TOKEN_FILE (SKIFF_TOKEN is read with the config). */
function givenToken(flags: ServerFlags): string | undefined {
  if (flags.token) {
    process.stderr.write(
      "warning: --token is visible to every user of this host (ps); use --token-file FILE or SKIFF_TOKEN\n",
    );
    return flags.token;
  }
  const file = flags.tokenFile ?? (process.env.SKIFF_TOKEN_FILE || undefined);
  return file ? readTokenFile(file) : undefined;
}

/** Stop cleanly on SIGINT/SIGTERM: close servers, then exit. */
export function untilSignal(close: () => Promise<void>): void {
  handleShutdownSignals(close);
}

/** A numeric flag, or undefined when absent; refuses junk with the flag's name. */
export function num(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`${flag} ${value}: expected a number`);
  return n;
}

function labels(items: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items ?? []) {
    const i = item.indexOf("=");
    if (i <= 0) throw new Error(`--label ${item}: expected KEY=VALUE`);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

const collect = (value: string, prev: string[] = []) => [...prev, value];

interface AgentFlags extends ServerFlags {
  redisPrefix?: string;
  id?: string;
  address?: string;
  cpu?: string;
  memory?: string;
  maxInstances?: string;
  label?: string[];
  heartbeatInterval?: string;
  heartbeatTtl?: string;
  resyncInterval?: string;
  containers?: boolean;
  dockerSocket?: string;
  isolateProcesses?: string;
  isolateStateDir?: string;
  drainDelay?: string;
  startupTimeout?: string;
  imageRegistry?: string;
  containerFirewall?: string;
}

interface ScalerFlags extends ServerFlags, AutoscalerFlags {
  redisPrefix?: string;
  id?: string;
  lease?: string;
  agentGrace?: string;
  resyncInterval?: string;
  gcInterval?: string;
}

/** A duration flag: Go duration text ("6s") as given, bare digits as milliseconds. */
function duration(value: string | undefined): string | number | undefined {
  if (value === undefined) return undefined;
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** Global autoscaler settings, shared by `skiff scaler` and `skiff up`. */
interface AutoscalerFlags {
  stableWindow?: string;
  panicWindowPercentage?: string;
  scaleToZeroGrace?: string;
  tickInterval?: string;
  targetConcurrency?: string;
  targetUtilization?: string;
  enableScaleToZero?: boolean;
}

function withAutoscalerOptions(cmd: Command): Command {
  return cmd
    .option(
      "--stable-window <duration>",
      "autoscaler stable window, e.g. 60s (6s..1h); env SKIFF_AUTOSCALER_STABLE_WINDOW",
    )
    .option("--panic-window-percentage <percent>", "panic window as % of the stable window (10)")
    .option(
      "--scale-to-zero-grace <duration>",
      "wait after going inactive before removing the last instance, e.g. 30s; env SKIFF_AUTOSCALER_SCALE_TO_ZERO_GRACE_PERIOD",
    )
    .option("--tick-interval <duration>", "autoscaler decision period, e.g. 2s")
    .option("--target-concurrency <n>", "default in-flight requests per instance (100)")
    .option("--target-utilization <percent>", "share of the target aimed for (70)")
    .option("--no-enable-scale-to-zero", "keep at least one instance of every revision");
}

/** The config file's `autoscaler:` section, from flags (absent flags override nothing). */
function autoscalerOverrides(flags: AutoscalerFlags): Record<string, unknown> {
  return {
    stableWindow: duration(flags.stableWindow),
    panicWindowPercentage: num(flags.panicWindowPercentage, "--panic-window-percentage"),
    scaleToZeroGracePeriod: duration(flags.scaleToZeroGrace),
    tickInterval: duration(flags.tickInterval),
    targetConcurrency: num(flags.targetConcurrency, "--target-concurrency"),
    targetUtilizationPercentage: num(flags.targetUtilization, "--target-utilization"),
    // Only an explicit --no-enable-scale-to-zero overrides the config file.
    enableScaleToZero: flags.enableScaleToZero === false ? false : undefined,
  };
}

export function registerServerCommands(program: Command): void {
  program
    .command("redis-acl")
    .description(
      "print the Redis ACL file with one user per role (gateway, agent, scaler, api) for a key prefix",
    )
    .option("--prefix <prefix>", "key prefix of the install", "skiff:")
    .option("--user-prefix <text>", "Redis user names are {text}{role}", "skiff-")
    .option(
      "--passwords-from-env",
      "turn users on with passwords from SKIFF_REDIS_PASSWORD_GATEWAY, _AGENT, _SCALER, _API, _ADMIN (stored as SHA-256)",
    )
    .action((flags: { prefix: string; userPrefix: string; passwordsFromEnv?: boolean }) => {
      const passwords: Partial<Record<AclRole | "admin", string>> = {};
      if (flags.passwordsFromEnv) {
        for (const who of [...ACL_ROLES, "admin" as const]) {
          const value = process.env[`SKIFF_REDIS_PASSWORD_${who.toUpperCase()}`];
          if (value) passwords[who] = value;
        }
      }
      process.stdout.write(
        generateAcl({ prefix: flags.prefix, userPrefix: flags.userPrefix, passwords }),
      );
    });

  program
    .command("api")
    .description("run the deploy API (Knative serving.knative.dev/v1 over HTTP)")
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "Redis holding all state; env REDIS_URL")
    .option(
      "--redis-sentinels <host:port,...>",
      "Redis Sentinel: ask these for the master (with --redis-master); env SKIFF_REDIS_SENTINELS",
    )
    .option(
      "--redis-master <name>",
      "the master group the sentinels monitor; env SKIFF_REDIS_MASTER",
    )
    .option("--host <host>", "listen address (default 127.0.0.1)")
    .option("--port <port>", "listen port (default 8090)")
    .option(
      "--token <token>",
      "admin token (replaces the previous one); prefer --token-file or env SKIFF_TOKEN (generated on first start when absent)",
    )
    .option("--domain <domain>", "domain of service URLs (default localhost)")
    .action(async (_flags: ServerFlags, cmd: Command) => {
      // --token is also the client commands' global flag: commander files it there.
      const flags = cmd.optsWithGlobals<ServerFlags>();
      const config = loadConfig({
        file: flags.config,
        overrides: mergeConfig({
          redisUrl: flags.redisUrl,
          redisSentinels: flags.redisSentinels,
          redisMaster: flags.redisMaster,
          domain: flags.domain,
          api: { host: flags.host, port: flags.port, token: givenToken(flags) },
        }),
      });
      const api = await startApiServer({ config });
      process.stdout.write(`Skiff API listening on ${api.url}\n`);
      if (api.generatedToken) {
        process.stdout.write(
          `Generated API token (shown once, keep it): ${api.generatedToken}\n  export SKIFF_TOKEN=${api.generatedToken}\n`,
        );
      }
      untilSignal(() => api.close());
    });

  program
    .command("agent")
    .description("run the node agent: containers (Docker) and isolates (workerd) on this host")
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "Redis holding all state; env REDIS_URL")
    .option(
      "--redis-sentinels <host:port,...>",
      "Redis Sentinel: ask these for the master (with --redis-master); env SKIFF_REDIS_SENTINELS",
    )
    .option(
      "--redis-master <name>",
      "the master group the sentinels monitor; env SKIFF_REDIS_MASTER",
    )
    .option("--redis-prefix <prefix>", "key prefix; env SKIFF_REDIS_PREFIX")
    .option("--id <id>", "agent id, stable across restarts (default: from hostname and address)")
    .option(
      "--address <ip>",
      "data address instances listen on and gateways connect to",
      "127.0.0.1",
    )
    .option("--host <host>", "listen address of /healthz, /readyz, /metrics", "127.0.0.1")
    .option("--port <port>", "listen port of /healthz, /readyz, /metrics", "8091")
    .option("--cpu <millicores>", "CPU to offer (default: all cores)")
    .option("--memory <bytes>", "memory to offer (default: all)")
    .option("--max-instances <n>", "most instances to run (default 256)")
    .option("--label <KEY=VALUE>", "agent label (repeatable)", collect)
    .option("--heartbeat-interval <ms>", "heartbeat period", "1000")
    .option("--heartbeat-ttl <ms>", "declared dead after this long without a heartbeat", "5000")
    .option("--resync-interval <ms>", "full reconcile period", "5000")
    .option("--no-containers", "offer isolates only (no Docker engine needed)")
    .option("--docker-socket <path>", "Docker engine socket", "/var/run/docker.sock")
    .option("--isolate-processes <n>", "workerd processes (default: one per core)")
    .option("--isolate-state-dir <dir>", "workerd state folder")
    .option("--drain-delay <ms>", "wait after withdrawing an endpoint before stopping", "1000")
    .option("--startup-timeout <ms>", "readiness deadline of a new instance", "60000")
    .option(
      "--image-registry <address>",
      "pull missing images from this registry (default: local images only)",
    )
    .option(
      "--container-firewall <cidrs>",
      "install iptables rules (root) so containers reach neither this host's addresses nor these comma-separated CIDRs (the fleet's control network)",
    )
    .action(async (flags: AgentFlags) => {
      const config = loadConfig({
        file: flags.config,
        overrides: mergeConfig({
          redisUrl: flags.redisUrl,
          redisSentinels: flags.redisSentinels,
          redisMaster: flags.redisMaster,
          redisPrefix: flags.redisPrefix,
          domain: flags.domain,
        }),
      });
      const running = await startAgent({
        handleSignals: true,
        redisUrl: config.redisUrl,
        redisPrefix: config.redisPrefix,
        domain: config.domain,
        urlScheme: config.urlScheme,
        ...(flags.id ? { id: flags.id } : {}),
        address: flags.address,
        host: flags.host,
        port: num(flags.port, "--port"),
        capacity: {
          cpuMillis: num(flags.cpu, "--cpu"),
          memoryBytes: num(flags.memory, "--memory"),
          maxInstances: num(flags.maxInstances, "--max-instances"),
        },
        labels: labels(flags.label),
        heartbeatIntervalMs: num(flags.heartbeatInterval, "--heartbeat-interval"),
        heartbeatTtlMs: num(flags.heartbeatTtl, "--heartbeat-ttl"),
        resyncIntervalMs: num(flags.resyncInterval, "--resync-interval"),
        containers: flags.containers !== false,
        dockerSocket: flags.dockerSocket,
        isolateProcesses: num(flags.isolateProcesses, "--isolate-processes"),
        ...(flags.isolateStateDir ? { isolateStateDir: flags.isolateStateDir } : {}),
        drainDelayMs: num(flags.drainDelay, "--drain-delay"),
        startupTimeoutMs: num(flags.startupTimeout, "--startup-timeout"),
        ...(flags.imageRegistry ? { imageRegistry: { address: flags.imageRegistry } } : {}),
        ...(flags.containerFirewall !== undefined
          ? {
              containerFirewall: {
                blockCidrs: flags.containerFirewall
                  .split(",")
                  .map((c) => c.trim())
                  .filter(Boolean),
              },
            }
          : config.agent.containerFirewall
            ? { containerFirewall: config.agent.containerFirewall }
            : {}),
      });
      process.stdout.write(
        `Skiff agent ${running.agent.id} serving on ${flags.address} (runtimes: ${running.agent.runtimes.join(", ")}); health and metrics at ${running.url}\n`,
      );
    });

  withAutoscalerOptions(program.command("scaler"))
    .description(
      "run the scaler: Knative's autoscaler, placement on agents, routing tables, revision GC (several may run; one leads)",
    )
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "Redis holding all state; env REDIS_URL")
    .option(
      "--redis-sentinels <host:port,...>",
      "Redis Sentinel: ask these for the master (with --redis-master); env SKIFF_REDIS_SENTINELS",
    )
    .option(
      "--redis-master <name>",
      "the master group the sentinels monitor; env SKIFF_REDIS_MASTER",
    )
    .option("--redis-prefix <prefix>", "key prefix; env SKIFF_REDIS_PREFIX")
    .option("--id <id>", "scaler id in the leader lease (default: hostname and a random suffix)")
    .option("--host <host>", "listen address of /healthz, /readyz, /metrics (default 127.0.0.1)")
    .option("--port <port>", "listen port of /healthz, /readyz, /metrics (default 8092)")
    .option("--domain <domain>", "domain of service URLs (default localhost)")
    .option("--lease <ms>", "leader lease; a standby takes over within about this long (3000)")
    .option(
      "--agent-grace <ms>",
      "after a leader change or Redis reconnect, agents without a heartbeat are presumed alive this long (the agents' heartbeat TTL, 5000)",
    )
    .option("--resync-interval <ms>", "full re-read of objects, agents and routes (10000)")
    .option("--gc-interval <ms>", "revision garbage collection period (60000)")
    .action(async (flags: ScalerFlags) => {
      const config = loadConfig({
        file: flags.config,
        overrides: mergeConfig({
          redisUrl: flags.redisUrl,
          redisSentinels: flags.redisSentinels,
          redisMaster: flags.redisMaster,
          redisPrefix: flags.redisPrefix,
          domain: flags.domain,
          scaler: {
            host: flags.host,
            port: flags.port,
            leaseMs: flags.lease,
            agentGraceMs: flags.agentGrace,
            resyncIntervalMs: flags.resyncInterval,
            gcIntervalMs: flags.gcInterval,
          },
          autoscaler: autoscalerOverrides(flags),
        }),
      });
      const scaler = await startScaler({
        ...scalerOptionsFromConfig(config),
        logger: createLogger({ component: "scaler", level: config.log.level }),
        ...(flags.id ? { id: flags.id } : {}),
        handleSignals: true,
      });
      process.stdout.write(
        `Skiff scaler ${scaler.id} running (leads when it holds the lease); health and metrics at ${scaler.adminUrl}\n`,
      );
    });

  withAutoscalerOptions(program.command("up"))
    .description(
      "run a complete single-host Skiff: store, deploy API, gateway, scaler and agent in one process",
    )
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "use this Redis instead of a local one; env REDIS_URL")
    .option("--redis-prefix <prefix>", "key prefix; env SKIFF_REDIS_PREFIX")
    .option("--host <host>", "listen address of the gateway (default 127.0.0.1)")
    .option(
      "--api-host <host>",
      "listen address of the deploy API (default 127.0.0.1); env SKIFF_API_HOST",
    )
    .option("--api-port <port>", "deploy API port (default 8090); env SKIFF_API_PORT")
    .option("--gateway-port <port>", "gateway port (default 8080); env SKIFF_GATEWAY_PORT")
    .option("--domain <domain>", "domain of service URLs (default localhost); env SKIFF_DOMAIN")
    .option(
      "--state-dir <dir>",
      "where local state lives (default ~/.local/state/skiff); env SKIFF_STATE_DIR",
    )
    .option(
      "--token <token>",
      "admin API token (replaces the previous one); prefer --token-file or env SKIFF_TOKEN (generated on first start when absent)",
    )
    .option("--no-containers", "offer isolates only (do not look for a Docker engine)")
    .option("--docker-socket <path>", "Docker engine socket (default /var/run/docker.sock)")
    .action(async (_flags: UpFlags, cmd: Command) => {
      // --token is also the client commands' global flag: commander files it there.
      const flags = cmd.optsWithGlobals<UpFlags>();
      const up = await startUp({
        configFile: flags.config,
        stateDir: flags.stateDir ?? (process.env.SKIFF_STATE_DIR || undefined),
        overrides: upOverrides(flags),
        log: (line) => process.stdout.write(`${line}\n`),
      });
      // Before saying "up": a Ctrl-C right after that line must find the handler.
      untilSignal(() => up.close());
      process.stdout.write(`${cliSettingsForUp(up, settingsPath())}\n`);
      process.stdout.write(
        "Skiff is up. Try: skiff service create hello --source examples/workers/hello.ts (Ctrl-C stops everything)\n",
      );
    });
}

/** `skiff up`'s flags in the configuration's shape (absent flags override nothing). */
export function upOverrides(flags: UpFlags): Record<string, unknown> {
  return mergeConfig({
    redisUrl: flags.redisUrl,
    redisPrefix: flags.redisPrefix,
    domain: flags.domain,
    // --host exposes user traffic only; the API stays on loopback unless --api-host says otherwise.
    api: { host: flags.apiHost, port: flags.apiPort, token: givenToken(flags) },
    gateway: { host: flags.host, port: flags.gatewayPort },
    // Only an explicit --no-containers overrides the config file.
    agent: {
      containers: flags.containers === false ? false : undefined,
      dockerSocket: flags.dockerSocket,
    },
    autoscaler: autoscalerOverrides(flags),
  });
}

/**
 * Point the CLI at this install when its settings file is absent or already
 * this install's; otherwise leave it and say how to reach this one. Returns
 * the line(s) to print.
 */
export function cliSettingsForUp(
  up: Pick<Up, "apiUrl" | "clusterId" | "token">,
  path: string,
): string {
  const own = ownsSettings(path, { apiUrl: up.apiUrl, cluster: up.clusterId });
  if (own.write) {
    // The token is known when generated now or given; otherwise keep the saved one.
    const token = up.token ?? own.previous.token;
    writeSettings({ apiUrl: up.apiUrl, ...(token ? { token } : {}), cluster: up.clusterId }, path);
    return `CLI:      settings written to ${path}`;
  }
  const token = up.token ? "the token above" : "this install's token";
  return [
    `CLI:      ${path} left as is: ${own.reason}. To use this install:`,
    `            skiff --api-url ${up.apiUrl} --token TOKEN ...   (TOKEN: ${token})`,
    `            export SKIFF_API_URL=${up.apiUrl} SKIFF_TOKEN=TOKEN`,
    `            skiff login --api-url ${up.apiUrl} --token TOKEN   (makes it the CLI's default)`,
  ].join("\n");
}

export interface UpFlags extends ServerFlags, AutoscalerFlags {
  redisPrefix?: string;
  apiHost?: string;
  apiPort?: string;
  gatewayPort?: string;
  stateDir?: string;
  containers?: boolean;
  dockerSocket?: string;
}
