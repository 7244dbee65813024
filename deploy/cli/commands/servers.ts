/** Server commands: `skiff api`, `skiff agent`, `skiff scaler` and `skiff up`. */
import type { Command } from "commander";
import { agentOptionsFromConfig } from "../../../agent/options.ts";
import { startAgent } from "../../../agent/server.ts";
import { scalerOptionsFromConfig } from "../../../scaler/options.ts";
import { startScaler } from "../../../scaler/server.ts";
import { addConfigFlags, flagLayer } from "../../../src/config/flags.ts";
import type { ServerCommand } from "../../../src/config/meta.ts";
import { type Layer, loadConfig, mergeLayers, type SkiffConfig } from "../../../src/config.ts";
import { UsageError } from "../../../src/errors.ts";
import { createLogger } from "../../../src/logging.ts";
import { handleShutdownSignals } from "../../../src/signals.ts";
import { startApiServer } from "../../api/server.ts";
import { ACL_ROLES, type AclRole, generateAcl } from "../../redis/acl.ts";
import { startUp, type Up } from "../../up.ts";
import { ownsSettings, settingsPath, writeSettings } from "../settings.ts";
import { readTokenFile } from "../token-file.ts";

/** What commander parsed for a server command: its configuration flags and a few of its own. */
export interface ServerFlags extends Record<string, unknown> {
  config?: string;
  token?: string;
  tokenFile?: string;
}

/**
 * The admin token given to `api` / `up` on the command line: --token (with a
 * warning), else --token-file / SKIFF_TOKEN_FILE, as a layer above SKIFF_TOKEN
 * and the config file.
 */
function tokenLayer(flags: ServerFlags): Layer | undefined {
  if (flags.token) {
    process.stderr.write(
      "warning: --token is visible to every user of this host (ps); use --token-file FILE or SKIFF_TOKEN\n",
    );
    return undefined; // already in the flag layer
  }
  const fromFlag = flags.tokenFile;
  const file = fromFlag ?? (process.env.SKIFF_TOKEN_FILE || undefined);
  if (!file) return undefined;
  return {
    values: { api: { token: readTokenFile(file) } },
    origins: new Map([
      [
        "api.token",
        fromFlag
          ? { kind: "flag", flag: "--token-file" }
          : { kind: "env", name: "SKIFF_TOKEN_FILE" },
      ],
    ]),
  };
}

/** A server command's flags as the top configuration layer (absent flags override nothing). */
export function serverFlagLayer(command: ServerCommand, flags: ServerFlags): Layer {
  const token = command === "api" || command === "up" ? tokenLayer(flags) : undefined;
  return mergeLayers([flagLayer(command, flags), token]);
}

/** The configuration of a server command: defaults < file < environment < flags. */
export function serverConfig(command: ServerCommand, flags: ServerFlags): SkiffConfig {
  return loadConfig({ file: flags.config, overrides: serverFlagLayer(command, flags) });
}

/** Stop cleanly on SIGINT/SIGTERM: close servers, then exit. */
export function untilSignal(close: () => Promise<void>): void {
  handleShutdownSignals(close);
}

/** A numeric flag, or undefined when absent; refuses junk with the flag's name. */
export function num(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`${flag} ${value}: expected a number`);
  return n;
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

  addConfigFlags(program.command("api"), "api")
    .description("run the deploy API (Knative serving.knative.dev/v1 over HTTP)")
    .action(async (_flags: ServerFlags, cmd: Command) => {
      // --token is also the client commands' global flag: commander files it there.
      const config = serverConfig("api", cmd.optsWithGlobals<ServerFlags>());
      const api = await startApiServer({ config });
      process.stdout.write(`Skiff API listening on ${api.url}\n`);
      if (api.caFile) {
        process.stdout.write(
          `Clients trust the CA in ${api.caFile} (kubeconfig certificate-authority, SKIFF_CA_FILE for the CLI)\n`,
        );
      }
      if (api.generatedToken) {
        process.stdout.write(
          `Generated API token (shown once, keep it): ${api.generatedToken}\n  export SKIFF_TOKEN=${api.generatedToken}\n`,
        );
      }
      untilSignal(() => api.close());
    });

  addConfigFlags(program.command("agent"), "agent")
    .description("run the node agent: containers (Docker) and isolates (workerd) on this host")
    .action(async (flags: ServerFlags) => {
      const config = serverConfig("agent", flags);
      const running = await startAgent({
        ...agentOptionsFromConfig(config),
        logger: createLogger({ component: "agent", level: config.log.level }),
        handleSignals: true,
      });
      process.stdout.write(
        `Skiff agent ${running.agent.id} serving on ${config.agent.address} (runtimes: ${running.agent.runtimes.join(", ")}); health and metrics at ${running.url}\n`,
      );
    });

  addConfigFlags(program.command("scaler"), "scaler")
    .description(
      "run the scaler: Knative's autoscaler, placement on agents, routing tables, revision GC (several may run; one leads)",
    )
    .action(async (flags: ServerFlags) => {
      const config = serverConfig("scaler", flags);
      const scaler = await startScaler({
        ...scalerOptionsFromConfig(config),
        logger: createLogger({ component: "scaler", level: config.log.level }),
        handleSignals: true,
      });
      process.stdout.write(
        `Skiff scaler ${scaler.id} running (leads when it holds the lease); health and metrics at ${scaler.adminUrl}\n`,
      );
    });

  addConfigFlags(program.command("up"), "up")
    .description(
      "run a complete single-host Skiff: store, deploy API, gateway, scaler and agent in one process",
    )
    .option(
      "--state-dir <dir>",
      "where local state lives (default ~/.local/state/skiff); env SKIFF_STATE_DIR",
    )
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

/** `skiff up`'s flags as the top configuration layer (absent flags override nothing). */
export function upOverrides(flags: UpFlags): Layer {
  return serverFlagLayer("up", flags);
}

/**
 * Point the CLI at this install when its settings file is absent or already
 * this install's; otherwise leave it and say how to reach this one. Returns
 * the line(s) to print.
 */
export function cliSettingsForUp(
  up: Pick<Up, "apiUrl" | "clusterId" | "token" | "caFile">,
  path: string,
): string {
  const own = ownsSettings(path, { apiUrl: up.apiUrl, cluster: up.clusterId });
  if (own.write) {
    // The token is known when generated now or given; otherwise keep the saved one.
    const token = up.token ?? own.previous.token;
    writeSettings(
      {
        apiUrl: up.apiUrl,
        ...(token ? { token } : {}),
        ...(up.caFile ? { caFile: up.caFile } : {}),
        cluster: up.clusterId,
      },
      path,
    );
    return `CLI:      settings written to ${path}`;
  }
  const token = up.token ? "the token above" : "this install's token";
  return [
    `CLI:      ${path} left as is: ${own.reason}. To use this install:`,
    `            skiff --api-url ${up.apiUrl} --token TOKEN ...   (TOKEN: ${token})`,
    `            export SKIFF_API_URL=${up.apiUrl} SKIFF_TOKEN=TOKEN${up.caFile ? ` SKIFF_CA_FILE=${up.caFile}` : ""}`,
    `            skiff login --api-url ${up.apiUrl} --token TOKEN   (makes it the CLI's default)`,
  ].join("\n");
}

export interface UpFlags extends ServerFlags {
  stateDir?: string;
}
