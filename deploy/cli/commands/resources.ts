/** Client commands: apply, service, revision, route. */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import type { Revision, Route, Service } from "../../../src/model/types.ts";
import { Labels } from "../../../src/model/types.ts";
import { type ApiClient, ApiError, type WatchEvent } from "../client.ts";
import {
  age,
  condition,
  conditionSummary,
  parseOutput,
  printObject,
  readyCell,
  reasonCell,
  table,
} from "../output.ts";
import {
  applyServiceFlags,
  FlagError,
  newServiceManifest,
  type ServiceFlags,
  type ServiceManifest,
} from "../service-flags.ts";

export type ClientFactory = (cmd: Command) => ApiClient;

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

export function registerResourceCommands(program: Command, client: ClientFactory): void {
  program
    .command("apply")
    .description("create or update Services and Configurations from YAML/JSON manifests")
    .requiredOption("-f, --filename <file>", "manifest file, or - for standard input")
    .option("-o, --output <format>", "print the results as json or yaml")
    .action(async (opts: { filename: string; output?: string }, cmd: Command) => {
      const api = client(cmd);
      const format = parseOutput(opts.output);
      const docs = await readManifests(opts.filename);
      for (const doc of docs) {
        const { kind, plural, name, namespace } = describeDoc(doc, api.namespace);
        const scoped = namespace === api.namespace ? api : withNamespace(api, namespace);
        const existing = await scoped.find(plural, name);
        let result: Service | Revision | Route | unknown;
        let verb: string;
        if (existing) {
          const body = structuredClone(doc) as { metadata: Record<string, unknown> };
          body.metadata.resourceVersion = existing.metadata.resourceVersion;
          const updated = await scoped.replace(plural, name, body);
          verb =
            updated.metadata.generation === existing.metadata.generation &&
            JSON.stringify(updated.metadata.labels) === JSON.stringify(existing.metadata.labels)
              ? "unchanged"
              : "configured";
          result = updated;
        } else {
          result = await scoped.create(plural, doc);
          verb = "created";
        }
        if (format === "table") process.stdout.write(`${kind.toLowerCase()}/${name} ${verb}\n`);
        else await printObject(result, format);
      }
    });

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
      const headers = ["NAME", "URL", "LATEST", "AGE", "CONDITIONS", "READY", "REASON"];
      if (opts.allNamespaces) headers.unshift("NAMESPACE");
      process.stdout.write(
        table(
          headers,
          items.map((s) => {
            const row = [
              s.metadata.name,
              s.status.url ?? "",
              s.status.latestCreatedRevisionName ?? "",
              age(s.metadata.creationTimestamp),
              conditionSummary(s),
              readyCell(s),
              reasonCell(s),
            ];
            if (opts.allNamespaces) row.unshift(s.metadata.namespace);
            return row;
          }),
        ),
      );
    });

  service
    .command("describe <name>")
    .description("show a Service: URL, revisions, traffic and conditions")
    .option("-o, --output <format>", "json or yaml")
    .action(async (name: string, opts: { output?: string }, cmd: Command) => {
      const api = client(cmd);
      const svc = await api.get("services", name);
      const format = parseOutput(opts.output);
      if (format !== "table") return printObject(svc, format);
      const revisions = await api.list("revisions", { labelSelector: `${Labels.service}=${name}` });
      process.stdout.write(describeService(svc, revisions));
    });

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
      const services = new Map<string, Service>();
      for (const svcName of new Set(
        items.map((r) => r.metadata.labels?.[Labels.service]).filter(Boolean),
      )) {
        const svc = await api.find("services", svcName!);
        if (svc) services.set(svcName!, svc);
      }
      const rows = items
        .sort((a, b) => generationOf(b) - generationOf(a))
        .map((r) => {
          const svcName = r.metadata.labels?.[Labels.service] ?? "";
          const traffic = services.get(svcName)?.status.traffic ?? [];
          const mine = traffic.filter((t) => t.revisionName === r.metadata.name);
          const pct = mine.reduce((s, t) => s + (t.percent ?? 0), 0);
          const tags = mine.map((t) => t.tag).filter(Boolean);
          return [
            r.metadata.name,
            svcName,
            mine.length ? `${pct}%` : "",
            tags.join(","),
            String(generationOf(r)),
            age(r.metadata.creationTimestamp),
            conditionSummary(r),
            readyCell(r),
            reasonCell(r),
          ];
        });
      process.stdout.write(
        table(
          [
            "NAME",
            "SERVICE",
            "TRAFFIC",
            "TAGS",
            "GENERATION",
            "AGE",
            "CONDITIONS",
            "READY",
            "REASON",
          ],
          rows,
        ),
      );
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
      process.stdout.write(
        table(
          ["NAME", "URL", "READY"],
          items.map((r) => [r.metadata.name, r.status.url ?? "", readyCell(r)]),
        ),
      );
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

interface CommonWriteOpts {
  wait?: boolean;
  waitTimeout?: string;
  output?: string;
}

/** Read-modify-write with the resourceVersion; re-read and retry on a 409 race. */
async function updateWithRetry(
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
      if (err instanceof ApiError && err.status === 409 && err.reason === "Conflict" && attempt < 5)
        continue;
      throw err;
    }
  }
}

