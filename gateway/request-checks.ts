/**
 * Checks every request passes before it is routed, so that nothing a client
 * sends can make the gateway and an instance disagree about which service a
 * request is for (request smuggling, Host confusion):
 * - exactly one Host header, and a well-formed one (`name[:port]` or `[v6]:port`);
 * - an absolute-form target (`GET http://a.example/ HTTP/1.1`) only when its
 *   authority names the same host as Host (RFC 9112 says a server uses the
 *   target's authority; the gateway routes by Host, so a mismatch is refused);
 * - a declared body no larger than the gateway's per-request limit.
 * Each answer is a 4xx given at once; nothing is proxied.
 */
import type { IncomingMessage } from "node:http";
import { normalizeHost } from "./routes.ts";

export interface RequestProblem {
  status: 400 | 413;
  message: string;
}

/** host or IPv4, optional port; or an IPv6 literal in brackets, optional port. */
const HOST_SYNTAX =
  /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/** The problem with this request, or undefined when it may be routed. */
export function checkRequest(
  req: IncomingMessage,
  maxBodyBytes: number,
): RequestProblem | undefined {
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === "host") hosts++;
  }
  if (hosts > 1) {
    return {
      status: 400,
      message: `bad request: ${hosts} Host headers; send exactly one`,
    };
  }
  const host = req.headers.host;
  if (host !== undefined && !HOST_SYNTAX.test(host)) {
    return {
      status: 400,
      message: "bad request: the Host header is not a valid host[:port]",
    };
  }
  const url = req.url ?? "/";
  if (url.charCodeAt(0) !== 47 /* "/" */ && url !== "*") {
    let authority: string;
    try {
      authority = new URL(url).host;
    } catch {
      return { status: 400, message: "bad request: the request target is not a valid URL or path" };
    }
    if (normalizeHost(authority) !== normalizeHost(host)) {
      return {
        status: 400,
        message:
          "bad request: the absolute-form request target names another host than the Host header; send the path only, or the same host in both",
      };
    }
  }
  const length = req.headers["content-length"];
  if (length !== undefined && Number(length) > maxBodyBytes) {
    return {
      status: 413,
      message: `payload too large: the request body has ${length} bytes, more than this gateway's limit of ${maxBodyBytes} bytes (maxBodyBytes)`,
    };
  }
  return undefined;
}
