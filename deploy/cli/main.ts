#!/usr/bin/env node
/**
 * `skiff`: the servers (api, gateway, scaler, agent, and up: all in one) and
 * the client commands (apply, service, revision, route, login).
 */
import { Command, CommanderError } from "commander";
import { isSkiffError } from "../../src/errors.ts";
import { ApiClient, ApiError } from "./client.ts";
import { registerGatewayCommand } from "./commands/gateway.ts";
import { registerResourceCommands } from "./commands/resources.ts";
import { registerServerCommands } from "./commands/servers.ts";
import { registerTokenCommands } from "./commands/tokens.ts";
import { FlagError } from "./service-flags.ts";
import { resolveSettings, writeSettings } from "./settings.ts";
import { explicitToken } from "./token-file.ts";

interface GlobalFlags {
  apiUrl?: string;
  token?: string;
  tokenFile?: string;
  namespace: string;
}

export function buildProgram(): Command {
  const program = new Command("skiff")
    .description(
      "Skiff: serverless on your own hosts (Knative Serving semantics, Docker and JS isolates)",
    )
    .option("--api-url <url>", "deploy API URL; env SKIFF_API_URL (default http://127.0.0.1:8090)")
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
      namespace: flags.namespace,
    });
  };

  registerResourceCommands(program, client);
  registerTokenCommands(program, client);
  registerServerCommands(program);
  registerGatewayCommand(program);

  program
    .command("login")
    .description("check and save the API URL and token for later commands")
    .action(async (_opts: unknown, cmd: Command) => {
      const api = client(cmd);
      await api.request("GET", "/apis/serving.knative.dev/v1");
      const path = writeSettings({ apiUrl: api.options.apiUrl, token: api.options.token });
      process.stdout.write(`Logged in to ${api.options.apiUrl}; settings saved to ${path}\n`);
    });
  return program;
}

export async function main(argv = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    process.stderr.write(`${formatError(err)}\n`);
    return 1;
  }
}

export function formatError(err: unknown): string {
  if (err instanceof ApiError) {
    const causes = err.causes
      .filter((c) => !err.message.includes(c.message))
      .map((c) => `\n  ${c.field ? `${c.field}: ` : ""}${c.message}`)
      .join("");
    return `Error: ${err.message}${causes}`;
  }
  if (err instanceof FlagError || isSkiffError(err)) return `Error: ${err.message}`;
  return `Error: ${(err as Error)?.message ?? String(err)}`;
}

if (import.meta.main) {
  const code = await main();
  // Servers keep running; client commands exit with their status.
  if (code !== 0) process.exit(code);
}
