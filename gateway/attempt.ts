/**
 * One try of a request against one instance (undici `dispatch`): streams the
 * request and the response with backpressure both ways, arms the
 * response-start timeouts, and says what happened as an Outcome the request's
 * loop (proxy.ts) acts on. Never rejects.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Dispatcher } from "undici";
import type { Grant } from "./dispatcher.ts";
import { BodyTooLargeError, ClientGoneError, GatewayTimeoutError } from "./errors.ts";
import { downstreamHeaders, GATEWAY_AUTH_HEADER } from "./headers.ts";
import type { ProxyContext } from "./proxy.ts";
import { DRAINING_HEADER } from "./upstream-agents.ts";
import { isConnectError, isRequestError, isReset, shortReason } from "./upstream-errors.ts";

export type Outcome =
  | { kind: "done" }
  | { kind: "cut" }
  | { kind: "gone" }
  | { kind: "retry"; reason: "connect" | "stale"; error: Error }
  | { kind: "timeout"; message: string }
  | { kind: "failed"; message: string }
  /** The request itself cannot be sent (its own fault; no instance is blamed). */
  | { kind: "refused"; status: 400 | 413; message: string };

export interface Attempt {
  req: IncomingMessage;
  res: ServerResponse;
  grant: Grant;
  headers: string[];
  /** What undici sends as the body (the request itself, or a size-limited view of it). */
  body: IncomingMessage | AsyncIterable<Buffer> | Buffer | null;
  /** The body read whole (an isolate hand-over): sent again if the old process closes before answering. */
  replay?: Buffer;
  hasBody: boolean;
  path: string;
  /** "{ns}/{rev}", for messages. */
  ref: string;
  deadline: number;
  timeoutSeconds: number;
  responseStartMs: number | undefined;
  idleMs: number;
  /** Set by the client-close handler so an attempt in flight can abort. */
  state: { gone: boolean; abort?: (err: Error) => void };
}

let toFlush: Array<() => void> = [];
function flushAll(): void {
  const batch = toFlush;
  toFlush = [];
  for (const f of batch) f();
}
function flushSoon(f: () => void): void {
  if (toFlush.push(f) === 1) setImmediate(flushAll);
}

