/**
 * Proxying one HTTP request: route by Host, pick a revision by weight, wait
 * for an instance (and a slot), then send it (attempt.ts: streamed with
 * undici, never buffering a body whole, backpressure both ways), moving on to
 * another instance when one cannot be reached.
 *
 * Failure rules:
 * - no response started within timeoutSeconds of arrival (waiting included),
 *   or within responseStartTimeoutSeconds of sending: 504;
 * - a response that started is never turned into an error status: if it
 *   breaks (or stays silent beyond idleTimeoutSeconds) the connection is cut;
 * - the instance could not be reached before any byte was sent: the request
 *   goes to another instance (or waits for one); an idempotent request without
 *   a body whose connection was reset under it is retried (the second reset
 *   marks the instance suspect, and one more attempt goes elsewhere);
 * - anything else: 502 with a short reason.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { TooManyRequestsError, UnavailableError } from "../src/errors.ts";
import type { Logger } from "../src/logging.ts";
import { type Attempt, type Outcome, send } from "./attempt.ts";
import type { RevisionDispatcher, Waiter } from "./dispatcher.ts";
import { BodyTooLargeError, ClientGoneError, GatewayTimeoutError } from "./errors.ts";
import { upstreamHeaders } from "./headers.ts";
import type { GatewayMetrics } from "./metrics.ts";
import { checkRequest } from "./request-checks.ts";
import { normalizeHost, pickTarget, type RouteTable } from "./routes.ts";
import type { UpstreamAgents } from "./upstream-agents.ts";
import { shortReason } from "./upstream-errors.ts";

export interface ProxyContext {
  routes: RouteTable;
  dispatcher(namespace: string, revision: string): RevisionDispatcher;
  /** The connection pools to instances (kept-alive, or one-use during an isolate hand-over). */
  upstreams: Pick<UpstreamAgents, "routeFor" | "draining" | "handingOver">;
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

/** Largest body held in memory so that it can be sent again (only during an isolate hand-over). */
const REPLAY_MAX_BYTES = 256 * 1024;

/**
 * The whole body, read before sending, when the instance's process is being
 * replaced and the body is small and of known length: a request that meets
 * the old process's close before any answer was never run, and is sent again.
 * Otherwise undefined (the body streams, as always).
 */
async function replayableBody(
  ctx: ProxyContext,
  req: IncomingMessage,
  origin: string,
): Promise<Buffer | undefined> {
  const length = Number(req.headers["content-length"]);
  if (!(length > 0 && length <= REPLAY_MAX_BYTES) || !ctx.upstreams.handingOver(origin)) {
    return undefined;
  }
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req) chunks.push(chunk as Buffer);
  } catch {
    throw new ClientGoneError();
  }
  if (req.readableAborted) throw new ClientGoneError();
  return Buffer.concat(chunks);
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
  let resets = 0;
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
        if (n === 1 && attempt.hasBody) {
          const body = await replayableBody(ctx, req, grant.upstream.origin);
          if (body !== undefined) Object.assign(attempt, { body, replay: body });
        }
        outcome = await send(ctx, { ...attempt, grant });
      } finally {
        grant.release();
      }
      if (outcome.kind === "retry") {
        // One reset is a kept-alive connection closed as it was reused; a
        // second is an instance, or the port proxy in front of a dead
        // container, dropping requests: suspect it and try once more
        // elsewhere. Not more: a request that itself kills instances must
        // not be carried to every one of them.
        if (outcome.reason === "stale") resets++;
        const allowed = outcome.reason === "connect" || resets <= 2;
        if (allowed && n < MAX_ATTEMPTS && !state.gone) {
          if (outcome.reason === "connect" || resets === 2) d.markSuspect(grant.upstream);
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
    } else if (err instanceof TooManyRequestsError) {
      code = 429;
      replyText(res, 429, `too many requests: ${err.message}`, { "retry-after": "1" });
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
