/**
 * Skiff isolate router: the one static worker of every workerd process the
 * agent runs. It picks the revision from an internal header the gateway sets,
 * fetches the revision's code from the agent (service binding CODE) the first
 * time this process sees it, and hands the request to a dynamically loaded
 * isolate via the workerLoader binding (LOADER).
 *
 * Bindings (see config.ts): LOADER, CODE, INTERNET, HEADER and AUTH_HEADER
 * (text), and from the process environment (so one config serves every
 * process): TOKEN, PROCESS, NAMESPACE (the only namespace this process
 * serves), GATEWAY_SECRET (the cluster secret a request must carry in
 * AUTH_HEADER: only gateways know it; it is removed before a worker sees the
 * request) and PROGRESS (the line a worker's isolate writes when one of its
 * requests starts or settles, see PROBE_SOURCE).
 *
 * Busy/idle transitions per revision are written to stdout, prefixed with the
 * secret TOKEN, so that the agent knows which revisions had requests in flight
 * when a process stalls: console.log is written synchronously, before a
 * runaway isolate can block the thread. Requests refused for lack of the
 * gateway secret are counted the same way (`f`).
 */

/** revision -> loader name, once its code was fetched successfully here. */
const loaded = new Map();
/**
 * revision -> loader name of a parked revision (an isolate standby): it
 * answers no request, but a load brings it back without fetching its code or
 * building its isolate again.
 */
const parked = new Map();
/** revision -> in-flight first fetch of its code (concurrent cold requests share it). */
const pending = new Map();
/** revision -> requests in flight. */
const busy = new Map();
/** revision -> { until, message }: refused after repeated stalls (set by the agent). */
const refused = new Map();
let refusedRead = false;

const ERROR_HEADER = "x-skiff-isolate-error";
/**
 * Set on every response while this process is being replaced (a recycle): the
 * milliseconds until the agent stops it. A gateway that sees it sends its next
 * requests on fresh connections that close after one answer, so that no
 * kept-alive connection is still reused when this process drains and closes
 * it (the HTTP/1.1 race that would lose a request with a body).
 */
const DRAINING_HEADER = "x-skiff-draining";
/** Epoch ms when the agent stops this process; 0 while not being replaced. */
let drainingUntil = 0;

function fail(status, kind, message) {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", [ERROR_HEADER]: kind },
  });
}

/** The refusal in force for a revision, if any. */
function refusalOf(env, revision) {
  if (!refusedRead) {
    // What the agent refused when it started this process (after a stall).
    refusedRead = true;
    try {
      for (const [rev, r] of Object.entries(JSON.parse(env.REFUSED || "{}"))) refused.set(rev, r);
    } catch {}
  }
  const refusal = refused.get(revision);
  if (refusal === undefined) return undefined;
  if (Date.now() < refusal.until) return refusal;
  refused.delete(revision);
  return undefined;
}

/** Compare without an early exit, so response timing does not leak the secret. */
function sameSecret(given, expected) {
  if (typeof given !== "string" || given.length !== expected.length || expected.length === 0) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= given.charCodeAt(i) ^ expected.charCodeAt(i);
  return diff === 0;
}

/**
 * A progress beat, at most one per PROGRESS_MS of wall time: JS ran here. The
 * watchdog tells a thread held by one request (no beats) from a backlog on a
 * starved host (beats keep coming while the probe waits its turn).
 */
const PROGRESS_MS = 25;
let lastBeat = 0;
function beat(env) {
  const now = Date.now();
  if (now - lastBeat < PROGRESS_MS || env.TRACK !== "1") return;
  lastBeat = now;
  console.log(`${env.TOKEN} p`);
}

function enter(env, revision) {
  beat(env);
  const n = (busy.get(revision) ?? 0) + 1;
  busy.set(revision, n);
  if (n === 1 && env.TRACK === "1") console.log(`${env.TOKEN} b ${revision}`);
}

