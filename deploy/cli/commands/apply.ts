/** `skiff apply -f`: create or update Services and Configurations from manifests. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { isSkiffError, SkiffError, UsageError } from "../../../src/errors.ts";
import type { Revision, Route, Service } from "../../../src/model/types.ts";
import { inParallel } from "../../../src/parallel.ts";
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
      // Like kubectl: every document that can be applied is; each failure is
      // reported and named again in the summary. Results print in document
      // order. Documents about different objects are independent (a Service
      // or Configuration names no other object), so several go at once; one
      // about an object an earlier document also names waits for it.
      const failures: string[] = [];
      let applied = 0;
      let skipped = 0;
      const outcomes = docs.map(() => Promise.withResolvers<Outcome>());
      const last = new Map<string, Promise<unknown>>();
      let unavailable = false;
      const workers = inParallel(docs.entries(), APPLY_IN_FLIGHT, async ([i, doc]) => {
        const settle = outcomes[i]!;
        if (unavailable) {
          settle.resolve({ what: "", kind: "skipped" });
          return;
        }
        let what = `document ${i + 1}`;
        let described: ReturnType<typeof describeDoc>;
        try {
          described = describeDoc(doc, api.namespace);
        } catch (err) {
          settle.resolve(failed(what, err));
          return;
        }
        what = `${described.kind.toLowerCase()}/${described.name}`;
        if (described.namespace !== api.namespace) what += ` (namespace ${described.namespace})`;
        const key = `${described.namespace}/${described.plural}/${described.name}`;
        const before = last.get(key);
        last.set(key, settle.promise);
        await before;
        try {
          const { verb, result } = await applyOne(api, doc, described);
          settle.resolve({ what, kind: "applied", verb, result });
        } catch (err) {
          const outcome = failed(what, err);
          // An API that cannot be reached fails every document the same way.
          if (outcome.kind === "failed" && outcome.err.code === "UNAVAILABLE") unavailable = true;
          settle.resolve(outcome);
        }
      });
      for (const { promise } of outcomes) {
        const o = await promise;
        if (o.kind === "bug") throw o.err; // a bug, not this document's fault
        if (o.kind === "skipped") skipped++;
        else if (o.kind === "applied") {
          applied++;
          if (format === "table") process.stdout.write(`${o.what} ${o.verb}\n`);
          else await printObject(o.result, format);
        } else {
          const message = formatError(o.err).replace(/^Error: /, "");
          failures.push(`${o.what}: ${message}`);
          process.stderr.write(`${o.what} failed: ${message}\n`);
        }
      }
      await workers;
      if (failures.length > 0) {
        const notTried = skipped > 0 ? `, ${skipped} not attempted (the API is unavailable)` : "";
        throw new SkiffError(
          "INVALID",
          `${failures.length} of ${docs.length} documents failed (${applied} applied${notTried}):\n  ${failures.join("\n  ")}`,
        );
      }
    });
}

/** Documents applied at once (each is a read and a write on the API). */
const APPLY_IN_FLIGHT = 8;

type Outcome =
  | { what: string; kind: "applied"; verb: string; result: unknown }
  | { what: string; kind: "failed"; err: SkiffError }
  | { what: string; kind: "skipped" }
  | { what: string; kind: "bug"; err: unknown };

function failed(what: string, err: unknown): Outcome {
  return isSkiffError(err) ? { what, kind: "failed", err } : { what, kind: "bug", err };
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