async function reportWrite(
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

/**
 * Wait until the current generation is Ready (or failed, or the timeout):
 * watches the Service, so the answer comes as soon as the API writes it;
 * polls only an API that does not stream watches.
 */
export async function waitForReady(
  api: ApiClient,
  svc: Service,
  timeoutSeconds: number,
  progress: boolean,
): Promise<Service> {
  const name = svc.metadata.name;
  const deadline = Date.now() + timeoutSeconds * 1000;
  const readiness = new Readiness(name, timeoutSeconds, progress);
  let current = svc;
  if (readiness.done(current)) return current;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw readiness.timeout();
    // The API ends the stream at the deadline; the signal only guards against one that does not.
    const guard = AbortSignal.timeout(left + 5_000);
    let events: AsyncIterable<WatchEvent<Service>> | undefined;
    try {
      events = await api.watch("services", name, { timeoutSeconds: left / 1000, signal: guard });
    } catch (err) {
      if (guard.aborted) throw readiness.timeout();
      throw err;
    }
    if (!events) return pollUntilReady(api, current, deadline, readiness);
    try {
      for await (const event of events) {
        if (event.type === "ERROR") {
          const status = event.object as unknown as { code?: number; message?: string };
          // The API ended the watch early (e.g. too slow, store interrupted): watch again,
          // unless the token itself is refused now.
          if (status.code === 401 || status.code === 403)
            throw new ApiError(status.code, "Forbidden", status.message ?? "watch refused");
          break;
        }
        if (event.type === "DELETED")
          throw new ApiError(404, "NotFound", `service "${name}" was deleted while waiting`);
        current = event.object;
        if (readiness.done(current)) return current;
      }
    } catch (err) {
      if (guard.aborted) throw readiness.timeout();
      if (err instanceof ApiError) throw err;
      // The connection broke (API restart): watch again until the deadline.
    }
  }
}

/** Readiness of a Service's current generation, with a progress line per change. */
class Readiness {
  readonly #name: string;
  readonly #timeoutSeconds: number;
  readonly #progress: boolean;
  readonly #started = Date.now();
  #last = "";

  constructor(name: string, timeoutSeconds: number, progress: boolean) {
    this.#name = name;
    this.#timeoutSeconds = timeoutSeconds;
    this.#progress = progress;
  }

  /** True when Ready; throws when the generation failed. */
  done(current: Service): boolean {
    const ready = condition(current, "Ready");
    const observed = current.status.observedGeneration === current.metadata.generation;
    const line = ready
      ? `${ready.status}${ready.reason ? ` ${ready.reason}` : ""}: ${ready.message ?? ""}`
      : "";
    if (this.#progress && line && line !== this.#last) {
      const t = ((Date.now() - this.#started) / 1000).toFixed(1).padStart(5);
      process.stderr.write(`${t}s ${line}\n`);
    }
    if (line) this.#last = line;
    if (observed && ready?.status === "True") return true;
    if (observed && ready?.status === "False") {
      throw new ApiError(
        0,
        ready.reason ?? "Failed",
        `service "${this.#name}" failed: ${ready.message ?? ready.reason}`,
      );
    }
    return false;
  }

  timeout(): ApiError {
    return new ApiError(
      0,
      "Timeout",
      `service "${this.#name}" not ready after ${this.#timeoutSeconds}s (last: ${this.#last || "no status"}); check: skiff service describe ${this.#name}`,
    );
  }
}

/** For an API without watch: re-read every 300 ms. */
async function pollUntilReady(
  api: ApiClient,
  svc: Service,
  deadline: number,
  readiness: Readiness,
): Promise<Service> {
  let current = svc;
  for (;;) {
    if (readiness.done(current)) return current;
    if (Date.now() >= deadline) throw readiness.timeout();
    await sleep(300);
    current = await api.get("services", svc.metadata.name);
  }
}

function generationOf(r: Revision): number {
  return Number(r.metadata.labels?.[Labels.configurationGeneration] ?? 0);
}

async function readManifests(file: string): Promise<Record<string, unknown>[]> {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    throw new FlagError(`-f ${file}: ${(err as Error).message}`);
  }
  const { parseAllDocuments } = await import("yaml");
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: Record<string, unknown>[] = [];
  for (const [i, doc] of list.entries()) {
    if (doc.errors.length)
      throw new FlagError(
        `-f ${file}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`,
      );
    const value = doc.toJS() as unknown;
    if (value == null) continue;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw new FlagError(
        `-f ${file}: document ${i + 1} must be an object with apiVersion and kind`,
      );
    }
    const obj = value as Record<string, unknown>;
    // A kubectl-style List holds several objects.
    if (obj.kind === "List" && Array.isArray(obj.items))
      out.push(...(obj.items as Record<string, unknown>[]));
    else out.push(obj);
  }
  if (!out.length) throw new FlagError(`-f ${file}: no objects found`);
  return out;
}

