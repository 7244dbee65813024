/**
 * The web console under /console: log in with an API token, see services,
 * revisions, hosts and request rates, change a service's traffic (split, tag,
 * pin). Pages are HTML forms; /console/rates is the one JSON endpoint, polled
 * by the page's script for the sparklines.
 *
 * A traffic change is authorized like `PATCH services/{name}` (an `edit` or
 * admin token) and goes through the API's own write path (../write.ts):
 * the same parsing, validation, quotas, optimistic concurrency and log line.
 */
import type { Context, Hono, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { apply as mergePatch } from "json-merge-patch";
import { NotFoundError, TooLargeError, UnavailableError } from "../../../src/errors.ts";
import { isDns1123Label } from "../../../src/model/index.ts";
import { allowed, authorize, userName } from "../access.ts";
import { toSkiffError } from "../status.ts";
import type { Principal, TokenStore } from "../token.ts";
import { userView, type WriteDeps, writeObject } from "../write.ts";
import { CONSOLE_CSS, CONSOLE_JS } from "./assets.ts";
import { type ConsoleSources, readHosts, readRates, readServices } from "./data.ts";
import { errorPage, loginPage, overviewPage, STATIC_PATH } from "./pages.ts";
import {
  CONSOLE_PATH,
  checkSameOrigin,
  endSession,
  sessionPrincipal,
  startSession,
} from "./session.ts";
import { pinTraffic, trafficFromForm } from "./traffic.ts";

export interface ConsoleOptions extends WriteDeps {
  tokens: TokenStore;
  /** False while the store's connection is down (pages then say so at once). */
  storeReady?: (() => boolean) | undefined;
  /** Fleet and gateway counters; without them the console shows no hosts and no rates. */
  sources?: ConsoleSources | undefined;
}

/** A console form is a few fields per revision: far below this. */
const FORM_LIMIT_BYTES = 64 * 1024;

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

const securityHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  c.header("Content-Security-Policy", CONSOLE_CSP);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("X-Frame-Options", "DENY");
  // Not no-referrer: with it, browsers send `Origin: null` on the console's own forms.
  c.header("Referrer-Policy", "same-origin");
  c.header("Cross-Origin-Opener-Policy", "same-origin");
  // Pages hold tenant data of one token: never stored by a shared cache or the back button.
  if (!c.req.path.startsWith(`${STATIC_PATH}/`)) c.header("Cache-Control", "no-store");
};

