/**
 * Cluster-wide resource defaults for containers (Knative's config-defaults
 * revision-cpu-limit / revision-memory-limit): a template that sets no limit
 * gets the cluster's at write time, so the limit every instance runs with is
 * written on the Revision, not decided later by an agent. A request above the
 * default limit raises the limit to the request (never an invalid pair).
 */
import { z } from "zod";
import { parseCpu, parseMemory } from "./quantity.ts";
import type { RevisionTemplate } from "./types.ts";

const quantity = (parse: (q: string) => number, example: string) =>
  z
    .string()
    .nullable()
    .refine((q) => {
      if (q === null) return true;
      try {
        parse(q);
        return true;
      } catch {
        return false;
      }
    }, `must be a quantity such as "${example}", or null for no default`);

export const containerDefaultsSchema = z.object({
  /** CPU limit of a container whose template sets none (null: unlimited). */
  revisionCpuLimit: quantity(parseCpu, "1000m").default("1"),
  /** Memory limit of a container whose template sets none (null: unlimited). */
  revisionMemoryLimit: quantity(parseMemory, "512Mi").default("512Mi"),
});

export type ContainerDefaults = z.output<typeof containerDefaultsSchema>;

/** Fill in missing container limits from the defaults (in place; workers are left alone). */
export function applyContainerDefaults(
  template: RevisionTemplate,
  defaults: Partial<ContainerDefaults>,
): void {
  const container = template.spec.containers?.[0];
  if (!container) return;
  const limits = { ...container.resources?.limits };
  const requests = container.resources?.requests;
  const pick = (
    given: string | undefined,
    fallback: string | null | undefined,
    request: string | undefined,
    parse: (q: string) => number,
  ) => {
    if (given !== undefined || !fallback) return given;
    return request !== undefined && parse(request) > parse(fallback) ? request : fallback;
  };
  const cpu = pick(limits.cpu, defaults.revisionCpuLimit, requests?.cpu, parseCpu);
  const memory = pick(limits.memory, defaults.revisionMemoryLimit, requests?.memory, parseMemory);
  if (cpu !== undefined) limits.cpu = cpu;
  if (memory !== undefined) limits.memory = memory;
  if (Object.keys(limits).length === 0) return;
  container.resources = { ...container.resources, limits };
}
