/**
 * `skiff gateway`: the gateway tier on this host (run as many hosts as you
 * like): `--workers N` (default one per core) gateway processes sharing the
 * port, supervised by this one (gateway/cluster.ts).
 */
import { availableParallelism } from "node:os";
import type { Command } from "commander";
import { startGatewayCluster } from "../../../gateway/cluster.ts";
import { gatewayOptionsFromConfig } from "../../../gateway/server.ts";
import { addConfigFlags } from "../../../src/config/flags.ts";
import type { Layer } from "../../../src/config.ts";
import { UsageError } from "../../../src/errors.ts";
import { num, type ServerFlags, serverConfig, serverFlagLayer, untilSignal } from "./servers.ts";

interface GatewayFlags extends ServerFlags {
  graceMs?: string;
  workers?: string;
}

/** `skiff gateway`'s flags as the top configuration layer (absent flags stay unset). */
export function gatewayFlagsToConfig(flags: GatewayFlags): Layer {
  return serverFlagLayer("gateway", flags);
}

export function registerGatewayCommand(program: Command): void {
  // The configuration flags come from the schema (src/config/gateway.ts).
  addConfigFlags(program.command("gateway"), "gateway")
    .description(
      "run a gateway: routes requests by Host to revisions, splits traffic, holds requests while a revision scales from zero",
    )
    .option("--grace-ms <ms>", "on SIGTERM, how long requests in flight may finish", "10000")
    .option(
      "--workers <n>",
      "gateway processes sharing the port, each a full replica (default: one per core)",
    )
    .action(async (flags: GatewayFlags) => {
      const config = serverConfig("gateway", flags);
      const options = gatewayOptionsFromConfig(config);
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
