/**
 * Turn an untrusted body into a parsed, validated write plus (for workers) the
 * compiled bundle. Runs before the store transaction: parsing and compiling
 * are pure, so a transaction retry never repeats them.
 */

import {
  applyContainerDefaults,
  type ContainerDefaults,
} from "../../src/model/container-defaults.ts";
import {
  type CompiledWorker,
  compileWorker,
  type ParsedConfiguration,
  type ParsedService,
  parseConfiguration,
  parseService,
  type WorkerSpec,
} from "../../src/model/index.ts";
import type { ScalingDefaults } from "../../src/model/scaling.ts";
import { parseRoute } from "../../src/model/validate.ts";

/** config.limits: write limits, and the container defaults applied to templates without limits. */
export interface WriteLimits extends Partial<ContainerDefaults> {
  maxWorkerSourceBytes: number;
}

export interface PrepareContext {
  namespace: string;
  /** The name in the URL (PUT/PATCH); the body's name must agree. */
  name: string | undefined;
  limits: WriteLimits;
  /** Cluster autoscaler settings the annotations are checked against (default: Knative's). */
  scaling?: ScalingDefaults;
}

export async function prepareService(
  body: Record<string, unknown>,
  ctx: PrepareContext,
): Promise<{ parsed: ParsedService; worker?: CompiledWorker }> {
  const parsed = parseService(body, ctx);
  applyContainerDefaults(parsed.spec.template, ctx.limits);
  const worker = await compileIfWorker(parsed.spec.template.spec.worker, ctx.limits);
  return worker ? { parsed, worker } : { parsed };
}

export async function prepareConfiguration(
  body: Record<string, unknown>,
  ctx: PrepareContext,
): Promise<{ parsed: ParsedConfiguration; worker?: CompiledWorker }> {
  const parsed = parseConfiguration(body, ctx);
  applyContainerDefaults(parsed.spec.template, ctx.limits);
  const worker = await compileIfWorker(parsed.spec.template.spec.worker, ctx.limits);
  return worker ? { parsed, worker } : { parsed };
}

/**
 * A body as it would be stored (parsed, container defaults applied), without
 * compiling: what server-side apply compares owned fields by, so a default
 * the API filled in is not a changed value.
 */
export function normalizedView(
  plural: "services" | "configurations" | "routes",
  body: Record<string, unknown>,
  ctx: PrepareContext,
): Record<string, unknown> {
  if (plural === "routes") {
    const route = parseRoute(body, ctx);
    const { labels, annotations } = route.metadata;
    return { metadata: { labels, annotations }, spec: route.spec };
  }
  const parsed = plural === "services" ? parseService(body, ctx) : parseConfiguration(body, ctx);
  applyContainerDefaults(parsed.spec.template, ctx.limits);
  const { labels, annotations } = parsed.metadata;
  return { metadata: { labels, annotations }, spec: parsed.spec };
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
