/**
 * Template equality decides whether a write creates a new Revision. It is a
 * canonical deep comparison of the whole template (metadata.name included: in
 * Knative renaming the template is a change), ignoring key order and
 * undefined-valued keys, keeping array order.
 */
import type { RevisionTemplate } from "./types.ts";

/** JSON with object keys sorted and undefined members dropped. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const member = (v as Record<string, unknown>)[k];
      if (member !== undefined) sorted[k] = member;
    }
    return sorted;
  });
}

export function templatesEqual(a: RevisionTemplate, b: RevisionTemplate): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
