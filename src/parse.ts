/**
 * Parse with a zod schema at a boundary (a request body, a Redis value, an
 * options object): the value, or a ValidationError naming each bad field.
 */
import type { z } from "zod";
import { causesFromIssues, ValidationError } from "./errors.ts";

export interface ParseWhat {
  /** What is being parsed, for the message: "Revision", "agent options". */
  kind: string;
  name?: string;
  /** Prefix of every cause's field path, e.g. "spec.template.spec". */
  field?: string;
}

export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what: ParseWhat,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw ValidationError.of(causesFromIssues(result.error.issues, what.field), {
    kind: what.kind,
    ...(what.name === undefined ? {} : { name: what.name }),
  });
}
