/**
 * Kubernetes `Status` objects for every answer that is not a resource: errors
 * (`SkiffError.toStatus`, the one mapping in src/errors.ts) and successes
 * (a delete, a revoke), so kubectl-style clients and `skiff` read them the same way.
 */
import { isSkiffError, SkiffError, type Status } from "../../src/errors.ts";

/** Anything that is not a SkiffError is our bug: say so without leaking internals. */
export function toSkiffError(err: unknown): SkiffError {
  if (isSkiffError(err)) return err;
  return new SkiffError("INTERNAL", "internal error; the API log has the details");
}

export function successStatus(message: string, details?: Status["details"]): Status {
  const body: Status = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    message,
    reason: "",
    code: 200,
  };
  if (details) body.details = details;
  return body;
}
