/**
 * Kubernetes `Status` objects for every answer that is not a resource: errors
 * (`SkiffError.toStatus`, the one mapping in src/errors.ts) and successes
 * (a delete, a revoke), so kubectl-style clients and `skiff` read them the same way.
 */
import type { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { isSkiffError, NotFoundError, SkiffError, type Status } from "../../src/errors.ts";
import type { Logger } from "../../src/logging.ts";

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

/**
 * Every error a route throws, and every path no route serves, answered as a
 * Status; our own bugs (anything not a SkiffError) are logged, never shown.
 */
export function answerErrors(app: Hono, logger: Logger): void {
  app.onError((err, c) => {
    // hono's own middleware (bearer auth) throws responses it already shaped.
    if (err instanceof HTTPException) return err.getResponse();
    const e = toSkiffError(err);
    if (e.code === "INTERNAL") logger.error({ err, path: c.req.path }, "request failed");
    if (e.code === "UNAUTHORIZED") c.header("WWW-Authenticate", 'Bearer realm="skiff"');
    return c.json(e.toStatus(), e.status as 500);
  });
  app.notFound((c) => {
    const e = new NotFoundError(
      `the server could not find the requested resource: ${c.req.method} ${c.req.path}`,
    );
    return c.json(e.toStatus(), 404);
  });
}
