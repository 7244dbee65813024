/** Labels and annotations, checked as Kubernetes does. */
import { Buffer } from "node:buffer";
import { type Issues, item, readStringMap } from "./fields.ts";
import { checkLabelValue, checkQualifiedName } from "./names.ts";

export function readLabels(
  value: unknown,
  field: string,
  issues: Issues,
): Record<string, string> | undefined {
  const map = readStringMap(value, field, issues);
  if (map === undefined) return undefined;
  const before = issues.count;
  for (const [k, v] of Object.entries(map)) {
    const badKey = checkQualifiedName(k);
    if (badKey !== undefined) issues.add(item(field, k), badKey);
    const badValue = checkLabelValue(v);
    if (badValue !== undefined) issues.add(item(field, k), badValue);
  }
  return issues.count === before ? map : undefined;
}

export function readAnnotations(
  value: unknown,
  field: string,
  issues: Issues,
  maxBytes: number,
): Record<string, string> | undefined {
  const map = readStringMap(value, field, issues);
  if (map === undefined) return undefined;
  const before = issues.count;
  let total = 0;
  for (const [k, v] of Object.entries(map)) {
    const badKey = checkQualifiedName(k);
    if (badKey !== undefined) issues.add(item(field, k), badKey);
    total += Buffer.byteLength(k, "utf8") + Buffer.byteLength(v, "utf8");
  }
  if (total > maxBytes) {
    issues.add(
      field,
      `annotations total ${total} bytes, over the limit of ${maxBytes}; keep large data out of annotations`,
      "FieldValueTooLong",
    );
  }
  return issues.count === before ? map : undefined;
}