export function registerConsole(app: Hono, options: ConsoleOptions): void {
  const { store, tokens, sources, logger } = options;

  app.use(CONSOLE_PATH, securityHeaders);
  app.use(`${CONSOLE_PATH}/*`, securityHeaders);
  app.use(
    `${CONSOLE_PATH}/*`,
    bodyLimit({
      maxSize: FORM_LIMIT_BYTES,
      onError: () => {
        throw new TooLargeError(`console form larger than ${FORM_LIMIT_BYTES} bytes`);
      },
    }),
  );

  app.get(`${STATIC_PATH}/console.js`, (c) => {
    c.header("Cache-Control", "no-cache");
    return c.body(CONSOLE_JS, 200, { "Content-Type": "text/javascript; charset=utf-8" });
  });
  app.get(`${STATIC_PATH}/console.css`, (c) => {
    c.header("Cache-Control", "no-cache");
    return c.body(CONSOLE_CSS, 200, { "Content-Type": "text/css; charset=utf-8" });
  });

  function requireStore(): void {
    if (options.storeReady && !options.storeReady()) {
      throw new UnavailableError(
        "the API cannot reach its store (Redis) right now; retry in a few seconds",
      );
    }
  }

  /** The session's principal; undefined when the visitor must log in. */
  async function principal(c: Context): Promise<Principal | undefined> {
    requireStore();
    return sessionPrincipal(c, tokens);
  }

  /** An HTML answer for any failure: the Status message as text, never internals. */
  async function page(c: Context, render: () => Promise<Response>): Promise<Response> {
    try {
      return await render();
    } catch (err) {
      const e = toSkiffError(err);
      if (e.code === "INTERNAL") logger.error({ err, path: c.req.path }, "console request failed");
      return c.html(errorPage(e.message), e.status as 500);
    }
  }

  async function overview(c: Context, p: Principal, error?: string, status = 200) {
    const [services, hosts] = await Promise.all([
      readServices(store, p),
      // Hosts are secondary: a fleet read that fails (e.g. a Redis ACL from before
      // the console) leaves the services page working, and says so.
      sources
        ? readHosts(sources, p, logger).catch((err: unknown) => {
            logger.warn({ err }, "console: cannot read the fleet's hosts");
            return undefined;
          })
        : Promise.resolve(undefined),
    ]);
    const body = overviewPage({
      principal: p,
      canEdit: (ns) => allowed(p, "patch", ns),
      services,
      hosts,
      error,
    });
    return c.html(body, status as 200);
  }

  app.get(CONSOLE_PATH, (c) =>
    page(c, async () => {
      const p = await principal(c);
      if (!p) return c.redirect(`${CONSOLE_PATH}/login`, 303);
      return overview(c, p);
    }),
  );

  app.get(`${CONSOLE_PATH}/login`, (c) =>
    page(c, async () => {
      if (await principal(c)) return c.redirect(CONSOLE_PATH, 303);
      return c.html(loginPage());
    }),
  );

  app.post(`${CONSOLE_PATH}/login`, (c) =>
    page(c, async () => {
      checkSameOrigin(c);
      requireStore();
      const form = await c.req.parseBody();
      const token = typeof form.token === "string" ? form.token.trim() : "";
      const valid = /^[A-Za-z0-9._~+/=-]{1,512}$/.test(token)
        ? await tokens.authenticate(token)
        : undefined;
      if (!valid) return c.html(loginPage("Unknown or revoked token."), 401);
      startSession(c, token);
      return c.redirect(CONSOLE_PATH, 303);
    }),
  );

  app.post(`${CONSOLE_PATH}/logout`, (c) =>
    page(c, async () => {
      checkSameOrigin(c);
      endSession(c);
      return c.redirect(`${CONSOLE_PATH}/login`, 303);
    }),
  );

  app.get(`${CONSOLE_PATH}/rates`, async (c) => {
    const p = await principal(c);
    if (!p) return c.json({ message: "log in again" }, 401);
    return c.json(sources ? await readRates(store, sources, p) : {});
  });

  app.post(`${CONSOLE_PATH}/services/:ns/:name/traffic`, (c) =>
    page(c, async () => {
      checkSameOrigin(c);
      const p = await principal(c);
      if (!p) return c.redirect(`${CONSOLE_PATH}/login`, 303);
      const namespace = c.req.param("ns");
      const name = c.req.param("name");
      try {
        if (!isDns1123Label(namespace) || !isDns1123Label(name)) {
          throw new NotFoundError(`services "${name.slice(0, 63)}" not found`);
        }
        authorize(p, "patch", "services", namespace);
        const form = await c.req.parseBody();
        const current = await store.get("services", namespace, name);
        if (!current) {
          throw new NotFoundError(`services "${name}" not found in namespace "${namespace}"`, {
            kind: "services",
            name,
          });
        }
        const pin = typeof form.pin === "string" ? form.pin : undefined;
        const traffic =
          pin !== undefined ? pinTraffic(pin, current.spec.traffic) : trafficFromForm(form, name);
        const resourceVersion =
          typeof form.resourceVersion === "string" ? form.resourceVersion : undefined;
        // The same merge as a PATCH of spec.traffic; the form's resourceVersion
        // makes a change based on a stale page a conflict, not a silent overwrite.
        const body = mergePatch(userView(current), {
          metadata: resourceVersion ? { resourceVersion } : {},
          spec: { traffic },
        }) as Record<string, unknown>;
        await writeObject(options, {
          plural: "services",
          namespace,
          name,
          body,
          mode: "replace",
          dryRun: false,
          via: `console (${p.kind === "admin" ? "admin token" : `token ${p.name}`})`,
          user: userName(p),
        });
      } catch (err) {
        const e = toSkiffError(err);
        if (e.code === "INTERNAL") throw err;
        return overview(c, p, e.message, e.status);
      }
      return c.redirect(CONSOLE_PATH, 303);
    }),
  );
}
