/**
 * The one way a fleet record is read back: parsed with its schema
 * (schemas.ts), and skipped with one log line when it does not parse, so one
 * bad entry (a bug, a process of another version) never hides the rest.
 */
import type { z } from "zod";
import type { Logger } from "../logging.ts";

/** Logged with the record, to say where it was. */
export type RecordContext = Record<string, unknown>;

/** One stored JSON record, or undefined (logged) when it is not valid. */
export function parseRecord<T>(
  schema: z.ZodType<T>,
  raw: string,
  what: string,
  log: Logger,
  context: RecordContext = {},
): T | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    log.warn({ ...context, raw: raw.slice(0, 300) }, `ignoring malformed ${what}`);
    return undefined;
  }
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  log.warn(
    { ...context, issues: r.error.issues, raw: raw.slice(0, 300) },
    `ignoring invalid ${what}`,
  );
  return undefined;
}

/** The valid records of a hash (field -> JSON); each bad one is skipped and logged with its field. */
export function parseRecords<T>(
  schema: z.ZodType<T>,
  hash: Record<string, string>,
  what: string,
  log: Logger,
  context: RecordContext = {},
): T[] {
  const out: T[] = [];
  for (const field in hash) {
    const v = parseRecord(schema, hash[field] as string, what, log, { ...context, field });
    if (v !== undefined) out.push(v);
  }
  return out;
}
