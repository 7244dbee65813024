/** Server commands: `skiff api` and `skiff up` (more components join in later issues). */
import type { Command } from "commander";
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
