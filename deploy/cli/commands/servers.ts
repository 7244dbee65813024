/** Server commands: `skiff api` and `skiff up` (more components join in later issues). */
import type { Command } from "commander";
import { startAgent } from "../../../agent/server.ts";
import { loadConfig, mergeConfig } from "../../../src/config.ts";
import { startApiServer } from "../../api/server.ts";
import { startUp } from "../../up.ts";
import { writeSettings } from "../settings.ts";

interface ServerFlags {
  config?: string;
  redisUrl?: string;
  host?: string;
  port?: string;
  token?: string;
  domain?: string;
}

/** Stop cleanly on SIGINT/SIGTERM: close servers, then exit. */
function untilSignal(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) process.exit(1);
    closing = true;
    process.stderr.write(`skiff: ${signal}, shutting down\n`);
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`skiff: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
}

/** A numeric flag, or undefined when absent; refuses junk with the flag's name. */
function num(value: string | undefined, flag: string): number | undefined {
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
}

export function registerServerCommands(program: Command): void {
  program
    .command("api")
    .description("run the deploy API (Knative serving.knative.dev/v1 over HTTP)")
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "Redis holding all state; env REDIS_URL")
    .option("--host <host>", "listen address (default 127.0.0.1)")
    .option("--port <port>", "listen port (default 8090)")
    .option(
      "--token <token>",
      "bearer token clients must send; env SKIFF_TOKEN (generated on first start when absent)",
    )
    .option("--domain <domain>", "domain of service URLs (default localhost)")
    .action(async (flags: ServerFlags) => {
      const config = loadConfig({
        file: flags.config,
        overrides: mergeConfig({
          redisUrl: flags.redisUrl,
          domain: flags.domain,
          api: { host: flags.host, port: flags.port, token: flags.token },
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
    .action(async (flags: AgentFlags) => {
      const config = loadConfig({
        file: flags.config,
        overrides: mergeConfig({
          redisUrl: flags.redisUrl,
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
      });
      process.stdout.write(
        `Skiff agent ${running.agent.id} serving on ${flags.address} (runtimes: ${running.agent.runtimes.join(", ")}); health and metrics at ${running.url}\n`,
      );
    });

  program
    .command("up")
    .description("run a complete single-host Skiff (for now: Redis + the deploy API)")
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "use this Redis instead of a local one; env REDIS_URL")
    .option("--host <host>", "listen address of the API and gateway (default 127.0.0.1)")
    .option("--api-port <port>", "deploy API port (default 8090); env SKIFF_API_PORT")
    .option("--gateway-port <port>", "gateway port (default 8080); env SKIFF_GATEWAY_PORT")
    .option("--domain <domain>", "domain of service URLs (default localhost); env SKIFF_DOMAIN")
    .option(
      "--state-dir <dir>",
      "where local state lives (default ~/.local/state/skiff); env SKIFF_STATE_DIR",
    )
    .option("--token <token>", "API token; env SKIFF_TOKEN (generated on first start when absent)")
    .action(
      async (
        flags: ServerFlags & { apiPort?: string; gatewayPort?: string; stateDir?: string },
      ) => {
        const up = await startUp({
          configFile: flags.config,
          stateDir: flags.stateDir ?? process.env.SKIFF_STATE_DIR,
          overrides: mergeConfig({
            redisUrl: flags.redisUrl,
            domain: flags.domain,
            api: { host: flags.host, port: flags.apiPort, token: flags.token },
            gateway: { host: flags.host, port: flags.gatewayPort },
          }),
          log: (line) => process.stdout.write(`${line}\n`),
        });
        if (up.token) {
          const path = writeSettings({ apiUrl: up.apiUrl, token: up.token });
          process.stdout.write(`CLI settings written to ${path}\n`);
        }
        untilSignal(() => up.close());
      },
    );
}
