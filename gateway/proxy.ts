/**
 * Proxying one HTTP request: route by Host, pick a revision by weight, wait
 * for an instance (and a slot), then stream the request to it and its
 * response back with undici, never buffering a body whole (backpressure both
 * ways: the client's body is piped as it arrives, the instance's body pauses
 * while the client cannot take more).
 *
 * Failure rules:
 * - no response started within timeoutSeconds of arrival (waiting included),
 *   or within responseStartTimeoutSeconds of sending: 504;
 * - a response that started is never turned into an error status: if it
 *   breaks (or stays silent beyond idleTimeoutSeconds) the connection is cut;
 * - the instance could not be reached before any byte was sent: the request
 *   goes to another instance (or waits for one); an idempotent request without
 *   a body whose reused connection was closed under it is retried once;
 * - anything else: 502 with a short reason.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Dispatcher } from "undici";
import { UnavailableError } from "../src/errors.ts";
import type { Logger } from "../src/logging.ts";
import type { Grant, RevisionDispatcher, Waiter } from "./dispatcher.ts";
import { BodyTooLargeError, ClientGoneError, GatewayTimeoutError } from "./errors.ts";
import { downstreamHeaders, GATEWAY_AUTH_HEADER, upstreamHeaders } from "./headers.ts";
import type { GatewayMetrics } from "./metrics.ts";
import { checkRequest } from "./request-checks.ts";
import { normalizeHost, pickTarget, type RouteTable } from "./routes.ts";

export interface ProxyContext {
  routes: RouteTable;
  dispatcher(namespace: string, revision: string): RevisionDispatcher;
  /** undici dispatcher for an endpoint protocol. */
  agentFor(protocol: "http1" | "h2c"): Dispatcher;
  metrics: GatewayMetrics;
  trustForwarded: boolean;
  /** Largest request body proxied (413 beyond). */
  maxBodyBytes: number;
  /**
   * The cluster secret, sent as `x-skiff-gateway-auth` to endpoints that carry
   * an internal header (isolates behind an agent's router), never to containers.
   */
  gatewayAuth: string | undefined;
  logger: Logger;
}

/** Attempts per request at most (connection failures move on to another instance). */
const MAX_ATTEMPTS = 8;

type Outcome =
  | { kind: "done" }
  | { kind: "cut" }
  | { kind: "gone" }
  | { kind: "retry"; reason: "connect" | "stale"; error: Error }
  | { kind: "timeout"; message: string }
  | { kind: "failed"; message: string }
  /** The request itself cannot be sent (its own fault; no instance is blamed). */
  | { kind: "refused"; status: 400 | 413; message: string };

interface Attempt {
  req: IncomingMessage;
  res: ServerResponse;
  grant: Grant;
  headers: string[];
  /** What undici sends as the body (the request itself, or a size-limited view of it). */
  body: IncomingMessage | AsyncIterable<Buffer> | null;
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

export function replyText(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const body = `${message}\n`;
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(body);
}

export function originForm(url: string | undefined): string {
  if (!url) return "/";
  if (url.startsWith("/")) return url;
  // Absolute-form (as sent to forward proxies): the instance gets the path.
  try {
    const u = new URL(url);
    return `${u.pathname}${u.search}`;
  } catch {
    return "/";
  }
}

function hasRequestBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  if (length !== undefined) return Number(length) > 0;
  return req.headers["transfer-encoding"] !== undefined;
}

/**
 * A body of unknown length (chunked) counted as it streams: past `max` bytes
 * undici gets an error and the request ends with 413 (or a cut connection if
 * the instance already answered). A declared Content-Length is checked up
 * front (request-checks.ts) and enforced by Node's parser.
 */
async function* limitedBody(req: IncomingMessage, max: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > max) throw new BodyTooLargeError(max);
    yield chunk as Buffer;
  }
}

/** Errors that say the instance could not be reached (nothing was sent): another instance may do. */
const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

export function isConnectError(err: Error): boolean {
  return CONNECT_ERRORS.has((err as { code?: string }).code ?? "");
}

/** undici (or Node) refused the request's own arguments: headers, method, path. */
export function isRequestError(err: Error): boolean {
  const code = (err as { code?: string }).code ?? "";
  return (
    code.startsWith("UND_ERR_INVALID") ||
    code.startsWith("ERR_INVALID") ||
    code === "UND_ERR_NOT_SUPPORTED" ||
    code === "ERR_HTTP_INVALID_HEADER_VALUE"
  );
}

function shortReason(err: Error): string {
  const code = (err as { code?: string }).code;
  return code ? `${code}: ${err.message}` : err.message;
}