/** One try against one instance. Resolves (never rejects) with what happened. */
export function send(ctx: ProxyContext, a: Attempt): Promise<Outcome> {
  const { res, grant } = a;
  const up = grant.upstream;
  const internal = up.endpoint.header;
  const headers = internal
    ? ctx.gatewayAuth === undefined
      ? [...a.headers, internal.name, internal.value]
      : [...a.headers, internal.name, internal.value, GATEWAY_AUTH_HEADER, ctx.gatewayAuth]
    : a.headers;
  return new Promise<Outcome>((resolve) => {
    let controller: Dispatcher.DispatchController | undefined;
    let requestStarted = false;
    let responseStarted = false;
    let timeoutMessage: string | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let pendingAbort: Error | undefined;
    let wroteBody = false;

    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      a.state.abort = undefined;
      resolve(outcome);
    };
    const abort = (err: Error) => {
      if (controller) controller.abort(err);
      else pendingAbort = err;
    };
    a.state.abort = abort;

    const armTimeout = (ms: number, message: string) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(
        () => {
          timeoutMessage = message;
          abort(new GatewayTimeoutError(message));
          // Still connecting: answer now; the request is dropped when the connection is made.
          if (!controller) finish({ kind: "timeout", message });
        },
        Math.max(0, ms),
      );
    };
    armTimeout(
      a.deadline - performance.now(),
      `revision ${a.ref} did not start a response within ${a.timeoutSeconds}s (instance ${up.id})`,
    );

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        requestStarted = true;
        if (pendingAbort) {
          c.abort(pendingAbort);
          return;
        }
        if (a.responseStartMs !== undefined) {
          const left = a.deadline - performance.now();
          if (a.responseStartMs < left) {
            armTimeout(
              a.responseStartMs,
              `instance ${up.id} did not start a response within ${a.responseStartMs / 1000}s of receiving the request`,
            );
          }
        }
      },
      onResponseStart(c, statusCode, headers, statusMessage) {
        // 1xx (100 Continue from the instance): the gateway already handled Expect itself.
        if (statusCode < 200) return;
        if (timer) clearTimeout(timer);
        timer = undefined;
        responseStarted = true;
        if (res.destroyed) {
          c.abort(new ClientGoneError());
          return;
        }
        if (internal) {
          // Only an isolate's router says its process is being replaced.
          const draining = headers[DRAINING_HEADER];
          if (typeof draining === "string") {
            ctx.upstreams.draining(up.origin, Number(draining));
            delete headers[DRAINING_HEADER];
          }
        }
        const out = downstreamHeaders(headers);
        if (statusMessage) res.writeHead(statusCode, statusMessage, out);
        else res.writeHead(statusCode, out);
        // Headers go out with the first chunk; when the body takes its time
        // (SSE, long polls) they go out on their own right away (one shared
        // setImmediate for every response started in this turn of the loop).
        flushSoon(() => {
          if (!wroteBody && !res.writableEnded && !res.destroyed) res.flushHeaders();
        });
      },
      onResponseData(c, chunk) {
        wroteBody = true;
        if (!res.write(chunk)) {
          c.pause();
          res.once("drain", () => c.resume());
        }
      },
      onResponseEnd() {
        res.end();
        finish({ kind: "done" });
      },
      onResponseError(_c, err) {
        if (responseStarted) {
          // Never an error status once the status line went out: cut the connection.
          if (!res.destroyed) res.destroy();
          finish({ kind: a.state.gone ? "gone" : "cut" });
        } else if (a.state.gone || err instanceof ClientGoneError) {
          finish({ kind: "gone" });
        } else if (timeoutMessage !== undefined) {
          finish({ kind: "timeout", message: timeoutMessage });
        } else if (err instanceof BodyTooLargeError) {
          finish({ kind: "refused", status: 413, message: err.message });
        } else if (isRequestError(err)) {
          // The request's own fault (e.g. a header undici will not send): never the instance's.
          finish({
            kind: "refused",
            status: 400,
            message: `bad request: the gateway cannot forward this request: ${err.message}`,
          });
        } else if (!requestStarted && isConnectError(err)) {
          // Nothing was sent: safe to try another instance.
          finish({ kind: "retry", reason: "connect", error: err });
        } else if (
          (a.replay !== undefined || (!a.hasBody && isIdempotent(a.req.method))) &&
          isReset(err)
        ) {
          // Most likely a kept-alive connection the instance closed as we reused it,
          // or a process in its hand-over closing before it read the request.
          finish({ kind: "retry", reason: "stale", error: err });
        } else {
          finish({ kind: "failed", message: `instance ${up.id} failed: ${shortReason(err)}` });
        }
      },
    };

    try {
      const route = ctx.upstreams.routeFor(up.endpoint.protocol, up.origin);
      route.dispatcher.dispatch(
        {
          origin: up.origin,
          reset: route.reset,
          path: a.path,
          method: (a.req.method ?? "GET") as Dispatcher.HttpMethod,
          headers,
          // undici streams an async iterable body (its types list only streams).
          body: a.body as Dispatcher.DispatchOptions["body"],
          headersTimeout: 0,
          bodyTimeout: a.idleMs,
        },
        handler,
      );
    } catch (err) {
      finish(
        isRequestError(err as Error)
          ? {
              kind: "refused",
              status: 400,
              message: `bad request: the gateway cannot forward this request: ${(err as Error).message}`,
            }
          : {
              kind: "failed",
              message: `cannot send to instance ${up.id}: ${(err as Error).message}`,
            },
      );
    }
  });
}

function isIdempotent(method: string | undefined): boolean {
  return method === "GET" || method === "HEAD" || method === "OPTIONS";
}
