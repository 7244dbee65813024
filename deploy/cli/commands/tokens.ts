/** `skiff token create|list|revoke`: namespaced API tokens (the admin token only). */
import type { Command } from "commander";
import type { ClientFactory } from "../client.ts";
import { age, parseOutput, printObject, table } from "../output.ts";

const TOKENS = "/apis/skiff.dev/v1/tokens";

interface TokenObject {
  metadata: { name: string; creationTimestamp?: string };
  spec: { role: string; namespaces: string[] };
  status?: { token?: string };
}

const collect = (value: string, prev: string[] = []) => [
  ...prev,
  ...value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
];

export function registerTokenCommands(program: Command, client: ClientFactory): void {
  const token = program
    .command("token")
    .alias("tokens")
    .description("manage API tokens scoped to namespaces (needs the admin token)");

  token
    .command("create <name>")
    .description("create a token for some namespaces; prints the secret once")
    .requiredOption(
      "--namespaces <ns,...>",
      "namespaces the token may use (repeatable or comma-separated)",
      collect,
    )
    .option("--role <role>", "view (read only) or edit (read and write)", "view")
    .option("-o, --output <format>", "print the token object as json or yaml")
    .action(
      async (
        name: string,
        opts: { namespaces: string[]; role: string; output?: string },
        cmd: Command,
      ) => {
        const format = parseOutput(opts.output);
        const made = (await client(cmd).request("POST", TOKENS, {
          apiVersion: "skiff.dev/v1",
          kind: "Token",
          metadata: { name },
          spec: { role: opts.role, namespaces: opts.namespaces },
        })) as TokenObject;
        if (format !== "table") return printObject(made, format);
        process.stdout.write(
          `token/${name} created (role ${made.spec.role} in ${made.spec.namespaces.join(", ")})\n` +
            `Secret (shown once; Skiff keeps only its SHA-256): ${made.status?.token}\n` +
            "  Store it in a file readable only by you and use --token-file FILE, or set SKIFF_TOKEN.\n",
        );
      },
    );

  token
    .command("list")
    .alias("ls")
    .description("list tokens (names, roles and namespaces; never the secrets)")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts: { output?: string }, cmd: Command) => {
      const format = parseOutput(opts.output);
      const list = (await client(cmd).request("GET", TOKENS)) as { items: TokenObject[] };
      if (format !== "table") return printObject(list, format);
      process.stdout.write(
        table(
          ["NAME", "ROLE", "NAMESPACES", "AGE"],
          list.items.map((t) => [
            t.metadata.name,
            t.spec.role,
            t.spec.namespaces.join(","),
            age(t.metadata.creationTimestamp),
          ]),
        ),
      );
    });

  token
    .command("revoke <name>")
    .alias("delete")
    .description("revoke a token: every API replica refuses it from now on")
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      await client(cmd).request("DELETE", `${TOKENS}/${encodeURIComponent(name)}`);
      process.stdout.write(`token/${name} revoked\n`);
    });
}
