import { isSkiffError } from "../../src/errors.ts";

/**
 * Every error of every command, printed one way: the message, then each field
 * cause the message does not already say (an API's 422 lists them all).
 */
export function formatError(err: unknown): string {
  if (isSkiffError(err)) {
    const causes = err.causes
      .filter((c) => !err.message.includes(c.message))
      .map((c) => `\n  ${c.field ? `${c.field}: ` : ""}${c.message}`)
      .join("");
    return `Error: ${err.message}${causes}`;
  }
  return `Error: ${(err as Error)?.message ?? String(err)}`;
}
