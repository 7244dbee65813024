/**
 * Turn an untrusted body into a parsed, validated write plus (for workers) the
 * compiled bundle. Runs before the store transaction: parsing and compiling
 * are pure, so a transaction retry never repeats them.
 */
import type {
  CompiledWorker,
  ParsedConfiguration,
  ParsedService,
} from "../../src/control/apply.ts";
import { compileWorker, parseConfiguration, parseService } from "../../src/model/index.ts";
import type { WorkerSpec } from "../../src/model/types.ts";

export interface WriteLimits {
  maxWorkerSourceBytes: number;
}

export interface PrepareContext {
  namespace: string;
  /** The name in the URL (PUT/PATCH); the body's name must agree. */
  name: string | undefined;
  limits: WriteLimits;
}

export async function prepareService(
  body: Record<string, unknown>,
  ctx: PrepareContext,
): Promise<{ parsed: ParsedService; worker?: CompiledWorker }> {
  const parsed = parseService(body, ctx) as ParsedService;
  parsed.metadata.resourceVersion = resourceVersionOf(body);
  const worker = await compileIfWorker(parsed.spec.template.spec.worker, ctx.limits);
  return worker ? { parsed, worker } : { parsed };
}

export async function prepareConfiguration(
  body: Record<string, unknown>,
  ctx: PrepareContext,
): Promise<{ parsed: ParsedConfiguration; worker?: CompiledWorker }> {
  const parsed = parseConfiguration(body, ctx) as ParsedConfiguration;
  parsed.metadata.resourceVersion = resourceVersionOf(body);
  const worker = await compileIfWorker(parsed.spec.template.spec.worker, ctx.limits);
  return worker ? { parsed, worker } : { parsed };
}

async function compileIfWorker(
  worker: WorkerSpec | undefined,
  limits: WriteLimits,
): Promise<CompiledWorker | undefined> {
  if (!worker) return undefined;
  return compileWorker(worker, {
    maxSourceBytes: limits.maxWorkerSourceBytes,
    fieldPrefix: "spec.template.spec.worker",
  });
}

function resourceVersionOf(body: Record<string, unknown>): string | undefined {
  const meta = body.metadata;
  if (meta && typeof meta === "object" && "resourceVersion" in meta) {
    const rv = (meta as { resourceVersion?: unknown }).resourceVersion;
    if (typeof rv === "string" && rv) return rv;
  }
  return undefined;
}
