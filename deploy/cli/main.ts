#!/usr/bin/env node
/**
 * `skiff`: the servers (api, gateway, scaler, agent, and up: all in one) and
 * the client commands (apply, service, revision, route, token, login).
 *
 * Start-up cost is the CLI's main latency, so only the command being run is
 * loaded: client commands never load server modules, and a server command
 * loads its module (and everything it needs) only when it is the one run.
 * Users run the prebuilt bundle of this file (bin/skiff.js, scripts/build-cli.ts).
 */
import { Command, CommanderError } from "commander";
import { exitCodeOf } from "../../src/errors.ts";
import { ApiClient } from "./client.ts";
import { formatError } from "./format-error.ts";
import { resolveSettings, writeSettings } from "./settings.ts";
import { explicitToken } from "./token-file.ts";

interface GlobalFlags {
  apiUrl?: string;
  token?: string;
  tokenFile?: string;
  namespace: string;
}

/** Server commands: loaded only when run (or asked for help); listed in `skiff --help` from here. */
export const SERVER_COMMANDS: Record<
  string,
  { summary: string; load: (program: Command) => Promise<void> }
> = {
  api: { summary: "run the deploy API (Knative serving.knative.dev/v1 over HTTP)", load: servers },
  agent: {
    summary: "run the node agent: containers (Docker) and isolates (workerd) on this host",
    load: servers,
  },
  scaler: {
    summary: "run the scaler: Knative's autoscaler, placement, routing tables, revision GC",
    load: servers,
  },
  up: {
    summary:
      "run a complete single-host Skiff: store, API, gateway, scaler and agent in one process",
    load: servers,
  },
  "redis-acl": {
    summary: "print the Redis ACL file with one user per role (gateway, agent, scaler, api)",
    load: servers,
  },
  gateway: {
    summary: "run the gateway tier on this host (routes requests by Host; one worker per core)",
    load: async (program) => {
      const { registerGatewayCommand } = await import("./commands/gateway.ts");
      registerGatewayCommand(program);
    },
  },
};

async function servers(program: Command): Promise<void> {
  const { registerServerCommands } = await import("./commands/servers.ts");
  registerServerCommands(program);
}

/** Global options that take a value (so their value is not mistaken for the command). */
const VALUE_OPTIONS = new Set(["--api-url", "--token", "--token-file", "-n", "--namespace"]);

/** The command word of argv (after node and the script), or undefined for none. */
export function commandWord(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return args[i + 1];
    if (!arg.startsWith("-")) return arg === "help" && args[i + 1] ? args[i + 1] : arg;
    if (VALUE_OPTIONS.has(arg)) i++;
  }
  return undefined;
}

export async function buildProgram(args: string[] = []): Promise<Command> {
  const program = new Command("skiff")
    .description(
      "Skiff: serverless on your own hosts (Knative Serving semantics, Docker and JS isolates)",
    )
    .option("--api-url <url>", "deploy API URL; env SKIFF_API_URL (default https://127.0.0.1:8090)")
    .option(
      "--token <token>",
      "API bearer token (visible in ps: prefer --token-file or SKIFF_TOKEN); default: the one `skiff login` saved",
    )
    .option("--token-file <file>", "read the API token from this file; env SKIFF_TOKEN_FILE")
    .option("-n, --namespace <ns>", "namespace", "default")
    .showHelpAfterError()
    .exitOverride();

  const client = (cmd: Command) => {
    const flags = cmd.optsWithGlobals<GlobalFlags>();
    const settings = resolveSettings({ apiUrl: flags.apiUrl, token: explicitToken(flags) });
    return new ApiClient({
      apiUrl: settings.apiUrl,
      token: settings.token,
      caFile: settings.caFile,
      namespace: flags.namespace,
    });
  };

  const word = commandWord(args);
  const server = word !== undefined ? SERVER_COMMANDS[word] : undefined;
  if (server) {
    await server.load(program);
    return program;
  }

  const [{ registerResourceCommands }, { registerTokenCommands }] = await Promise.all([
    import("./commands/resources.ts"),
    import("./commands/tokens.ts"),
  ]);
  registerResourceCommands(program, client);
  registerTokenCommands(program, client);
  // Listed for help; running one re-enters through its loader above.
  for (const [name, { summary }] of Object.entries(SERVER_COMMANDS)) {
    program
      .command(name)
      .description(summary)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments();
  }

  program
    .command("login")
    .description("check and save the API URL and token for later commands")
    .action(async (_opts: unknown, cmd: Command) => {
      const api = client(cmd);
      await api.request("GET", "/apis/serving.knative.dev/v1");
      const { apiUrl, token, caFile } = api.options;
      const path = writeSettings({ apiUrl, token, ...(caFile ? { caFile } : {}) });
      process.stdout.write(`Logged in to ${api.options.apiUrl}; settings saved to ${path}\n`);
    });
  return program;
}

export async function main(argv = process.argv): Promise<number> {
  try {
    const program = await buildProgram(argv.slice(2));
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // commander printed its own usage error already.
    if (err instanceof CommanderError) return err.exitCode;
    process.stderr.write(`${formatError(err)}\n`);
    return exitCodeOf(err);
  }
}

if (import.meta.main) {
  const code = await main();
  // Servers keep running; client commands exit with their status.
  if (code !== 0) process.exit(code);
}