function leave(env, revision) {
  beat(env);
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

/**
 * The isolate's main module (PROBE_SOURCE) exports the revision's handler and
 * adds a probe entrypoint: loading the isolate through it evaluates the
 * revision's module (a top-level throw shows) without calling the revision's
 * own handler.
 */
const PROBE_MODULE = "skiff-main.js";
const CONSOLE_MODULE = "skiff-console.js";
/**
 * Runs before the worker's own modules: its console lines carry the revision
 * (after a record separator the agent looks for, see WORKER_LOG_MARK in
 * process.ts), so that `skiff logs` can tell whose they are. The worker's own
 * mark comes first on every line it logs; the pool also drops a mark naming
 * another namespace than the process's.
 */
const CONSOLE_SOURCE = (
  revision,
) => `const mark = ${JSON.stringify(`\u001eskiff:${revision}\u001f`)};
// console.log and Date.now as they were before any of the worker's code ran:
// the writer of the progress lines and its clock (PROBE_SOURCE). They give a
// worker nothing new: a newline in what it logs already starts an unmarked line.
export const writeLine = console.log.bind(console);
export const clock = Date.now;
for (const level of ["log", "info", "warn", "error", "debug"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => original(mark, ...args);
}
`;
/**
 * The isolate's main module. Its default export is the revision's own, its
 * fetch wrapped (when `progress` is set: in-flight tracking on) to write
 * `progress` as a line when a request starts, and when its promise settles
 * (after an await on I/O, e.g. of the request's body), at most one line per
 * LINE_SPACING_MS of wall time.
 *
 * workerd runs the requests that are ready one after another without polling
 * for I/O in between: in such a burst the router runs nothing (its requests
 * all started before, and end after; so no beat) and no probe is answered
 * until the last one is done. These lines are the only sign that the thread
 * is not held by one request: the watchdog counts a stall's CPU from the
 * latest, so a burst of short requests never adds up to one, whether their
 * CPU runs before their first await or after it.
 *
 * Date.now() in workerd reads the clock (it moves within a request and within
 * a burst), so the lines can be spaced by time: in a burst, the longest gap
 * between two lines is one request's time plus LINE_SPACING_MS, against a
 * stall window of `watchdog.stallMs` (150 ms by default) of wall time without
 * a line. A line skipped can only make the latest line older: a request that
 * spins is stopped no later than with a line per request. Each line is a
 * console.log, a write to a pipe that wakes the agent: about 20 µs of the
 * process's CPU (BENCHMARKS.md, isolate request cost).
 *
 * `progress` is a secret of the process (not its TOKEN): a module-scoped
 * constant, written with console.log as it was before the worker's code ran.
 * A worker can still call this wrapper (it can import this module) to write
 * lines while it spins; the watchdog bounds what that buys with
 * `watchdog.backlogCpuMs`, counted from the router's own lines. A default
 * export without a fetch method (a class) is exported as is, without lines.
 */
const LINE_SPACING_MS = 5;
const PROBE_SOURCE = (main, progress) => `import { writeLine, clock } from "./${CONSOLE_MODULE}";
import handler, * as revision from "./${main}";
const progress = ${JSON.stringify(progress)};
let last = -Infinity;
function line() {
  const now = clock();
  // (A clock set back writes at once.)
  if (now - last < ${LINE_SPACING_MS} && now >= last) return;
  last = now;
  writeLine(progress);
}
async function settled(result) {
  try {
    await result;
  } catch {}
  line();
}
export default progress !== "" && handler !== null && typeof handler === "object" && typeof handler.fetch === "function"
  ? {
      fetch(request, env, ctx) {
        line();
        const result = handler.fetch(request, env, ctx);
        if (result !== null && typeof result === "object" && typeof result.then === "function") {
          void settled(result);
        }
        return result;
      },
    }
  : handler;
export const SkiffProbe = {
  async fetch(request, env) {
    try {
      // Skiff's bundles defer the user's module to the first request (so that
      // Deno.env is filled first); __skiffInit runs it now.
      if (typeof revision.__skiffInit === "function") await revision.__skiffInit(env);
      // An isolate's first console line costs milliseconds (workerd sets up
      // its console then): paid here, at load, not by the first request.
      if (progress !== "") line();
      return new Response("loaded");
    } catch (err) {
      return Response.json(
        { message: String(err && err.message ? err.name + ": " + err.message : err), stack: String(err && err.stack) },
        { status: 500 },
      );
    }
  },
};
`;

function workerCode(env, code, revision) {
  return {
    compatibilityDate: code.compatibilityDate,
    compatibilityFlags: code.compatibilityFlags,
    mainModule: PROBE_MODULE,
    modules: {
      ...code.modules,
      [CONSOLE_MODULE]: CONSOLE_SOURCE(revision),
      [PROBE_MODULE]: PROBE_SOURCE(code.mainModule, env.TRACK === "1" ? env.PROGRESS : ""),
    },
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

/** The loader's isolate of a revision loaded here (built again should the loader have dropped it). */
function reuse(env, revision, name) {
  return env.LOADER.get(name, async () => {
    const code = await fetchCode(env, revision);
    if (code === null) throw new Error(`revision ${revision} is no longer registered`);
    return workerCode(env, code, revision);
  });
}

async function stubFor(env, revision) {
  // A standby answers like a revision this process does not serve (only a load unparks it).
  if (parked.has(revision)) return null;
  const name = loaded.get(revision);
  if (name !== undefined) return reuse(env, revision, name);
  const code = await firstLoad(env, revision);
  if (code === null) return null;
  loaded.set(revision, code.loaderName);
  return env.LOADER.get(code.loaderName, () => workerCode(env, code, revision));
}

function shortMessage(err) {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

/**
 * A response on its way out. Only the router says a process is draining, and
 * a worker must not be able to impersonate the router's error kinds: a
 * worker's own marks are dropped.
 */
function finish(response, fromWorker) {
  const headers = response.headers;
  if (
    drainingUntil === 0 &&
    !(fromWorker && (headers.has(ERROR_HEADER) || headers.has(DRAINING_HEADER)))
  ) {
    return response;
  }
  const marked = new Response(response.body, response);
  if (fromWorker) marked.headers.delete(ERROR_HEADER);
  if (drainingUntil === 0) marked.headers.delete(DRAINING_HEADER);
  else marked.headers.set(DRAINING_HEADER, String(Math.max(0, drainingUntil - Date.now())));
  return marked;
}

export default {
  fetch(request, env) {
    const response = route(request, env);
    return response instanceof Response ? finish(response, false) : response;
  },
};

/**
 * One request: the gateway secret, the revision, a refusal in force, its
 * isolate. A router's own answer is a Response; a worker's comes as a promise
 * (already finished). The warm path awaits nothing but the worker's answer.
 */
function route(request, env) {
  if (!sameSecret(request.headers.get(env.AUTH_HEADER), env.GATEWAY_SECRET)) {
    console.log(`${env.TOKEN} f`);
    return fail(
      403,
      "forbidden",
      `forbidden: isolates only answer requests from a Skiff gateway (missing or wrong ${env.AUTH_HEADER})`,
    );
  }
  const revision = request.headers.get(env.HEADER);
  if (!revision) return fail(400, "missing-revision", `missing ${env.HEADER} header`);
  if (!revision.startsWith(`${env.NAMESPACE}/`)) {
    return fail(404, "unknown-revision", `revision ${revision} is not served by this process`);
  }
  const refusal = refusalOf(env, revision);
  if (refusal !== undefined) {
    return new Response(`${refusal.message}\n`, {
      status: 503,
      headers: {
        "content-type": "text/plain; charset=utf-8",
        [ERROR_HEADER]: "worker-stalled",
        "retry-after": String(Math.max(1, Math.ceil((refusal.until - Date.now()) / 1000))),
      },
    });
  }
  enter(env, revision);
  const name = loaded.get(revision);
  if (name === undefined || parked.has(revision)) return routeCold(request, env, revision);
  let stub;
  try {
    stub = reuse(env, revision, name);
  } catch (err) {
    leave(env, revision);
    return fail(503, "code-unavailable", `could not load revision: ${shortMessage(err)}`);
  }
  return forward(request, env, revision, stub, false);
}

/** The first request here (it creates the isolate: the startup CPU budget), or a parked revision's. */
async function routeCold(request, env, revision) {
  const cold = !loaded.has(revision) && env.TRACK === "1";
  if (cold) console.log(`${env.TOKEN} s ${revision}`);
  let stub;
  try {
    stub = await stubFor(env, revision);
  } catch (err) {
    return failed(
      env,
      revision,
      cold,
      503,
      "code-unavailable",
      `could not load revision: ${shortMessage(err)}`,
    );
  }
  if (stub === null) {
    return failed(
      env,
      revision,
      cold,
      404,
      "unknown-revision",
      `revision ${revision} is not registered on this node`,
    );
  }
  return forward(request, env, revision, stub, cold);
}

/** Tracking ends with the answer's head. */
function settle(env, revision, cold) {
  if (cold) console.log(`${env.TOKEN} e ${revision}`);
  leave(env, revision);
}

/** The router's own answer to a request it tracked. */
function failed(env, revision, cold, status, kind, message) {
  settle(env, revision, cold);
  return finish(fail(status, kind, message), false);
}

/** Hand the request to the revision's isolate, without the two internal headers. */
function forward(request, env, revision, stub, cold) {
  let answer;
  try {
    const headers = new Headers(request.headers);
    headers.delete(env.HEADER);
    headers.delete(env.AUTH_HEADER);
    answer = stub.getEntrypoint().fetch(new Request(request, { headers }));
  } catch (err) {
    return failed(
      env,
      revision,
      cold,
      500,
      "worker-exception",
      `worker error: ${shortMessage(err)}`,
    );
  }
  return answer.then(
    (response) => {
      settle(env, revision, cold);
      return finish(response, true);
    },
    (err) =>
      failed(env, revision, cold, 500, "worker-exception", `worker error: ${shortMessage(err)}`),
  );
}

/** Where a module failed, when V8 said: `worker.js:3:9`. */
function position(err) {
  const stack = err && typeof err.stack === "string" ? err.stack : "";
  const match = /\(?((?:[\w.-]+\/)*[\w.-]+\.m?js):(\d+):(\d+)\)?/.exec(stack);
  return match ? `${match[1]}:${match[2]}:${match[3]}` : undefined;
}

/** Load a revision's isolate (evaluating its module) without running its handler. */
async function load(env, revision) {
  const refusal = refusalOf(env, revision);
  if (refusal !== undefined) {
    return Response.json({ ok: false, kind: "refused", message: refusal.message });
  }
  const name = parked.get(revision);
  if (name !== undefined) {
    // A standby's module was evaluated and served before it was parked: its
    // isolate is back at once, without the probe's cross-isolate call.
    parked.delete(revision);
    loaded.set(revision, name);
    return Response.json({ ok: true, kind: "resumed", message: "" });
  }
  // Tracked like a request: a module that spins at top level is named by the stall.
  enter(env, revision);
  // A load (isolate creation, module evaluation) gets the startup CPU budget.
  if (env.TRACK === "1") console.log(`${env.TOKEN} s ${revision}`);
  try {
    return await loadNow(env, revision);
  } finally {
    if (env.TRACK === "1") console.log(`${env.TOKEN} e ${revision}`);
    leave(env, revision);
  }
}

async function loadNow(env, revision) {
  let stub;
  try {
    stub = await stubFor(env, revision);
  } catch (err) {
    return Response.json({ ok: false, kind: "code-unavailable", message: shortMessage(err) });
  }
  if (stub === null) return Response.json({ ok: false, kind: "unknown-revision", message: "" });
  try {
    const response = await stub.getEntrypoint("SkiffProbe").fetch("http://skiff-probe/");
    if (response.ok) {
      await response.arrayBuffer();
      return Response.json({ ok: true, kind: "loaded", message: "" });
    }
    // The module loaded but its deferred top level threw.
    const thrown = await response.json();
    loaded.delete(revision);
    return Response.json({
      ok: false,
      kind: "module-error",
      message: shortMessage(`Uncaught ${thrown.message}`),
      position: position({ stack: thrown.stack }),
    });
  } catch (err) {
    // The loader remembers a failed isolate: drop it so that nothing routes to it.
    loaded.delete(revision);
    return Response.json({
      ok: false,
      kind: "module-error",
      message: shortMessage(err),
      position: position(err),
    });
  }
}

/** Reached only through the agent's private control socket, with the process token. */
export const control = {
  async fetch(request, env) {
    if (!sameSecret(request.headers.get("x-skiff-token"), env.TOKEN)) {
      return new Response("forbidden", { status: 403 });
    }
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    const revision = url.searchParams.get("revision") ?? "";
    if (request.method !== "POST") return new Response("not found", { status: 404 });
    if (url.pathname === "/forget") {
      // The loader never evicts, but an unregistered revision must stop answering.
      loaded.delete(revision);
      parked.delete(revision);
      return new Response(null, { status: 204 });
    }
    if (url.pathname === "/park") {
      const name = loaded.get(revision);
      if (name !== undefined) {
        loaded.delete(revision);
        parked.set(revision, name);
      }
      return new Response(null, { status: 204 });
    }
    if (url.pathname === "/load") return load(env, revision);
    if (url.pathname === "/drain") {
      drainingUntil = Number(url.searchParams.get("until")) || 0;
      return new Response(null, { status: 204 });
    }
    if (url.pathname === "/refuse") {
      const until = Number(url.searchParams.get("until"));
      if (until > Date.now()) {
        refused.set(revision, { until, message: url.searchParams.get("message") ?? "" });
      } else refused.delete(revision);
      return new Response(null, { status: 204 });
    }
    return new Response("not found", { status: 404 });
  },
};
