/**
 * The user-facing server: a plain node:http handler calling the proxy (a
 * framework's Request/Response adaptation cost 10-20% of its throughput), the
 * raw 'upgrade' event for WebSockets, and the client-protecting limits
 * (header timeout, keep-alive, head size, connections).
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { Duplex } from "node:stream";
import type { GatewayOptions } from "./options.ts";
import { type ProxyContext, proxyHttp, replyText } from "./proxy.ts";
import { closeAfterWrite, proxyUpgrade } from "./upgrade.ts";

export interface TrafficServer {
  server: Server;
  /** Open upgraded connections (tunnels), cut at shutdown. */
  upgrades: Set<Duplex>;
}

export function createTrafficServer(
  options: GatewayOptions,
  ctx: ProxyContext,
  closing: () => boolean,
): TrafficServer {
  const { logger, metrics } = ctx;
  const server = createServer(
    {
      // Whole-request time is the revision's (timeoutSeconds); uploads may take long.
      requestTimeout: 0,
      // Set explicitly: with requestTimeout 0 Node would leave headers unbounded (slowloris).
      headersTimeout: options.headersTimeoutMs,
      // Node checks headersTimeout on this period; keep it well under the timeout.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, options.headersTimeoutMs / 4)),
      keepAliveTimeout: options.keepAliveTimeoutMs,
      maxHeaderSize: options.maxHeaderBytes,
    },
    (req, res) => {
      // The proxy consumes request bodies itself (streaming them to the instance).
      proxyHttp(ctx, req, res).catch((err: unknown) => {
        logger.error({ err }, "gateway error while proxying");
        replyText(res, 500, "internal gateway error");
      });
    },
  );
  server.maxConnections = options.maxConnections;
  const fdLimit = openFileLimit();
  if (fdLimit !== undefined && options.maxConnections > fdLimit / 2) {
    logger.warn(
      { maxConnections: options.maxConnections, openFileLimit: fdLimit },
      "maxConnections is above half the process's open-file limit: a connection flood could exhaust descriptors the rest of the process needs; lower maxConnections or raise ulimit -n",
    );
  }
  const upgrades = new Set<Duplex>();
  server.on("upgrade", (req, socket: Duplex, head: Buffer) => {
    if (closing()) {
      socket.destroy();
      return;
    }
    void proxyUpgrade(ctx, req, socket, head, (s) => {
      upgrades.add(s);
      s.once("close", () => upgrades.delete(s));
    });
  });
  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => {
    // A request Node's parser refused (malformed, oversized head, headers too slow):
    // answered at once on that connection only; never routed.
    if (!socket.writable || err.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const status =
      err.code === "HPE_HEADER_OVERFLOW"
        ? "431 Request Header Fields Too Large"
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? "408 Request Timeout"
          : "400 Bad Request";
    metrics.requests.inc({ code: status.slice(0, 3), namespace: "", service: "" });
    socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    closeAfterWrite(socket);
  });
  return { server, upgrades };
}

/** The soft RLIMIT_NOFILE of this process (Linux), if it can be read. */
function openFileLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}
