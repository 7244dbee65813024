/** `skiff service create|update|delete|list|describe`, with kn's flags. */
import type { Command } from "commander";
import { SkiffError } from "../../../src/errors.ts";
import type { Service } from "../../../src/model/types.ts";
import { Labels } from "../../../src/model/types.ts";
import type { ApiClient, ClientFactory } from "../client.ts";
import { parseOutput, printObject } from "../output.ts";
import { describeService, serviceTable } from "../render.ts";
import {
  applyServiceFlags,
  newServiceManifest,
  type ServiceFlags,
  type ServiceManifest,
} from "../service-flags.ts";
import { waitForReady } from "../wait.ts";

const collect = (value: string, prev: string[] = []) => [...prev, value];

/** Flags shared by `service create` and `service update`, named as in kn. */
function serviceFlags(cmd: Command): Command {
  return cmd
    .option("--image <image>", "container image")
    .option("--source <file>", "worker module (.js/.ts, export default { fetch } or Deno.serve)")
    .option("--port <port>", "container port, optionally h2c:PORT")
    .option("-e, --env <KEY=VALUE>", "environment variable (KEY- removes)", collect)
    .option("--env-file <file>", "file of KEY=VALUE lines")
    .option("-a, --annotation <KEY=VALUE>", "revision template annotation (KEY- removes)", collect)
    .option("-l, --label <KEY=VALUE>", "service label (KEY- removes)", collect)
    .option("--scale-min <n>", "minimum instances (autoscaling.knative.dev/min-scale)")
    .option("--scale-max <n>", "maximum instances (autoscaling.knative.dev/max-scale)")
    .option("--scale-target <n>", "target concurrency or rps per instance")
    .option("--scale-init <n>", "instances right after creation")
    .option("--scale-window <duration>", "stable window, e.g. 60s")
    .option("--scale-utilization <pct>", "target utilization percentage")
    .option("--scale-metric <metric>", "concurrency or rps")
    .option("--concurrency-limit <n>", "hard limit of requests per instance (0 = none)")
    .option("--timeout <seconds>", "request timeout (timeoutSeconds)")
    .option("--cmd <command>", "container command")
    .option("--arg <arg>", "container argument (repeatable)", collect)
    .option("--limit <RES=QTY>", "resource limit, cpu=500m or memory=256Mi", collect)
    .option("--network <mode>", "worker outbound network: none or internet")
    .option("--revision-name <name>", "name for the new revision (must start with SERVICE-)")
    .option("--traffic <REF=PCT>", "traffic split; REF is a revision, a tag or @latest", collect)
    .option("--tag <REV=TAG>", "tag a revision (or @latest)", collect)
    .option("--untag <TAG>", "remove a tag", collect)
    .option("--no-wait", "do not wait for the service to become ready")
    .option("--wait-timeout <seconds>", "how long to wait for readiness", "600")
    .option("-o, --output <format>", "print the result as json or yaml");
}

export interface CommonWriteOpts {
  wait?: boolean;
  waitTimeout?: string;
  output?: string;
}

export function registerServiceCommands(program: Command, client: ClientFactory): void {
  const service = program
    .command("service")
    .alias("services")
    .alias("ksvc")
    .description("manage Services");

  serviceFlags(service.command("create <name>").description("create a Service"))
    .option("--force", "replace the service if it exists")
    .action(
      async (
        name: string,
        opts: ServiceFlags & CommonWriteOpts & { force?: boolean },
        cmd: Command,
      ) => {
        const api = client(cmd);
        const manifest = newServiceManifest(name, api.namespace, opts);
        let svc: Service;
        const existing = opts.force ? await api.find("services", name) : undefined;
        if (existing) {
          manifest.metadata.resourceVersion = existing.metadata.resourceVersion;
          svc = await api.replace("services", name, manifest);
        } else {
          svc = await api.create("services", manifest);
        }
        await reportWrite(api, svc, existing ? "replaced" : "created", opts);
      },
    );

  serviceFlags(
    service
      .command("update <name>")
      .description("update a Service (a new revision when the template changes)"),
  ).action(async (name: string, opts: ServiceFlags & CommonWriteOpts, cmd: Command) => {
    const api = client(cmd);
    const svc = await updateWithRetry(api, name, (m) => applyServiceFlags(m, opts));
    await reportWrite(api, svc, "updated", opts);
  });

  service
    .command("delete <names...>")
    .description("delete Services with their Configuration, Route and Revisions")
    .action(async (names: string[], _opts: unknown, cmd: Command) => {
      const api = client(cmd);
      for (const name of names) {
        await api.delete("services", name);
        process.stdout.write(
          `Service '${name}' successfully deleted in namespace '${api.namespace}'.\n`,
        );
      }
    });

  service
    .command("list")
    .description("list Services")
    .option("-A, --all-namespaces", "list across all namespaces")
    .option("-o, --output <format>", "json or yaml")
    .action(async (opts: { allNamespaces?: boolean; output?: string }, cmd: Command) => {
      const api = client(cmd);
      const items = await api.list("services", { allNamespaces: opts.allNamespaces });
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject({ items }, format);
      if (!items.length) return void process.stdout.write(`No services found.\n`);
      process.stdout.write(serviceTable(items, opts.allNamespaces === true));
    });

  service
    .command("describe <name>")
    .description(
      "show a Service: URL, revisions, traffic, conditions, instances per host and recent events",
    )
    .option("-o, --output <format>", "json or yaml")
    .action(async (name: string, opts: { output?: string }, cmd: Command) => {
      const api = client(cmd);
      const svc = await api.get("services", name);
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject(svc, format);
      const revisions = await api.list("revisions", { labelSelector: `${Labels.service}=${name}` });
      // The Service is shown even when its instances cannot be read (an API without the fleet's Redis).
      const details = await api
        .serviceDescription(name)
        .catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }));
      process.stdout.write(describeService(svc, revisions, details));
    });
}

/** Read-modify-write with the resourceVersion; re-read and retry on a 409 race. */
export async function updateWithRetry(
  api: ApiClient,
  name: string,
  change: (m: ServiceManifest) => ServiceManifest,
): Promise<Service> {
  for (let attempt = 1; ; attempt++) {
    const current = await api.get("services", name);
    const manifest: ServiceManifest = {
      apiVersion: "serving.knative.dev/v1",
      kind: "Service",
      metadata: {
        name,
        namespace: current.metadata.namespace,
        resourceVersion: current.metadata.resourceVersion,
        ...(current.metadata.labels ? { labels: current.metadata.labels } : {}),
        ...(current.metadata.annotations ? { annotations: current.metadata.annotations } : {}),
      },
      spec: structuredClone(current.spec),
    };
    try {
      return await api.replace("services", name, change(manifest));
    } catch (err) {
      if (err instanceof SkiffError && err.code === "CONFLICT" && attempt < 5) continue;
      throw err;
    }
  }
}

export async function reportWrite(
  api: ApiClient,
  svc: Service,
  verb: string,
  opts: CommonWriteOpts,
): Promise<void> {
  const format = parseOutput(opts.output);
  let final = svc;
  if (opts.wait !== false)
    final = await waitForReady(api, svc, Number(opts.waitTimeout ?? 600), format === "table");
  if (format !== "table") return printObject(final, format);
  const name = final.metadata.name;
  const latest = final.status.latestCreatedRevisionName;
  process.stdout.write(
    `Service '${name}' ${verb} in namespace '${final.metadata.namespace}'${latest ? ` (latest revision ${latest})` : ""}.\n`,
  );
  if (final.status.url) process.stdout.write(`${final.status.url}\n`);
}
