/** `resources` (limits/requests of cpu and memory), shared by containers and workers. */

import { child, type Issues, readObject } from "./fields.ts";
import { parseCpu, parseMemory } from "./quantity.ts";
import type { ResourceList } from "./types.ts";

const LIST_SHAPE = {
  known: ["cpu", "memory"],
  unsupported: { "ephemeral-storage": "", "nvidia.com/gpu": "" },
};

/** A quantity given as a string, or as a bare YAML number (`cpu: 1`) which Kubernetes also accepts. */
function readQuantity(
  value: unknown,
  field: string,
  issues: Issues,
  parse: (q: string) => number,
): { text: string; amount: number } | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" && typeof value !== "number") {
    issues.add(
      field,
      'must be a quantity string such as "500m" or "128Mi"',
      "FieldValueTypeInvalid",
    );
    return undefined;
  }
  const text = String(value);
  try {
    return { text, amount: parse(text) };
  } catch (err) {
    issues.add(field, (err as Error).message);
    return undefined;
  }
}

export function readResourceList(
  value: unknown,
  field: string,
  issues: Issues,
): { list: ResourceList; millicores?: number; bytes?: number } | undefined {
  const obj = readObject(value, field, issues, LIST_SHAPE);
  if (obj === undefined) return undefined;
  const cpu = readQuantity(obj.cpu, child(field, "cpu"), issues, parseCpu);
  const memory = readQuantity(obj.memory, child(field, "memory"), issues, parseMemory);
  const list: ResourceList = {};
  if (cpu) list.cpu = cpu.text;
  if (memory) list.memory = memory.text;
  return { list, millicores: cpu?.amount, bytes: memory?.amount };
}

/** `{ limits, requests }`; a request above its limit is an error, as in Kubernetes. */
export function readResources(
  value: unknown,
  field: string,
  issues: Issues,
  opts: { requests: boolean },
): { limits?: ResourceList; requests?: ResourceList } | undefined {
  const obj = readObject(value, field, issues, {
    known: opts.requests ? ["limits", "requests"] : ["limits"],
    unsupported: opts.requests ? { claims: "" } : { requests: "a worker has only limits" },
  });
  if (obj === undefined) return undefined;
  const limits = readResourceList(obj.limits, child(field, "limits"), issues);
  const requests = opts.requests
    ? readResourceList(obj.requests, child(field, "requests"), issues)
    : undefined;
  if (limits && requests) {
    for (const [key, req, lim] of [
      ["cpu", requests.millicores, limits.millicores],
      ["memory", requests.bytes, limits.bytes],
    ] as const) {
      if (req !== undefined && lim !== undefined && req > lim) {
        issues.add(
          child(child(field, "requests"), key),
          `must be less than or equal to the ${key} limit (${limits.list[key]})`,
        );
      }
    }
  }
  const out: { limits?: ResourceList; requests?: ResourceList } = {};
  if (limits) out.limits = limits.list;
  if (requests) out.requests = requests.list;
  return out;
}
