/** `skiff apply -f`: create or update Services and Configurations from manifests. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { isSkiffError, SkiffError, UsageError } from "../../../src/errors.ts";
import type { Revision, Route, Service } from "../../../src/model/types.ts";
import type { ApiClient, ClientFactory } from "../client.ts";
import { formatError } from "../format-error.ts";
import { parseOutput, printObject } from "../output.ts";

export function registerApplyCommand(program: Command, client: ClientFactory): void {
  program
    .command("apply")
    .description("create or update Services and Configurations from YAML/JSON manifests")
    .requiredOption("-f, --filename <file>", "manifest file, or - for standard input")
    .option("-o, --output <format>", "print the results as json or yaml")
    .action(async (opts: { filename: string; output?: string }, cmd: Command) => {
      const api = client(cmd);
      const format = parseOutput(opts.output);
      const docs = await readManifests(opts.filename);
      // Like kubectl: every document that can be applied is, in order; each
      // failure is reported as it happens and named again in the summary.
      const failures: string[] = [];
      let applied = 0;
      let skipped = 0;
      for (const [i, doc] of docs.entries()) {
        let what = `document ${i + 1}`;
        try {
          const described = describeDoc(doc, api.namespace);
          what = `${described.kind.toLowerCase()}/${described.name}`;
          if (described.namespace !== api.namespace) what += ` (namespace ${described.namespace})`;
          const { verb, result } = await applyOne(api, doc, described);
          applied++;
          if (format === "table") process.stdout.write(`${what} ${verb}\n`);
          else await printObject(result, format);
        } catch (err) {
          if (!isSkiffError(err)) throw err; // a bug, not this document's fault
          failures.push(`${what}: ${formatError(err).replace(/^Error: /, "")}`);
          process.stderr.write(`${what} failed: ${formatError(err).replace(/^Error: /, "")}\n`);
          // An API that cannot be reached fails every document the same way.
          if (err.code === "UNAVAILABLE") {
            skipped = docs.length - i - 1;
            break;
          }
        }
      }
      if (failures.length > 0) {
        const notTried = skipped > 0 ? `, ${skipped} not attempted (the API is unavailable)` : "";
        throw new SkiffError(
          "INVALID",
          `${failures.length} of ${docs.length} documents failed (${applied} applied${notTried}):\n  ${failures.join("\n  ")}`,
        );
      }
    });
}

async function applyOne(
  api: ApiClient,
  doc: Record<string, unknown>,
  { plural, name, namespace }: ReturnType<typeof describeDoc>,
): Promise<{ verb: string; result: Service | Revision | Route | unknown }> {
  const scoped = namespace === api.namespace ? api : withNamespace(api, namespace);
  const existing = await scoped.find(plural, name);
  if (!existing) return { verb: "created", result: await scoped.create(plural, doc) };
  const body = structuredClone(doc) as { metadata: Record<string, unknown> };
  body.metadata.resourceVersion = existing.metadata.resourceVersion;
  const updated = await scoped.replace(plural, name, body);
  const verb =
    updated.metadata.generation === existing.metadata.generation &&
    JSON.stringify(updated.metadata.labels) === JSON.stringify(existing.metadata.labels)
      ? "unchanged"
      : "configured";
  return { verb, result: updated };
}

async function readManifests(file: string): Promise<Record<string, unknown>[]> {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    throw new UsageError(`-f ${file}: ${(err as Error).message}`);
  }
  const { parseAllDocuments } = await import("yaml");
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: Record<string, unknown>[] = [];
  for (const [i, doc] of list.entries()) {
    if (doc.errors.length)
      throw new UsageError(
        `-f ${file}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`,
      );
    const value = doc.toJS() as unknown;
    if (value == null) continue;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw new UsageError(
        `-f ${file}: document ${i + 1} must be an object with apiVersion and kind`,
      );
    }
    const obj = value as Record<string, unknown>;
    // A kubectl-style List holds several objects.
    if (obj.kind === "List" && Array.isArray(obj.items))
      out.push(...(obj.items as Record<string, unknown>[]));
    else out.push(obj);
  }
  if (!out.length) throw new UsageError(`-f ${file}: no objects found`);
  return out;
}

function describeDoc(doc: Record<string, unknown>, defaultNamespace: string) {
  const kind = doc.kind;
  const plural =
    kind === "Service" ? "services" : kind === "Configuration" ? "configurations" : undefined;
  if (!plural) {
    throw new UsageError(
      `cannot apply kind ${JSON.stringify(kind)}: skiff applies serving.knative.dev/v1 Service and Configuration objects`,
    );
  }
  const meta = (doc.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  if (typeof meta.name !== "string" || !meta.name)
    throw new UsageError(`a ${kind} in the manifest has no metadata.name`);
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
