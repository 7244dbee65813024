/**
 * `skiff gateway`: the gateway tier on this host (run as many hosts as you
 * like): `--workers N` (default one per core) gateway processes sharing the
 * port, supervised by this one (gateway/cluster.ts).
 */
import { availableParallelism } from "node:os";
import type { Command } from "commander";
import { startGatewayCluster } from "../../../gateway/cluster.ts";
import { gatewayOptionsFromConfig } from "../../../gateway/server.ts";
import { loadConfig, mergeConfig } from "../../../src/config.ts";
import { UsageError } from "../../../src/errors.ts";
import { num, untilSignal } from "./servers.ts";

interface GatewayFlags {
  config?: string;
  redisUrl?: string;
  redisPrefix?: string;
  id?: string;
  host?: string;
  port?: string;
  adminHost?: string;
  adminPort?: string;
  domain?: string;
  queueDepth?: string;
  resyncInterval?: string;
  agentCheckInterval?: string;
  slotLease?: string;
  activationTtl?: string;
  publishPeriod?: string;
  counterTtl?: string;
  trustForwardedHeaders?: boolean;
  headersTimeout?: string;
  keepAliveTimeout?: string;
  maxConnections?: string;
  maxHeaderBytes?: string;
  maxBodyBytes?: string;
  maxQueued?: string;
  graceMs?: string;
  workers?: string;
}

/** Gateway settings from flags, in the configuration's shape (absent flags stay undefined). */
export function gatewayFlagsToConfig(flags: GatewayFlags): Record<string, unknown> {
  return mergeConfig({
    redisUrl: flags.redisUrl,
    redisPrefix: flags.redisPrefix,
    domain: flags.domain,
    gateway: {
      host: flags.host,
      port: num(flags.port, "--port"),
      adminHost: flags.adminHost,
      adminPort: num(flags.adminPort, "--admin-port"),
      queueDepth: num(flags.queueDepth, "--queue-depth"),
      resyncIntervalMs: num(flags.resyncInterval, "--resync-interval"),
      agentCheckIntervalMs: num(flags.agentCheckInterval, "--agent-check-interval"),
      slotLeaseMs: num(flags.slotLease, "--slot-lease"),
      activationTtlMs: num(flags.activationTtl, "--activation-ttl"),
      publishPeriodMs: num(flags.publishPeriod, "--publish-period"),
      counterTtlMs: num(flags.counterTtl, "--counter-ttl"),
      trustForwardedHeaders: flags.trustForwardedHeaders,
      headersTimeoutMs: num(flags.headersTimeout, "--headers-timeout"),
      keepAliveTimeoutMs: num(flags.keepAliveTimeout, "--keep-alive-timeout"),
      maxConnections: num(flags.maxConnections, "--max-connections"),
      maxHeaderBytes: num(flags.maxHeaderBytes, "--max-header-bytes"),
      maxBodyBytes: num(flags.maxBodyBytes, "--max-body-bytes"),
      maxQueued: num(flags.maxQueued, "--max-queued"),
    },
  });
}

export function registerGatewayCommand(program: Command): void {
  program
    .command("gateway")
    .description(
      "run a gateway: routes requests by Host to revisions, splits traffic, holds requests while a revision scales from zero",
    )
    .option("--config <file>", "config file (YAML/JSON); env SKIFF_CONFIG")
    .option("--redis-url <url>", "Redis holding all state; env REDIS_URL")
    .option("--redis-prefix <prefix>", "key prefix; env SKIFF_REDIS_PREFIX")
    .option("--id <id>", "replica id in Redis counters (default: hostname and a random suffix)")
    .option("--host <host>", "listen address of user traffic (default 127.0.0.1)")
    .option("--port <port>", "listen port of user traffic (default 8080); env SKIFF_GATEWAY_PORT")
    .option(
      "--admin-host <host>",
      "listen address of /healthz, /readyz, /metrics (default 127.0.0.1)",
    )
    .option(
      "--admin-port <port>",
      "listen port of /healthz, /readyz, /metrics (default 8081); env SKIFF_GATEWAY_ADMIN_PORT",
    )
    .option("--domain <domain>", "domain of service hosts (default localhost); env SKIFF_DOMAIN")
    .option("--queue-depth <n>", "requests one revision may hold waiting; 503 beyond (10000)")
    .option("--resync-interval <ms>", "full re-read of routes, endpoints and agents (10000)")
    .option("--agent-check-interval <ms>", "how often agent liveness is checked (1000)")
    .option("--slot-lease <ms>", "lease of a containerConcurrency slot (5000)")
    .option(
      "--activation-ttl <ms>",
      "one scale-from-zero signal per revision stands this long (10000)",
    )
    .option("--publish-period <ms>", "how often counters go to Redis for the autoscaler (500)")
    .option("--counter-ttl <ms>", "a stopped gateway's counters vanish after this (3000)")
    .option(
      "--trust-forwarded-headers",
      "keep the client's Forwarded / X-Forwarded-* (only behind a trusted proxy)",
    )
    .option(
      "--headers-timeout <ms>",
      "a request's headers must arrive within this, else 408 (10000)",
    )
    .option("--keep-alive-timeout <ms>", "idle client connections are closed after this (65000)")
    .option("--max-connections <n>", "client connections open at once at most (10000)")
    .option("--max-header-bytes <n>", "largest request head; 431 beyond (16384)")
    .option("--max-body-bytes <n>", "largest request body; 413 beyond (1073741824)")
    .option(
      "--max-queued <n>",
      "requests waiting for an instance across all revisions; 503 beyond (50000)",
    )
    .option("--grace-ms <ms>", "on SIGTERM, how long requests in flight may finish", "10000")
    .option(
      "--workers <n>",
      "gateway processes sharing the port, each a full replica (default: one per core)",
    )
    .action(async (flags: GatewayFlags) => {
      const config = loadConfig({ file: flags.config, overrides: gatewayFlagsToConfig(flags) });
      const options = {
        ...gatewayOptionsFromConfig(config),
        ...(flags.id ? { id: flags.id } : {}),
      };
      const graceMs = num(flags.graceMs, "--grace-ms") ?? 10_000;
      const workers = num(flags.workers, "--workers") ?? availableParallelism();
      if (!Number.isInteger(workers) || workers < 1 || workers > 1024) {
        throw new UsageError(`--workers ${flags.workers}: expected a whole number from 1 to 1024`);
      }
      // Even one worker runs in its own process: supervised (restarted if it
      // dies) and with the V8 flags that keep its memory small.
      const gateway = await startGatewayCluster({ workers, gateway: options, graceMs });
      process.stdout.write(
        `Skiff gateway ${gateway.id} serving on ${gateway.url} (hosts: {service}.{namespace}.${config.domain}${workers > 1 ? `; ${workers} workers` : ""}); health and metrics at ${gateway.adminUrl}\n`,
      );
      untilSignal(() => gateway.close(graceMs));
    });
}
