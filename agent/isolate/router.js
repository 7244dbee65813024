/**
 * Skiff isolate router: the one static worker of every workerd process the
 * agent runs. It picks the revision from an internal header the gateway sets,
 * fetches the revision's code from the agent (service binding CODE) the first
 * time this process sees it, and hands the request to a dynamically loaded
 * isolate via the workerLoader binding (LOADER).
 *
 * Bindings (see config.ts): LOADER, CODE, INTERNET, HEADER (text), TOKEN and
 * PROCESS (from the process environment, so one config serves every process).
 *
 * Busy/idle transitions per revision are written to stdout, prefixed with the
 * secret TOKEN, so that the agent knows which revisions had requests in flight
 * when a process stalls: console.log is written synchronously, before a
 * runaway isolate can block the thread.
 */

/** revision -> loader name, once its code was fetched successfully here. */
const loaded = new Map();
/** revision -> in-flight first fetch of its code (concurrent cold requests share it). */
const pending = new Map();
/** revision -> requests in flight. */
const busy = new Map();

const ERROR_HEADER = "x-skiff-isolate-error";

function fail(status, kind, message) {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", [ERROR_HEADER]: kind },
  });
}

function enter(env, revision) {
  const n = (busy.get(revision) ?? 0) + 1;
  busy.set(revision, n);
  if (n === 1 && env.TRACK === "1") console.log(`${env.TOKEN} b ${revision}`);
}

function leave(env, revision) {
  const n = (busy.get(revision) ?? 1) - 1;
  if (n > 0) {
    busy.set(revision, n);
    return;
  }
  busy.delete(revision);
  if (env.TRACK === "1") console.log(`${env.TOKEN} i ${revision}`);
}

/** The code payload for a revision, or null when the agent does not know it. */
async function fetchCode(env, revision) {
  const response = await env.CODE.fetch(`http://skiff-code/code/${encodeURIComponent(revision)}`, {
    headers: { "x-skiff-token": env.TOKEN, "x-skiff-process": env.PROCESS },
  });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`agent code service answered ${response.status}`);
  return response.json();
}

function workerCode(env, code) {
  return {
    compatibilityDate: code.compatibilityDate,
    compatibilityFlags: code.compatibilityFlags,
    mainModule: code.mainModule,
    modules: code.modules,
    env: code.env,
    // null: fetch() and connect() throw inside the worker.
    globalOutbound: code.network === "internet" ? env.INTERNET : null,
  };
}

/** Fetch once per process; failures are not cached (the loader would cache them). */
function firstLoad(env, revision) {
  let promise = pending.get(revision);
  if (promise === undefined) {
    promise = fetchCode(env, revision).finally(() => pending.delete(revision));
    pending.set(revision, promise);
  }
  return promise;
}

async function stubFor(env, revision) {
  const name = loaded.get(revision);
  if (name !== undefined) {
    return env.LOADER.get(name, async () => {
      const code = await fetchCode(env, revision);
      if (code === null) throw new Error(`revision ${revision} is no longer registered`);
      return workerCode(env, code);
    });
  }
  const code = await firstLoad(env, revision);
  if (code === null) return null;
  loaded.set(revision, code.loaderName);
  return env.LOADER.get(code.loaderName, () => workerCode(env, code));
}

function shortMessage(err) {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

export default {
  async fetch(request, env) {
    const revision = request.headers.get(env.HEADER);
    if (!revision) return fail(400, "missing-revision", `missing ${env.HEADER} header`);
    enter(env, revision);
    try {
      let stub;
      try {
        stub = await stubFor(env, revision);
      } catch (err) {
        return fail(503, "code-unavailable", `could not load revision: ${shortMessage(err)}`);
      }
      if (stub === null) {
        return fail(404, "unknown-revision", `revision ${revision} is not registered on this node`);
      }
      const headers = new Headers(request.headers);
      headers.delete(env.HEADER);
      const response = await stub.getEntrypoint().fetch(new Request(request, { headers }));
      if (!response.headers.has(ERROR_HEADER)) return response;
      // A worker must not be able to impersonate the router's error kinds.
      const clean = new Response(response.body, response);
      clean.headers.delete(ERROR_HEADER);
      return clean;
    } catch (err) {
      return fail(500, "worker-exception", `worker error: ${shortMessage(err)}`);
    } finally {
      leave(env, revision);
    }
  },
};

/** Reached only through the agent's private control socket. */
export const control = {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    if (url.pathname === "/forget" && request.method === "POST") {
      // The loader never evicts, but an unregistered revision must stop answering.
      loaded.delete(url.searchParams.get("revision") ?? "");
      return new Response(null, { status: 204 });
    }
    return new Response("not found", { status: 404 });
  },
};
