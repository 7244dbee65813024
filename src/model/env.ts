/** `env` lists, shared by containers and workers. */

import { child, type Issues, item, readArray, readObject, readString } from "./fields.ts";
import { checkEnvName, isReservedEnvName } from "./names.ts";
import type { EnvVar } from "./types.ts";

export const ENV_SHAPE = {
  known: ["name", "value"] as const,
  unsupported: {
    valueFrom: 'Skiff has no Secrets or ConfigMaps; put the value in "value"',
  },
};

/** Reads `env`, reporting bad, reserved and duplicate names. Missing `value` is "". */
export function readEnv(
  value: unknown,
  field: string,
  issues: Issues,
  maxItems: number,
): EnvVar[] | undefined {
  const list = readArray(value, field, issues, { maxItems });
  if (list === undefined) return undefined;
  const seen = new Map<string, number>();
  const out: EnvVar[] = [];
  list.forEach((raw, i) => {
    const at = item(field, i);
    const obj = readObject(raw, at, issues, ENV_SHAPE, { required: true });
    if (obj === undefined) return;
    const name = readString(obj.name, child(at, "name"), issues, { required: true });
    const val = readString(obj.value, child(at, "value"), issues) ?? "";
    if (name === undefined) return;
    const bad = checkEnvName(name);
    if (bad !== undefined) {
      issues.add(child(at, "name"), bad);
    } else if (isReservedEnvName(name)) {
      issues.add(
        child(at, "name"),
        `"${name}" is reserved by the runtime contract (Skiff sets PORT and every K_* variable itself); choose another name`,
        "FieldValueForbidden",
      );
    } else if (seen.has(name)) {
      issues.add(
        child(at, "name"),
        `duplicate name "${name}" (also at ${item(field, seen.get(name)!)}); each variable may appear once`,
        "FieldValueDuplicate",
      );
    } else {
      seen.set(name, i);
    }
    out.push({ name, value: val });
  });
  return out;
}
