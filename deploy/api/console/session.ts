/**
 * The console's session: the API token itself, in a cookie the page's script
 * cannot read (HttpOnly), that no other site's request carries (SameSite=
 * Strict), sent only over TLS when the console is served over TLS (Secure),
 * and scoped to /console. The token is checked against the token store on
 * every request, as a bearer token is: revoking it ends the session at once.
 *
 * Every POST must also come from the console's own origin (Origin, else
 * Sec-Fetch-Site): SameSite covers modern browsers, the origin check covers
 * the rest, and a request that proves neither is refused.
 */
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { ForbiddenError } from "../../../src/errors.ts";
import type { Principal, TokenStore } from "../token.ts";

export const COOKIE = "skiff_console";
export const CONSOLE_PATH = "/console";
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
  setCookie(c, COOKIE, token, {
    path: CONSOLE_PATH,
    httpOnly: true,
    sameSite: "Strict",
    secure: overTls(c),
    maxAge: MAX_AGE_S,
  });
}

export function endSession(c: Context): void {
  deleteCookie(c, COOKIE, { path: CONSOLE_PATH, secure: overTls(c) });
}

/** The principal of the session's token, or undefined (no cookie, unknown or revoked token). */
export async function sessionPrincipal(
  c: Context,
  tokens: TokenStore,
): Promise<Principal | undefined> {
  const token = getCookie(c, COOKIE);
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
