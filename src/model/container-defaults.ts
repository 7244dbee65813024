/**
 * Cluster-wide resource defaults for containers (Knative's config-defaults
 * revision-cpu-limit / revision-memory-limit and revision-cpu-request /
 * revision-memory-request): a template that sets no limit for a resource gets
 * the cluster's at write time, so the limit every instance runs with is
 * written on the Revision, not decided later by an agent.
 *
 * Where a default limit is applied and the template asks for no request, the
 * default request is written too: otherwise the request would follow the
 * limit (Kubernetes' rule, which placement follows) and a 1-core default limit
 * would reserve a whole core per instance. A given request above the default
 * limit raises the limit to it; a default request above the limit is lowered
 * to it (never an invalid pair).
 */
import { z } from "zod";
import { parseCpu, parseMemory } from "./quantity.ts";
import type { ResourceList, RevisionTemplate } from "./types.ts";

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
  /** CPU request written with a default CPU limit when the template asks for none (placement's default). */
  revisionCpuRequest: quantity(parseCpu, "100m").default("100m"),
  /** Memory request written with a default memory limit when the template asks for none. */
  revisionMemoryRequest: quantity(parseMemory, "128Mi").default("128Mi"),
});

export type ContainerDefaults = z.output<typeof containerDefaultsSchema>;

type Kind = "cpu" | "memory";
const PARSE: Record<Kind, (q: string) => number> = { cpu: parseCpu, memory: parseMemory };

/** Fill in missing container limits (and their requests) from the defaults, in place; workers are left alone. */
export function applyContainerDefaults(
  template: RevisionTemplate,
  defaults: Partial<ContainerDefaults>,
): void {
  const container = template.spec.containers?.[0];
  if (!container) return;
  const limits: ResourceList = { ...container.resources?.limits };
  const requests: ResourceList = { ...container.resources?.requests };
  const fill = (
    kind: Kind,
    limit: string | null | undefined,
    request: string | null | undefined,
  ) => {
    if (limits[kind] !== undefined || !limit) return;
    const parse = PARSE[kind];
    const asked = requests[kind];
    if (asked !== undefined) {
      limits[kind] = parse(asked) > parse(limit) ? asked : limit;
      return;
    }
    limits[kind] = limit;
    if (request) requests[kind] = parse(request) > parse(limit) ? limit : request;
  };
  fill("cpu", defaults.revisionCpuLimit, defaults.revisionCpuRequest);
  fill("memory", defaults.revisionMemoryLimit, defaults.revisionMemoryRequest);
  const resources: { limits?: ResourceList; requests?: ResourceList } = {};
  if (Object.keys(limits).length > 0) resources.limits = limits;
  if (Object.keys(requests).length > 0) resources.requests = requests;
  if (Object.keys(resources).length > 0) container.resources = resources;
}
