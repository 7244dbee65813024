/** `skiff deploy [DIR]`: a Workers project (wrangler.toml / wrangler.jsonc) as a worker Service. */
import type { Command } from "commander";
import { UsageError } from "../../../src/errors.ts";
import type { ClientFactory } from "../client.ts";
import type { ServiceManifest } from "../service-flags.ts";
import { buildWorkersProject, CONFIG_FILES, findWranglerConfig } from "../wrangler.ts";
import { type CommonWriteOpts, reportWrite, updateWithRetry } from "./service.ts";

export function registerDeployCommand(program: Command, client: ClientFactory): void {
  program
    .command("deploy [dir]")
    .description(
      "deploy the Workers project in DIR (default: here): wrangler reads and bundles it, Skiff runs it",
    )
    .option(
      "-c, --config <file>",
      `the Workers config (default: ${CONFIG_FILES.join(", ")} in DIR)`,
    )
    .option("--no-wait", "do not wait for the service to become ready")
    .option("--wait-timeout <seconds>", "how long to wait for readiness", "600")
    .option("-o, --output <format>", "json or yaml")
    .action(
      async (
        dir: string | undefined,
        opts: CommonWriteOpts & { config?: string },
        cmd: Command,
      ) => {
        const where = dir ?? ".";
        const configPath = opts.config ?? findWranglerConfig(where);
        if (!configPath) {
          throw new UsageError(
            `no Workers project in ${where}: expected ${CONFIG_FILES.join(", ")} (or --config FILE)`,
          );
        }
        const project = await buildWorkersProject(configPath);
        const api = client(cmd);
        const existing = await api.find("services", project.name);
        const template = { metadata: {}, spec: { worker: project.worker } };
        if (existing) {
          const svc = await updateWithRetry(api, project.name, (m: ServiceManifest) => {
            // A new template: the worker as built now, keeping the service's traffic.
            m.spec.template = template as ServiceManifest["spec"]["template"];
            return m;
          });
          await reportWrite(api, svc, "updated", opts);
        } else {
          const svc = await api.create("services", {
            apiVersion: "serving.knative.dev/v1",
            kind: "Service",
            metadata: { name: project.name, namespace: api.namespace },
            spec: { template },
          });
          await reportWrite(api, svc, "created", opts);
        }
      },
    );
}