export async function proxyHttp(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const arrived = performance.now();
  const problem = checkRequest(req, ctx.maxBodyBytes);
  if (problem) {
    ctx.metrics.requests.inc({ code: String(problem.status), namespace: "", service: "" });
    // The body (if any) is never read: the connection cannot be reused.
    replyText(res, problem.status, problem.message, { connection: "close" });
    return;
  }
  const host = normalizeHost(req.headers.host);
  const route = host === undefined ? undefined : ctx.routes.get(host);
  if (!route) {
    ctx.metrics.requests.inc({ code: "404", namespace: "", service: "" });
    replyText(
      res,
      404,
      host === undefined
        ? "no such service: the request has no Host header"
        : `no such service: nothing is served at ${host}`,
    );
    return;
  }
  const { namespace, service } = route.entry;
  const labels = { namespace, service };
  const target = pickTarget(route);
  if (!target) {
    ctx.metrics.requests.inc({ code: "503", ...labels });
    replyText(res, 503, `service ${namespace}/${service} has no revision taking traffic`);
    return;
  }
  const d = ctx.dispatcher(namespace, target.revision);
  d.limit = target.containerConcurrency;
  d.stats.begin();

  const state: Attempt["state"] = { gone: false };
  let waiter: Waiter | undefined;
  const onClose = () => {
    if (res.writableFinished) return;
    state.gone = true;
    if (waiter) d.cancel(waiter, new ClientGoneError());
    state.abort?.(new ClientGoneError());
  };
  res.once("close", onClose);

  const { headers } = upstreamHeaders(req.rawHeaders, {
    clientIp: req.socket.remoteAddress,
    host: req.headers.host ?? host ?? "",
    proto: "http",
    trustForwarded: ctx.trustForwarded,
  });
  const timeoutSeconds = target.timeoutSeconds;
  const hasBody = hasRequestBody(req);
  const attempt: Omit<Attempt, "grant"> = {
    req,
    res,
    headers,
    body: !hasBody
      ? null
      : req.headers["content-length"] === undefined
        ? limitedBody(req, ctx.maxBodyBytes)
        : req,
    hasBody,
    path: originForm(req.url),
    ref: d.ref,
    deadline: arrived + timeoutSeconds * 1000,
    timeoutSeconds,
    responseStartMs:
      target.responseStartTimeoutSeconds === undefined
        ? undefined
        : target.responseStartTimeoutSeconds * 1000,
    idleMs: target.idleTimeoutSeconds === undefined ? 0 : target.idleTimeoutSeconds * 1000,
    state,
  };

  let code = 0;
  let staleRetried = false;
  try {
    for (let n = 1; ; n++) {
      let grant = n === 1 ? d.tryGrant() : undefined;
      if (!grant) {
        waiter = d.acquire(attempt.deadline, timeoutSeconds, n > 1);
        grant = await waiter.promise;
        waiter = undefined;
      }
      if (state.gone) {
        grant.release();
        return;
      }
      let outcome: Outcome;
      try {
        outcome = await send(ctx, { ...attempt, grant });
      } finally {
        grant.release();
      }
      if (outcome.kind === "retry") {
        const allowed = outcome.reason === "connect" || !staleRetried;
        if (allowed && n < MAX_ATTEMPTS && !state.gone) {
          if (outcome.reason === "connect") d.markSuspect(grant.upstream);
          else staleRetried = true;
          ctx.metrics.retries.inc({ reason: outcome.reason });
          ctx.logger.debug(
            { err: outcome.error, instance: grant.upstream.id, revision: d.ref },
            "instance unreachable; retrying elsewhere",
          );
          continue;
        }
        code = 502;
        ctx.metrics.upstreamErrors.inc({ code: "502", reason: "unreachable" });
        replyText(
          res,
          502,
          `bad gateway: no instance of revision ${d.ref} could be reached (${shortReason(outcome.error)})`,
        );
      } else if (outcome.kind === "timeout") {
        code = 504;
        ctx.metrics.upstreamErrors.inc({ code: "504", reason: "response-start" });
        replyText(res, 504, `gateway timeout: ${outcome.message}`);
      } else if (outcome.kind === "refused") {
        code = outcome.status;
        replyText(res, outcome.status, outcome.message, { connection: "close" });
      } else if (outcome.kind === "failed") {
        code = 502;
        ctx.metrics.upstreamErrors.inc({ code: "502", reason: "upstream-error" });
        ctx.logger.warn(
          { instance: grant.upstream.id, revision: d.ref, reason: outcome.message },
          "instance failed a request",
        );
        replyText(res, 502, `bad gateway: ${outcome.message}`);
      } else {
        code = res.statusCode;
      }
      return;
    }
  } catch (err) {
    if (err instanceof GatewayTimeoutError) {
      code = 504;
      ctx.metrics.upstreamErrors.inc({ code: "504", reason: "queue" });
      replyText(res, 504, `gateway timeout: ${err.message}`);
    } else if (err instanceof UnavailableError) {
      code = 503;
      replyText(res, 503, `service unavailable: ${err.message}`, { "retry-after": "1" });
    } else if (err instanceof ClientGoneError) {
      code = 499;
    } else {
      code = 500;
      ctx.logger.error({ err, revision: d.ref }, "gateway error while proxying");
      replyText(res, 500, "internal gateway error");
    }
  } finally {
    res.off("close", onClose);
    d.stats.end();
    if (state.gone && code === 0) code = 499;
    ctx.metrics.requests.inc({ code: String(code || res.statusCode), ...labels });
    ctx.metrics.duration.observe(labels, (performance.now() - arrived) / 1000);
  }
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
function send(ctx: ProxyContext, a: Attempt): Promise<Outcome> {
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
        } else if (!a.hasBody && isIdempotent(a.req.method) && isReset(err)) {
          // Most likely a kept-alive connection the instance closed as we reused it.
          finish({ kind: "retry", reason: "stale", error: err });
        } else {
          finish({ kind: "failed", message: `instance ${up.id} failed: ${shortReason(err)}` });
        }
      },
    };

    try {
      ctx.agentFor(up.endpoint.protocol).dispatch(
        {
          origin: up.origin,
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

function isReset(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code === "UND_ERR_SOCKET" || code === "ECONNRESET" || code === "EPIPE";
}
