/** `skiff route list|describe`: Routes are read-only (they change through their Service). */
import type { Command } from "commander";
import type { ClientFactory } from "../client.ts";
import { parseOutput, printObject } from "../output.ts";
import { describeRoute, routeTable } from "../render.ts";

export function registerRouteCommands(program: Command, client: ClientFactory): void {
  const route = program
    .command("route")
    .alias("routes")
    .description("inspect Routes (change them through their Service)");
  route
    .command("list")
    .description("list Routes")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts: { output?: string }, cmd: Command) => {
      const api = client(cmd);
      const items = await api.list("routes");
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject({ items }, format);
      if (!items.length) return void process.stdout.write("No routes found.\n");
      process.stdout.write(routeTable(items));
    });
  route
    .command("describe <name>")
    .description("show a Route's traffic")
    .option("-o, --output <format>", "json or yaml")
    .action(async (name: string, opts: { output?: string }, cmd: Command) => {
      const api = client(cmd);
      const r = await api.get("routes", name);
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject(r, format);
      process.stdout.write(describeRoute(r));
    });
}
