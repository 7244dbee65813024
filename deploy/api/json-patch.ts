/**
 * JSON Patch (RFC 6902, `application/json-patch+json`), what `kubectl patch
 * --type json` sends: a list of operations applied in order to the stored
 * object, by fast-json-patch. The result is then written like any other
 * write (the same parsing and validation), so a patch can only produce an
 * object a PUT could have sent.
 *
 * As the Kubernetes API server does, a malformed patch (not a list, an
 * unknown op, a missing path or value) is a 400 BadRequest, and one that
 * does not apply to this object (a path that does not exist, a failed
 * `test`) is a 422 Invalid naming the operation.
 *
 * Bounds for untrusted patches: at most MAX_OPERATIONS operations, and
 * `copy`, the one operation that grows the object by more than the patch's
 * own bytes (each copy can double it), may copy at most `maxBytes` in all.
 */
import type { Operation } from "fast-json-patch";
import jsonPatch from "fast-json-patch";
import { BadRequestError, TooLargeError, ValidationError } from "../../src/errors.ts";

const { applyOperation, getValueByPointer, JsonPatchError } = jsonPatch;

/** Most operations in one patch; an edit of a manifest needs a handful. */
export const MAX_OPERATIONS = 1000;

const OPS = new Set(["add", "remove", "replace", "move", "copy", "test"]);

/** Errors of a patch that does not fit the object (422), not of its shape (400). */
const DOES_NOT_APPLY = new Set([
  "OPERATION_PATH_CANNOT_ADD",
  "OPERATION_PATH_UNRESOLVABLE",
  "OPERATION_FROM_UNRESOLVABLE",
  "OPERATION_PATH_ILLEGAL_ARRAY_INDEX",
  "OPERATION_VALUE_OUT_OF_BOUNDS",
  "TEST_OPERATION_FAILED",
]);

/** Apply `patch` (the decoded body) to a copy of `document`; the original is untouched. */
export function applyJsonPatch(
  document: Record<string, unknown>,
  patch: unknown,
  options: { maxBytes: number },
): Record<string, unknown> {
  const ops = checkShape(patch);
  let doc: unknown = structuredClone(document);
  let copied = 0;
  ops.forEach((op, index) => {
    try {
      if (op.op === "copy") {
        const value = getValueByPointer(doc, op.from);
        copied += value === undefined ? 0 : JSON.stringify(value).length;
        if (copied > options.maxBytes) {
          throw new TooLargeError(
            `json patch operation ${index} (copy from ${op.from}): the patch copies more than ${options.maxBytes} bytes in all; send the values instead`,
          );
        }
      }
      // validate: checks each operation against the document; the 5th
      // argument keeps __proto__ and constructor paths out (prototype pollution).
      doc = applyOperation(doc, op, true, true, true, index).newDocument;
    } catch (err) {
      throw patchError(err, index, op);
    }
  });
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ValidationError("the json patch must leave one object, not replace it with a value", [
      { field: "(root)", message: "the patched document is not an object" },
    ]);
  }
  return doc as Record<string, unknown>;
}

/** The patch as operations, or a 400 that names the first malformed one. */
function checkShape(patch: unknown): Operation[] {
  if (!Array.isArray(patch)) {
    throw new BadRequestError(
      'a json patch (application/json-patch+json) is a list of operations, e.g. [{"op":"replace","path":"/spec/template/metadata/name","value":"hello-v2"}]',
    );
  }
  if (patch.length > MAX_OPERATIONS) {
    throw new BadRequestError(
      `the json patch has ${patch.length} operations; at most ${MAX_OPERATIONS} are accepted`,
    );
  }
  patch.forEach((op, index) => {
    const bad = (what: string) =>
      new BadRequestError(`json patch operation ${index} is malformed: ${what}`);
    if (typeof op !== "object" || op === null || Array.isArray(op)) throw bad("not an object");
    const o = op as Record<string, unknown>;
    if (typeof o.op !== "string" || !OPS.has(o.op)) {
      throw bad(
        `"op" must be one of ${[...OPS].join(", ")} (got ${JSON.stringify(o.op) ?? "nothing"})`,
      );
    }
    if (typeof o.path !== "string") throw bad('"path" must be a JSON pointer string');
    if ((o.op === "move" || o.op === "copy") && typeof o.from !== "string")
      throw bad(`"${o.op}" needs "from", a JSON pointer string`);
    if ((o.op === "add" || o.op === "replace" || o.op === "test") && !("value" in o))
      throw bad(`"${o.op}" needs "value"`);
  });
  return patch as Operation[];
}

function patchError(err: unknown, index: number, op: Operation): Error {
  // fast-json-patch's refusal of __proto__/constructor paths is a TypeError.
  if (err instanceof TypeError && err.message.startsWith("JSON-Patch:")) {
    return new BadRequestError(
      `json patch operation ${index} (${op.op} ${op.path}) is refused: it names __proto__ or constructor/prototype`,
    );
  }
  if (!(err instanceof JsonPatchError)) return err as Error;
  const where = `json patch operation ${index} (${op.op} ${op.path})`;
  const reason = REASONS[err.name] ?? err.message.split("\n")[0] ?? err.name;
  if (DOES_NOT_APPLY.has(err.name)) {
    return new ValidationError(`${where} does not apply: ${reason}`, [
      { field: op.path, message: `json patch operation ${index} (${op.op}): ${reason}` },
    ]);
  }
  return new BadRequestError(`${where} is malformed: ${reason}`);
}

const REASONS: Record<string, string> = {
  OPERATION_PATH_INVALID: 'the path must be a JSON pointer: "" or starting with "/"',
  OPERATION_PATH_CANNOT_ADD: "the parent of the path does not exist in the object",
  OPERATION_PATH_UNRESOLVABLE: "the path does not exist in the object",
  OPERATION_FROM_UNRESOLVABLE: "the from path does not exist in the object",
  OPERATION_PATH_ILLEGAL_ARRAY_INDEX: "a list index must be a number or - (the end)",
  OPERATION_VALUE_OUT_OF_BOUNDS: "the list index is past the end of the list",
  TEST_OPERATION_FAILED: "the value at the path is not the one the test expects",
  OPERATION_VALUE_CANNOT_CONTAIN_UNDEFINED: "the value contains undefined",
};
