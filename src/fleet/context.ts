/**
 * What every fleet operation runs against (one connection, the install's
 * keys, a logger) and the checks its writes share.
 */
import type { Redis } from "ioredis";
import { ValidationError } from "../errors.ts";
import type { Logger } from "../logging.ts";
import { parseOrThrow } from "../parse.ts";
import type { FleetKeys } from "./keys.ts";
import { fleetId } from "./schemas.ts";

export interface FleetContext {
  readonly redis: Redis;
  readonly keys: FleetKeys;
  readonly log: Logger;
}

/** An agent id about to become a key segment, or a ValidationError naming it. */
export function agentId(id: string): string {
  return parseOrThrow(fleetId, id, { kind: "Agent", field: "id" });
}

/** A TTL in ms as Redis takes it, or a ValidationError naming the field. */
export function positiveMs(ms: number, field: string): string {
  if (!Number.isInteger(ms) || ms <= 0) {
    throw ValidationError.of([
      { field, message: `must be a positive whole number of milliseconds (got ${ms})` },
    ]);
  }
  return String(ms);
}

/** Run a MULTI; any command's error is thrown. */
export async function execMulti(m: ReturnType<Redis["multi"]>): Promise<void> {
  const replies = await m.exec();
  for (const [err] of replies ?? []) if (err) throw err;
}

/** "{p}fleet:endpoints:", to which the scripts append "{ns}:{rev}". */
export function endpointsPrefix(keys: FleetKeys): string {
  const probe = keys.endpoints("n", "r");
  return probe.slice(0, probe.length - "n:r".length);
}
