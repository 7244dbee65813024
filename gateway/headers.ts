/**
 * Header rules between client and instance:
 * - hop-by-hop headers (and any named in Connection) stay on their hop;
 * - Host is kept;
 * - every `x-skiff-*` header from the client is dropped: internal headers
 *   (the isolate's revision header) come only from the endpoint record, so a
 *   forged one can never steer a request to another revision; the gateway's
 *   proof header (`x-skiff-gateway-auth`) only from the cluster secret;
 * - Forwarded, X-Forwarded-For/-Proto/-Host are set (replacing the client's,
 *   unless the gateway is told a trusted proxy sits in front);
 * - X-Request-Id is added when missing.
 */
import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

export const INTERNAL_HEADER_PREFIX = "x-skiff-";

/**
 * Proof that a request came through a gateway: the cluster secret
 * (src/cluster.ts), added only towards endpoints that carry an internal header
 * (isolates behind an agent's router), which check it. A client's copy is
 * dropped with every other `x-skiff-*` header.
 */
export const GATEWAY_AUTH_HEADER = "x-skiff-gateway-auth";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

export interface ForwardInfo {
  /** The client's address as the socket saw it. */
  clientIp: string | undefined;
  /** The Host header as the client sent it (with port). */
  host: string;
  proto: "http" | "https";
  /** Keep and extend the client's Forwarded / X-Forwarded-* headers. */
  trustForwarded: boolean;
}

export interface UpstreamHeaders {
  /** Flat [name, value, ...] list for undici. */
  headers: string[];
  requestId: string;
}

function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (!value) return undefined;
  // The usual values name no header (both are hop-by-hop already): no Set per message.
  const plain = value.length <= 10 ? value.toLowerCase() : "";
  if (plain === "keep-alive" || plain === "close") return undefined;
  const tokens = new Set<string>();
  for (const t of value.split(",")) {
    const token = t.trim().toLowerCase();
    if (token) tokens.add(token);
  }
  return tokens;
}

/** `::ffff:127.0.0.1` -> `127.0.0.1`; IPv6 in brackets and quoted for Forwarded. */
function forwardedFor(ip: string | undefined): { plain: string; node: string } {
  if (!ip) return { plain: "unknown", node: "unknown" };
  const plain = ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
  return { plain, node: plain.includes(":") ? `"[${plain}]"` : plain };
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/**
 * Headers for the instance, from the client's raw headers. `upgrade` keeps
 * Connection: upgrade and Upgrade (a WebSocket handshake needs them).
 */
export function upstreamHeaders(
  rawHeaders: readonly string[],
  info: ForwardInfo,
  upgrade = false,
): UpstreamHeaders {
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === "connection") {
      const tokens = connectionTokens(rawHeaders[i + 1]);
      if (tokens) listed = listed ? new Set([...listed, ...tokens]) : tokens;
    }
  }
  const out: string[] = [];
  let requestId: string | undefined;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let forwarded: string | undefined;
  let upgradeValue: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower.startsWith(INTERNAL_HEADER_PREFIX)) continue;
    if (HOP_BY_HOP.has(lower) || listed?.has(lower)) {
      if (upgrade && lower === "upgrade") upgradeValue = value;
      continue;
    }
    switch (lower) {
      case "expect":
        // The gateway answered 100-continue itself; the instance gets the body anyway.
        continue;
      case "x-forwarded-for":
        xff = xff ? `${xff}, ${value}` : value;
        continue;
      case "x-forwarded-proto":
        xfProto ??= value;
        continue;
      case "x-forwarded-host":
        xfHost ??= value;
        continue;
      case "forwarded":
        forwarded = forwarded ? `${forwarded}, ${value}` : value;
        continue;
      case "x-request-id":
        if (requestId !== undefined) continue;
        requestId = value;
        break;
    }
    out.push(name, value);
  }
  const client = forwardedFor(info.clientIp);
  const trust = info.trustForwarded;
  const node = `for=${client.node};host=${quote(info.host)};proto=${info.proto}`;
  out.push(
    "x-forwarded-for",
    trust && xff ? `${xff}, ${client.plain}` : client.plain,
    "x-forwarded-proto",
    trust && xfProto ? xfProto : info.proto,
    "x-forwarded-host",
    trust && xfHost ? xfHost : info.host,
    "forwarded",
    trust && forwarded ? `${forwarded}, ${node}` : node,
  );
  if (requestId === undefined) {
    requestId = randomUUID();
    out.push("x-request-id", requestId);
  }
  if (upgrade && upgradeValue !== undefined)
    out.push("connection", "upgrade", "upgrade", upgradeValue);
  return { headers: out, requestId };
}

/** The instance's response headers minus hop-by-hop ones, ready for writeHead. */
export function downstreamHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionTokens(
    Array.isArray(headers.connection) ? headers.connection.join(",") : headers.connection,
  );
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
