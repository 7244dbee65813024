/**
 * The console's session: the API token itself, in a cookie the page's script
 * cannot read (HttpOnly), that no other site's request carries (SameSite=
 * Strict), and, when the console is served over TLS, sent only over TLS and
 * not settable by sibling hosts (a `__Host-` cookie); over plain HTTP it is
 * scoped to /console. The token is checked against the token store on
 * every request, as a bearer token is: revoking it ends the session at once.
 *
 * Every POST must also come from the console's own origin (Origin, else
 * Sec-Fetch-Site). SameSite alone is not enough: a tenant's service at
 * `{name}.{namespace}.{domain}` is the same *site* as an API at
 * `api.{domain}`, so its pages would carry the cookie; they are not the same
 * origin.
 */
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { ForbiddenError } from "../../../src/errors.ts";
import type { Principal, TokenStore } from "../token.ts";

export const CONSOLE_PATH = "/console";
/** Over plain HTTP (a local install). */
const COOKIE = "skiff_console";
/**
 * Over TLS: a `__Host-` cookie (Secure, Path=/, no Domain), which a service's
 * host under the same parent domain cannot set or overwrite (cookie tossing:
 * planting its own token to log the operator into a tenant's view).
 */
const TLS_COOKIE = "__Host-skiff_console";
/** A session lasts at most this long; the token's revocation ends it sooner. */
const MAX_AGE_S = 8 * 3600;

/** The request reached us over TLS (directly, or through a proxy that says so). */
function overTls(c: Context): boolean {
  return (
    new URL(c.req.url).protocol === "https:" ||
    c.req.header("x-forwarded-proto")?.split(",")[0]?.trim() === "https"
  );
}

export function startSession(c: Context, token: string): void {
  const common = { httpOnly: true, sameSite: "Strict", maxAge: MAX_AGE_S } as const;
  if (overTls(c)) setCookie(c, TLS_COOKIE, token, { ...common, path: "/", secure: true });
  else setCookie(c, COOKIE, token, { ...common, path: CONSOLE_PATH });
}

export function endSession(c: Context): void {
  if (overTls(c)) deleteCookie(c, TLS_COOKIE, { path: "/", secure: true });
  else deleteCookie(c, COOKIE, { path: CONSOLE_PATH });
}

/** The principal of the session's token, or undefined (no cookie, unknown or revoked token). */
export async function sessionPrincipal(
  c: Context,
  tokens: TokenStore,
): Promise<Principal | undefined> {
  const token = getCookie(c, overTls(c) ? TLS_COOKIE : COOKIE);
  if (!token || !/^[A-Za-z0-9._~+/=-]{1,512}$/.test(token)) return undefined;
  return tokens.authenticate(token);
}

/**
 * Refuses a state-changing request that does not come from a page of this
 * origin: the Origin header must name our own host, or (a browser that sends
 * no Origin, or "null") Sec-Fetch-Site must say same-origin.
 */
export function checkSameOrigin(c: Context): void {
  const origin = c.req.header("origin");
  const host = c.req.header("host");
  if (origin !== undefined && origin !== "null" && host) {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (url && url.host === host) return;
  } else if (c.req.header("sec-fetch-site") === "same-origin") {
    // No Origin, or "null" (a privacy-sensitive context): the browser's own
    // Sec-Fetch-Site, which pages cannot set, still tells.
    return;
  }
  throw new ForbiddenError(
    "cross-site request refused: console forms are accepted only from the console's own origin",
  );
}
