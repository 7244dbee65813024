/**
 * The two virtual modules compileWorker bundles around the user's code so
 * that one artifact serves both worker styles:
 *
 *  - Workers style: `export default { fetch(request, env, ctx) }` (or a
 *    default-exported function).
 *  - Deno style: `Deno.serve(handler)` / `Deno.serve(options, handler)` /
 *    `Deno.serve({ handler })`, reading settings with `Deno.env.get("X")`.
 *
 * How it fits together:
 *
 *  1. PRELUDE defines a minimal `globalThis.Deno` = { env: { get, has, set,
 *     delete, toObject }, serve }. `serve` does not listen: it records the
 *     first handler it is given and returns a server-like object.
 *  2. ENTRY is the bundle's root module. It imports PRELUDE statically (so
 *     `Deno` exists before any user code runs) and the user's main module with
 *     a *dynamic* `import()`. Without code splitting esbuild inlines that
 *     module behind a lazy initialiser, so the user's top-level code runs on
 *     the first request, after `Deno.env` has been filled from that request's
 *     `env` bindings. Top-level `Deno.env.get("TARGET")` therefore works.
 *  3. ENTRY's default export is `{ fetch(request, env, ctx) }`, the only
 *     shape the runtime (workerd) needs. Per request it copies the string
 *     bindings of `env` into `Deno.env`, then dispatches to the user's
 *     default export's `fetch` if there is one, else to the recorded
 *     `Deno.serve` handler (with Deno's `onError` honoured), else answers 500
 *     with a message saying what the module lacks.
 *
 * Limits, on purpose: only `Deno.env` and `Deno.serve` exist (no file system,
 * no subprocesses); `server.finished` never resolves (the server lives as long
 * as the isolate), so do not `await` it at top level.
 */

/** Import specifier ENTRY uses for the prelude. */
export const PRELUDE_SPECIFIER = "skiff:prelude";
/** Import specifier prefix ENTRY uses for the user's main module. */
export const USER_SPECIFIER_PREFIX = "skiff:user/";

export const PRELUDE_SOURCE = `// Skiff worker prelude: a minimal Deno namespace (env + serve) for isolates.
const vars = new Map();
let served;

export function setEnv(bindings) {
  if (bindings === null || typeof bindings !== "object") return;
  for (const [key, value] of Object.entries(bindings)) {
    if (typeof value === "string") vars.set(key, value);
  }
}

export function servedHandler() {
  return served;
}

const env = {
  get: (key) => vars.get(key),
  has: (key) => vars.has(key),
  set: (key, value) => void vars.set(String(key), String(value)),
  delete: (key) => void vars.delete(key),
  toObject: () => Object.fromEntries(vars),
};

function serve(first, second) {
  const options = typeof first === "function" ? {} : (first ?? {});
  const handler =
    typeof first === "function" ? first : typeof second === "function" ? second : options.handler;
  if (typeof handler !== "function") {
    throw new TypeError("Deno.serve: pass a handler function, e.g. Deno.serve((req) => new Response(\\"hi\\"))");
  }
  if (served === undefined) served = { handler, onError: options.onError };
  const addr = { transport: "tcp", hostname: options.hostname ?? "0.0.0.0", port: options.port ?? 8000 };
  return {
    addr,
    finished: new Promise(() => {}),
    shutdown: async () => {},
    ref() {},
    unref() {},
    async [Symbol.asyncDispose]() {},
  };
}

globalThis.Deno = { env, serve };
`;

/** The bundle's root module; `main` is the user's entry module name. */
export function entrySource(main: string): string {
  return `// Skiff worker entry: one fetch handler for both Workers-style and Deno-style modules.
import { servedHandler, setEnv } from ${JSON.stringify(PRELUDE_SPECIFIER)};

function connInfo(request) {
  const forwarded = request.headers.get("x-forwarded-for");
  const hostname = request.headers.get("cf-connecting-ip") ?? forwarded?.split(",")[0]?.trim() ?? "127.0.0.1";
  return { remoteAddr: { transport: "tcp", hostname, port: 0 }, completed: Promise.resolve() };
}

/** The isolate runtime calls this once before publishing the revision: a top-level throw fails the revision then. */
export async function __skiffInit(env) {
  setEnv(env);
  await import(${JSON.stringify(USER_SPECIFIER_PREFIX + main)});
}

export default {
  async fetch(request, env, ctx) {
    setEnv(env);
    const user = await import(${JSON.stringify(USER_SPECIFIER_PREFIX + main)});
    const exported = user.default;
    if (exported !== null && typeof exported === "object" && typeof exported.fetch === "function") {
      return exported.fetch(request, env, ctx);
    }
    if (typeof exported === "function") return exported(request, env, ctx);
    const served = servedHandler();
    if (served !== undefined) {
      try {
        return await served.handler(request, connInfo(request));
      } catch (err) {
        if (typeof served.onError === "function") return served.onError(err);
        throw err;
      }
    }
    return new Response(
      "worker module has neither \`export default { fetch(request, env, ctx) }\` nor a \`Deno.serve(handler)\` call\\n",
      { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } },
    );
  },
};
`;
}
