/**
 * What an error from undici (or Node) says about an upstream attempt: the
 * instance could not be reached (nothing was sent: another instance may do),
 * or the request's own arguments were refused (never the instance's fault).
 */

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

export function shortReason(err: Error): string {
  const code = (err as { code?: string }).code;
  return code ? `${code}: ${err.message}` : err.message;
}

/** The connection broke under the request (e.g. a kept-alive one the instance closed as it was reused). */
export function isReset(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code === "UND_ERR_SOCKET" || code === "ECONNRESET" || code === "EPIPE";
}
