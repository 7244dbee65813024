/**
 * WebSocket (any HTTP/1.1 Upgrade) pass-through. Routing, waiting for an
 * instance, slots and internal headers work as for plain requests; once the
 * instance is reached the two sockets are joined byte for byte, so the
 * instance's 101 (or refusal) goes back as it is. An open tunnel counts as one
 * request in flight until either side closes.
 */
import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { UnavailableError } from "../src/errors.ts";
import type { Grant, Waiter } from "./dispatcher.ts";
import { ClientGoneError, GatewayTimeoutError } from "./errors.ts";
import { upstreamHeaders } from "./headers.ts";
import { originForm, type ProxyContext } from "./proxy.ts";
import { normalizeHost, pickTarget } from "./routes.ts";

const MAX_ATTEMPTS = 8;

function rawReply(socket: Duplex, status: number, text: string, message: string): void {
  if (socket.destroyed) return;
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
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
      if (result === "refused" && n < MAX_ATTEMPTS && !gone) {
        d.markSuspect(grant.upstream);
        ctx.metrics.retries.inc({ reason: "connect" });
        continue;
      }
      if (result === "refused") {
        code = 502;
        ctx.metrics.upstreamErrors.inc({ code: "502", reason: "unreachable" });
        rawReply(
          socket,
          502,
          "Bad Gateway",
          `bad gateway: no instance of revision ${d.ref} could be reached`,
        );
      } else if (result === "timeout") {
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

/** Join client and instance; resolves when the tunnel is over (or never opened). */
interface TunnelRequest {
  req: IncomingMessage;
  client: Duplex;
  head: Buffer;
  headers: string[];
  deadline: number;
}

function tunnel(
  ctx: ProxyContext,
  grant: Grant,
  { req, client, head, headers, deadline }: TunnelRequest,
): Promise<"done" | "refused" | "timeout"> {
  const ep = grant.upstream.endpoint;
  return new Promise((resolve) => {
    let connected = false;
    let answered = false;
    let settled = false;
    const upstream: Socket = connect({ host: ep.host, port: ep.port });
    const timer = setTimeout(
      () => {
        if (answered) return;
        settle("timeout");
      },
      Math.max(0, deadline - performance.now()),
    );
    const settle = (result: "done" | "refused" | "timeout") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      upstream.destroy();
      if (result === "done") client.destroy();
      grant.release();
      if (connected) ctx.metrics.websockets.dec();
      resolve(result);
    };
    upstream.once("connect", () => {
      connected = true;
      ctx.metrics.websockets.inc();
      let text = `${req.method ?? "GET"} ${originForm(req.url)} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
      if (ep.header) text += `${ep.header.name}: ${ep.header.value}\r\n`;
      upstream.write(`${text}\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.once("data", () => {
        answered = true;
        clearTimeout(timer);
      });
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", () => settle(connected ? "done" : "refused"));
    upstream.on("close", () => settle(connected || client.destroyed ? "done" : "refused"));
    client.once("close", () => settle("done"));
  });
}
