/**
 * Kubernetes `Status` objects for every error the API returns, so kubectl-style
 * clients and `skiff` read them the same way.
 */
import { isSkiffError, SkiffError } from "../../src/errors.ts";

export interface StatusBody {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message: string;
  reason: string;
  code: number;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    causes?: { reason: string; message: string; field: string }[];
  };
}

export function statusBody(err: SkiffError): StatusBody {
  const body: StatusBody = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: err.message,
    reason: err.reason,
    code: err.status,
  };
  if (err.kind || err.resourceName || err.causes.length) {
    body.details = {};
    if (err.resourceName) body.details.name = err.resourceName;
    if (err.kind) {
      body.details.group = "serving.knative.dev";
      body.details.kind = err.kind;
    }
    if (err.causes.length) {
      body.details.causes = err.causes.map((c) => ({
        reason: c.reason ?? "FieldValueInvalid",
        message: c.message,
        field: c.field,
      }));
    }
  }
  return body;
}

/** Anything that is not a SkiffError is our bug: say so without leaking internals. */
export function toSkiffError(err: unknown): SkiffError {
  if (isSkiffError(err)) return err;
  return new SkiffError("INTERNAL", "internal error; the API log has the details");
}

export function successStatus(message: string, details?: StatusBody["details"]): StatusBody {
  const body: StatusBody = {
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