function describeDoc(doc: Record<string, unknown>, defaultNamespace: string) {
  const kind = doc.kind;
  const plural =
    kind === "Service" ? "services" : kind === "Configuration" ? "configurations" : undefined;
  if (!plural) {
    throw new FlagError(
      `cannot apply kind ${JSON.stringify(kind)}: skiff applies serving.knative.dev/v1 Service and Configuration objects`,
    );
  }
  const meta = (doc.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  if (typeof meta.name !== "string" || !meta.name)
    throw new FlagError(`a ${kind} in the manifest has no metadata.name`);
  const namespace =
    typeof meta.namespace === "string" && meta.namespace ? meta.namespace : defaultNamespace;
  return {
    kind: kind as string,
    plural: plural as "services" | "configurations",
    name: meta.name,
    namespace,
  };
}

function withNamespace(api: ApiClient, namespace: string): ApiClient {
  const Ctor = api.constructor as new (o: ApiClient["options"]) => ApiClient;
  return new Ctor({ ...api.options, namespace });
}

function describeService(svc: Service, revisions: Revision[]): string {
  const lines = [
    `Name:       ${svc.metadata.name}`,
    `Namespace:  ${svc.metadata.namespace}`,
    `URL:        ${svc.status.url ?? ""}`,
    `Age:        ${age(svc.metadata.creationTimestamp)}`,
    `Generation: ${svc.metadata.generation} (observed ${svc.status.observedGeneration ?? "-"})`,
    `Latest:     created ${svc.status.latestCreatedRevisionName ?? "-"}, ready ${svc.status.latestReadyRevisionName ?? "-"}`,
    "",
    "Traffic:",
  ];
  for (const t of svc.status.traffic ?? svc.spec.traffic) {
    const who = t.latestRevision
      ? `@latest (${t.revisionName ?? "none ready yet"})`
      : t.revisionName;
    lines.push(
      `  ${String(t.percent ?? 0).padStart(3)}%  ${who}${t.tag ? `  #${t.tag} ${t.url ?? ""}` : ""}`,
    );
  }
  lines.push("", "Revisions:");
  for (const r of revisions.sort((a, b) => generationOf(b) - generationOf(a))) {
    const img = r.spec.containers?.[0]?.image ?? (r.spec.worker ? "worker module" : "");
    lines.push(
      `  ${r.metadata.name}  ${readyCell(r).padEnd(7)}  ${img}  ${age(r.metadata.creationTimestamp)}`,
    );
  }
  lines.push("", "Conditions:");
  for (const c of svc.status.conditions ?? []) {
    lines.push(
      `  ${c.type.padEnd(20)} ${c.status.padEnd(7)} ${c.reason ?? ""}${c.message ? `: ${c.message}` : ""}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function describeRevision(r: Revision): string {
  const c = r.spec.containers?.[0];
  const env = c?.env ?? r.spec.worker?.env ?? [];
  const lines = [
    `Name:        ${r.metadata.name}`,
    `Namespace:   ${r.metadata.namespace}`,
    `Service:     ${r.metadata.labels?.[Labels.service] ?? "-"}`,
    `Generation:  ${generationOf(r)}`,
    `Age:         ${age(r.metadata.creationTimestamp)}`,
    c
      ? `Image:       ${c.image}`
      : `Worker:      ${r.status.workerArtifact?.bytes ?? "?"} bytes compiled`,
    `Concurrency: ${r.spec.containerConcurrency === 0 ? "unlimited" : r.spec.containerConcurrency}`,
    `Timeout:     ${r.spec.timeoutSeconds}s`,
    `Instances:   ${r.status.actualReplicas ?? 0} ready / ${r.status.desiredReplicas ?? 0} desired`,
  ];
  if (env.length) lines.push(`Env:         ${env.map((e) => `${e.name}=${e.value}`).join(", ")}`);
  const ann = Object.entries(r.metadata.annotations ?? {});
  if (ann.length) lines.push(`Annotations: ${ann.map(([k, v]) => `${k}=${v}`).join(", ")}`);
  lines.push("", "Conditions:");
  for (const cond of r.status.conditions ?? []) {
    lines.push(
      `  ${cond.type.padEnd(20)} ${cond.status.padEnd(7)} ${cond.reason ?? ""}${cond.message ? `: ${cond.message}` : ""}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function describeRoute(r: Route): string {
  const lines = [
    `Name:      ${r.metadata.name}`,
    `Namespace: ${r.metadata.namespace}`,
    `URL:       ${r.status.url ?? ""}`,
    "",
    "Traffic:",
  ];
  for (const t of r.status.traffic ?? r.spec.traffic) {
    const who = t.latestRevision
      ? `@latest (${t.revisionName ?? "none ready yet"})`
      : t.revisionName;
    lines.push(
      `  ${String(t.percent ?? 0).padStart(3)}%  ${who}${t.tag ? `  #${t.tag} ${t.url ?? ""}` : ""}`,
    );
  }
  lines.push("", "Conditions:");
  for (const c of r.status.conditions ?? []) {
    lines.push(
      `  ${c.type.padEnd(20)} ${c.status.padEnd(7)} ${c.reason ?? ""}${c.message ? `: ${c.message}` : ""}`,
    );
  }
  return `${lines.join("\n")}\n`;
}
