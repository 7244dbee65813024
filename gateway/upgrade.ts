/**
 * WebSocket (any HTTP/1.1 Upgrade) pass-through. Routing, waiting for an
 * instance, slots and internal headers work as for plain requests. The two
 * sockets are joined byte for byte only once the instance answered `101`
 * (which goes back as it is); any other answer is relayed as a plain response
 * and the connection is closed. An open tunnel counts as one request in
 * flight until either side closes.
 */
import { type ClientRequest, request as httpRequest, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { TooManyRequestsError, UnavailableError } from "../src/errors.ts";
import type { Grant, Waiter } from "./dispatcher.ts";
import { ClientGoneError, GatewayTimeoutError } from "./errors.ts";
import { downstreamHeaders, GATEWAY_AUTH_HEADER, upstreamHeaders } from "./headers.ts";
import { originForm, type ProxyContext } from "./proxy.ts";
import { checkRequest } from "./request-checks.ts";
import { normalizeHost, pickTarget } from "./routes.ts";

const MAX_ATTEMPTS = 8;

function rawReply(socket: Duplex, status: number, text: string, message: string): void {
  if (socket.destroyed) return;
  const body = `${message}\n`;
  socket.write(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  closeAfterWrite(socket);
}

export async function proxyUpgrade(
  ctx: ProxyContext,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  track: (s: Duplex) => void,
): Promise<void> {
  socket.on("error", () => socket.destroy());
  const arrived = performance.now();
  // An upgrade request's body would reach the instance only after a 101 (as tunnel bytes): refuse it.
  const problem = checkRequest(req, 0);
  const withBody = problem?.status === 413 || req.headers["transfer-encoding"] !== undefined;
  if (problem || withBody) {
    ctx.metrics.requests.inc({ code: "400", namespace: "", service: "" });
    rawReply(
      socket,
      400,
      "Bad Request",
      withBody || !problem
        ? "bad request: an upgrade request cannot carry a body through the gateway"
        : problem.message,
    );
    return;
  }
  const host = normalizeHost(req.headers.host);
  const route = host === undefined ? undefined : ctx.routes.get(host);
  if (!route) {
    ctx.metrics.requests.inc({ code: "404", namespace: "", service: "" });
    rawReply(
      socket,
      404,
      "Not Found",
      `no such service: nothing is served at ${host ?? "(no Host)"}`,
    );
    return;
  }
  const { namespace, service } = route.entry;
  const labels = { namespace, service };
  const target = pickTarget(route);
  if (!target) {
    rawReply(
      socket,
      503,
      "Service Unavailable",
      `service ${namespace}/${service} has no revision taking traffic`,
    );
    return;
  }
  const d = ctx.dispatcher(namespace, target.revision);
  d.limit = target.containerConcurrency;
  d.stats.begin();
  track(socket);
  let waiter: Waiter | undefined;
  let gone = false;
  const onClose = () => {
    gone = true;
    if (waiter) d.cancel(waiter, new ClientGoneError());
  };
  socket.once("close", onClose);
  const { headers } = upstreamHeaders(
    req.rawHeaders,
    {
      clientIp: req.socket.remoteAddress,
      host: req.headers.host ?? host ?? "",
      proto: "http",
      trustForwarded: ctx.trustForwarded,
    },
    true,
  );
  const deadline = arrived + target.timeoutSeconds * 1000;
  let code = 101;
  try {
    for (let n = 1; ; n++) {
      waiter = d.acquire(deadline, target.timeoutSeconds, n > 1);
      const grant = await waiter.promise;
      waiter = undefined;
      if (gone) {
        grant.release();
        code = 499;
        return;
      }
      const result = await tunnel(ctx, grant, { req, client: socket, head, headers, deadline });
      if (result.kind === "refused" && n < MAX_ATTEMPTS && !gone) {
        d.markSuspect(grant.upstream);
        ctx.metrics.retries.inc({ reason: "connect" });
        continue;
      }
      if (result.kind === "answered") {
        code = result.status;
      } else if (result.kind === "bad-request") {
        code = 400;
        rawReply(
          socket,
          400,
          "Bad Request",
          `bad request: the gateway cannot forward this request: ${result.message}`,
        );
      } else if (result.kind === "failed") {
        code = 502;
        ctx.metrics.upstreamErrors.inc({ code: "502", reason: "upstream-error" });
        rawReply(socket, 502, "Bad Gateway", `bad gateway: ${result.message}`);
      } else if (result.kind === "refused") {
        code = 502;
        ctx.metrics.upstreamErrors.inc({ code: "502", reason: "unreachable" });
        rawReply(
          socket,
          502,
          "Bad Gateway",
          `bad gateway: no instance of revision ${d.ref} could be reached`,
        );
      } else if (result.kind === "timeout") {
        code = 504;
        ctx.metrics.upstreamErrors.inc({ code: "504", reason: "response-start" });
        rawReply(
          socket,
          504,
          "Gateway Timeout",
          `gateway timeout: revision ${d.ref} did not answer the upgrade within ${target.timeoutSeconds}s`,
        );
      }
      return;
    }
  } catch (err) {
    if (err instanceof GatewayTimeoutError) {
      code = 504;
      rawReply(socket, 504, "Gateway Timeout", `gateway timeout: ${err.message}`);
    } else if (err instanceof UnavailableError) {
      code = 503;
      rawReply(socket, 503, "Service Unavailable", `service unavailable: ${err.message}`);
    } else if (err instanceof TooManyRequestsError) {
      code = 429;
      rawReply(socket, 429, "Too Many Requests", `too many requests: ${err.message}`);
    } else if (err instanceof ClientGoneError) {
      code = 499;
    } else {
      code = 500;
      ctx.logger.error({ err }, "gateway error while proxying an upgrade");
      rawReply(socket, 500, "Internal Server Error", "internal gateway error");
    }
  } finally {
    socket.off("close", onClose);
    d.stats.end();
    ctx.metrics.requests.inc({ code: String(code), ...labels });
  }
}

interface TunnelRequest {
  req: IncomingMessage;
  client: Duplex;
  head: Buffer;
  headers: string[];
  deadline: number;
}

type TunnelResult =
  /** The instance answered 101 and the tunnel ran until one side closed. */
  | { kind: "done" }
  /** The instance answered something else, relayed as a plain response; the connection was closed. */
  | { kind: "answered"; status: number }
  /** Nothing reached the instance: another instance may do. */
  | { kind: "refused" }
  | { kind: "timeout" }
  /** The instance broke the connection before answering. */
  | { kind: "failed"; message: string }
  /** The request's own fault (Node refused its headers). */
  | { kind: "bad-request"; message: string };

/**
 * Send the upgrade request with Node's HTTP client, so the instance's answer
 * is parsed: only a `101` joins the two sockets. Any other answer goes back as
 * a normal response after which the client connection is closed: no byte the
 * client sends after its upgrade request ever reaches the instance unparsed
 * (a raw tunnel after a non-101 answer would let a second request through
 * with forged internal headers).
 */
function tunnel(
  ctx: ProxyContext,
  grant: Grant,
  { req, client, head, headers, deadline }: TunnelRequest,
): Promise<TunnelResult> {
  const ep = grant.upstream.endpoint;
  const out = ep.header
    ? ctx.gatewayAuth === undefined
      ? [...headers, ep.header.name, ep.header.value]
      : [...headers, ep.header.name, ep.header.value, GATEWAY_AUTH_HEADER, ctx.gatewayAuth]
    : headers;
  return new Promise((resolve) => {
    let connected = false;
    let settled = false;
    let opened = false;
    let upstream: ClientRequest;
    let upSocket: Duplex | undefined;
    const settle = (result: TunnelResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.off("close", onClientClose);
      upSocket?.destroy();
      upstream?.destroy();
      if (result.kind === "done") client.destroy();
      grant.release();
      if (opened) ctx.metrics.websockets.dec();
      resolve(result);
    };
    const onClientClose = () => settle({ kind: "done" });
    const timer = setTimeout(
      () => settle({ kind: "timeout" }),
      Math.max(0, deadline - performance.now()),
    );
    try {
      upstream = httpRequest({
        host: ep.host,
        port: ep.port,
        method: req.method ?? "GET",
        path: originForm(req.url),
        headers: out,
        setHost: false,
        agent: false,
      });
    } catch (err) {
      settle({ kind: "bad-request", message: (err as Error).message });
      return;
    }
    client.once("close", onClientClose);
    upstream.on("socket", (s) => {
      s.once("connect", () => {
        connected = true;
      });
    });
    let relaying = false;
    upstream.on("error", (err: Error) => {
      if (settled) return;
      if (relaying) {
        // The plain answer broke off midway: cut the client (its status line is out).
        client.destroy();
        return;
      }
      if (!connected) settle({ kind: "refused" });
      else
        settle({ kind: "failed", message: `instance ${grant.upstream.id} failed: ${err.message}` });
    });
    upstream.on("upgrade", (res: IncomingMessage, socket: Duplex, upHead: Buffer) => {
      if (settled) {
        socket.destroy();
        return;
      }
      clearTimeout(timer);
      opened = true;
      upSocket = socket;
      ctx.metrics.websockets.inc();
      // The instance's 101 goes back as it is.
      let text = `HTTP/1.1 101 ${res.statusMessage || "Switching Protocols"}\r\n`;
      const raw = res.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
      client.write(`${text}\r\n`);
      if (upHead.length > 0) client.write(upHead);
      if (head.length > 0) socket.write(head);
      socket.on("error", () => settle({ kind: "done" }));
      socket.once("close", () => settle({ kind: "done" }));
      socket.pipe(client);
      client.pipe(socket);
    });
    upstream.on("response", (res: IncomingMessage) => {
      if (settled) {
        res.destroy();
        return;
      }
      clearTimeout(timer);
      relaying = true;
      // Not switching protocols: a plain response, then the connection ends.
      relayResponse(res, client);
      const status = res.statusCode ?? 502;
      const finished = () => {
        if (settled) return;
        settled = true;
        client.off("close", onClientClose);
        grant.release();
        resolve({ kind: "answered", status });
      };
      res.once("end", finished);
      res.once("error", () => {
        client.destroy();
        finished();
      });
      client.once("close", () => {
        res.destroy();
        finished();
      });
    });
    upstream.end();
  });
}

/** Write a non-101 answer to the raw client socket as an HTTP/1.1 response, then close it. */
function relayResponse(res: IncomingMessage, client: Duplex): void {
  const status = res.statusCode ?? 502;
  let text = `HTTP/1.1 ${status} ${res.statusMessage || ""}\r\n`;
  const headers = downstreamHeaders(res.headers);
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`;
  }
  // Without Content-Length the body is delimited by the close (Node de-chunked it).
  text += "connection: close\r\n\r\n";
  client.write(text);
  res.pipe(client);
  res.once("end", () => closeAfterWrite(client));
}

/**
 * End a client connection whose remaining input is never read: unread bytes
 * are discarded (so the close is not a reset that could lose the response),
 * and a peer that keeps sending is cut after a second.
 */
export function closeAfterWrite(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.on("data", () => {});
  socket.resume();
  socket.end();
  const timer = setTimeout(() => socket.destroy(), 1_000);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
}
