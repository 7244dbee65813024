/** `skiff revision list|describe|delete`. */
import type { Command } from "commander";
import type { Service } from "../../../src/model/types.ts";
import { Labels } from "../../../src/model/types.ts";
import type { ClientFactory } from "../client.ts";
import { parseOutput, printObject } from "../output.ts";
import { describeRevision, revisionTable } from "../render.ts";

export function registerRevisionCommands(program: Command, client: ClientFactory): void {
  const revision = program
    .command("revision")
    .alias("revisions")
    .description("inspect and delete Revisions");
  revision
    .command("list")
    .description("list Revisions")
    .option("-s, --service <name>", "only this service's revisions")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts: { service?: string; output?: string }, cmd: Command) => {
      const api = client(cmd);
      const selector = opts.service ? `${Labels.service}=${opts.service}` : undefined;
      const items = await api.list("revisions", selector ? { labelSelector: selector } : {});
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject({ items }, format);
      if (!items.length) return void process.stdout.write("No revisions found.\n");
      // Each Service once, for the traffic and tags it gives its revisions.
      const services = new Map<string, Service>();
      for (const svcName of new Set(
        items.map((r) => r.metadata.labels?.[Labels.service]).filter(Boolean),
      )) {
        const svc = await api.find("services", svcName!);
        if (svc) services.set(svcName!, svc);
      }
      process.stdout.write(revisionTable(items, services));
    });
  revision
    .command("describe <name>")
    .description("show a Revision")
    .option("-o, --output <format>", "json or yaml")
    .action(async (name: string, opts: { output?: string }, cmd: Command) => {
      const api = client(cmd);
      const rev = await api.get("revisions", name);
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject(rev, format);
      process.stdout.write(describeRevision(rev));
    });
  revision
    .command("delete <names...>")
    .description("delete Revisions (not the latest one, not one that receives traffic)")
    .action(async (names: string[], _opts: unknown, cmd: Command) => {
      const api = client(cmd);
      for (const name of names) {
        await api.delete("revisions", name);
        process.stdout.write(`Revision '${name}' deleted in namespace '${api.namespace}'.\n`);
      }
    });
}
