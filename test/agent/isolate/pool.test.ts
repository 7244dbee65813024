import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GATEWAY_AUTH_HEADER,
  ISOLATE_ERROR_HEADER,
  REVISION_HEADER,
  WorkerdPool,
} from "../../../agent/isolate/index.ts";
import { ConflictError, ValidationError } from "../../../src/errors.ts";
import { metricValue } from "../../support/metrics.ts";
import { countingServer, keyOnSlot, send } from "./support.ts";

// A loaded 2-core machine can pause workerd for a while: this file is not about
// stalls (stall.test.ts is), so keep the watchdog from firing on scheduling noise.
const pool = new WorkerdPool({
  processes: 2,
  watchdog: { stallMs: 3_000 },
  metrics: new Registry(),
});

beforeAll(async () => {
  await pool.start();
  // The namespace's processes start with its first revision.
  await pool.register("default/first-00001", {
    code: "export default { fetch() { return new Response('1'); } };",
  });
});

afterAll(async () => {
  await pool.stop();
});

const echoEnv = `export default {
  fetch(request, env) {
    return Response.json({
      greeting: env.GREETING,
      target: env.TARGET,
      sawRevisionHeader: request.headers.has("${REVISION_HEADER}"),
      path: new URL(request.url).pathname,
    });
  },
};`;

describe("WorkerdPool serving", () => {
  it("answers a request with the revision's env values as bindings", async () => {
    await pool.register("default/env-00001", {
      code: echoEnv,
      env: { GREETING: "hello", TARGET: "world" },
    });
    const answer = await send(pool, "default/env-00001", { path: "/some/path" });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({
      greeting: "hello",
      target: "world",
      sawRevisionHeader: false,
      path: "/some/path",
    });
  });

  it("passes method, query and body through to the worker", async () => {
    await pool.register("default/echo-00001", {
      code: `export default { async fetch(request) {
        const url = new URL(request.url);
        return new Response(request.method + " " + url.search + " " + (await request.text()));
      } };`,
    });
    const ep = pool.endpointFor("default/echo-00001");
    const res = await fetch(`http://${ep.host}:${ep.port}/p?x=1`, {
      method: "POST",
      headers: { [ep.header.name]: ep.header.value, [GATEWAY_AUTH_HEADER]: pool.gatewaySecret },
      body: "payload",
    });
    expect(await res.text()).toBe("POST ?x=1 payload");
  });

  it("serves two revisions of the same pool independently", async () => {
    const code = (name: string) =>
      `export default { fetch(req, env) { return new Response("${name}:" + env.V); } };`;
    // Same process on purpose: isolation must not depend on sharding.
    const a = keyOnSlot(pool, "default/indep-a", 0);
    const b = keyOnSlot(pool, "default/indep-b", 0);
    await pool.register(a, { code: code("a"), env: { V: "1" } });
    await pool.register(b, { code: code("b"), env: { V: "2" } });
    const [ra, rb, ra2] = await Promise.all([send(pool, a), send(pool, b), send(pool, a)]);
    expect([ra.body, rb.body, ra2.body]).toEqual(["a:1", "b:2", "a:1"]);
  });

  it("keeps a revision's global state to its own isolate", async () => {
    const counter = `let n = 0; export default { fetch() { n++; return new Response(String(n)); } };`;
    const a = keyOnSlot(pool, "default/count-a", 1);
    const b = keyOnSlot(pool, "default/count-b", 1);
    await pool.register(a, { code: counter });
    await pool.register(b, { code: counter });
    await send(pool, a);
    await send(pool, a);
    expect((await send(pool, a)).body).toBe("3");
    expect((await send(pool, b)).body).toBe("1");
  });

  it("answers 404 with an error kind for a revision that is not registered", async () => {
    const answer = await send(pool, "default/never-registered");
    expect(answer.status).toBe(404);
    expect(answer.headers[ISOLATE_ERROR_HEADER]).toBe("unknown-revision");
    expect(answer.body).toContain("default/never-registered");
  });

  it("stops answering a revision after unregister", async () => {
    await pool.register("default/gone-00001", {
      code: `export default { fetch() { return new Response("here"); } };`,
    });
    expect((await send(pool, "default/gone-00001")).body).toBe("here");
    expect(pool.unregister("default/gone-00001")).toBe(true);
    // forget() travels to the process over its control socket.
    await expect
      .poll(async () => (await send(pool, "default/gone-00001")).status, { timeout: 5_000 })
      .toBe(404);
  });
});

describe("WorkerdPool isolation", () => {
  const fetcher = (url: string) => `export default {
    async fetch() {
      try {
        const r = await fetch(${JSON.stringify(url)});
        return new Response("reached: " + r.status);
      } catch (err) {
        return new Response("blocked: " + err.message);
      }
    },
  };`;

  it("blocks fetch() to a loopback server for network none (globalOutbound null)", async () => {
    const target = await countingServer();
    try {
      await pool.register("default/offline-00001", { code: fetcher(target.url), network: "none" });
      const answer = await send(pool, "default/offline-00001");
      expect(answer.status).toBe(200);
      expect(answer.body).toMatch(/^blocked: .*not permitted to access the internet/);
      expect(target.hits()).toBe(0);
      // The server is reachable from here: only the worker was kept out.
      await fetch(target.url).then((r) => r.text());
      expect(target.hits()).toBe(1);
    } finally {
      await target.close();
    }
  });

  it("keeps loopback out of reach for network internet too (public addresses only)", async () => {
    const target = await countingServer();
    try {
      await pool.register("default/online-00001", {
        code: fetcher(target.url),
        network: "internet",
      });
      const answer = await send(pool, "default/online-00001");
      expect(answer.body).toMatch(/^blocked: /);
      expect(target.hits()).toBe(0);
    } finally {
      await target.close();
    }
  });

  it("gives a worker no host filesystem, even with nodejs_compat", async () => {
    await pool.register("default/fs-00001", {
      code: `import fs from "node:fs";
        export default { fetch() {
          try { return new Response("read: " + fs.readFileSync("/etc/hostname", "utf8")); }
          catch (err) { return new Response("denied: " + err.message); }
        } };`,
      compatibilityDate: "2025-10-01",
      compatibilityFlags: ["nodejs_compat"],
    });
    const answer = await send(pool, "default/fs-00001");
    expect(answer.body).toMatch(/^denied: /);
  });

  it("turns a throwing worker into a 500 with a short message and keeps serving others", async () => {
    const bad = keyOnSlot(pool, "default/throws", 0);
    const good = keyOnSlot(pool, "default/fine", 0);
    await pool.register(bad, {
      code: `export default { fetch() { throw new Error("boom at line 1"); } };`,
    });
    await pool.register(good, {
      code: `export default { fetch() { return new Response("fine"); } };`,
    });
    const pidBefore = pool.stats().find((s) => s.slot === "default/0")?.pid;
    const answer = await send(pool, bad);
    expect(answer.status).toBe(500);
    expect(answer.headers[ISOLATE_ERROR_HEADER]).toBe("worker-exception");
    expect(answer.body.trim()).toBe("worker error: boom at line 1");
    expect((await send(pool, good)).body).toBe("fine");
    expect(pool.stats().find((s) => s.slot === "default/0")?.pid).toBe(pidBefore);
  });

  it("answers 500 for a worker that does not compile", async () => {
    await pool.register("default/syntax-00001", {
      code: `export default { fetch() { return new Response("x" } };`,
    });
    const answer = await send(pool, "default/syntax-00001");
    expect(answer.status).toBe(500);
    expect(answer.body).toContain("SyntaxError");
  });

  it("does not let a worker forge the router's error header", async () => {
    await pool.register("default/forger-00001", {
      code: `export default { fetch() { return new Response("ok", { headers: { "${ISOLATE_ERROR_HEADER}": "unknown-revision" } }); } };`,
    });
    const answer = await send(pool, "default/forger-00001");
    expect(answer.body).toBe("ok");
    expect(answer.headers[ISOLATE_ERROR_HEADER]).toBeUndefined();
  });
});

describe("WorkerdPool registry and sharding", () => {
  it("refuses different code under a revision key already used, even after unregister", async () => {
    await pool.register("default/immutable-00001", {
      code: "export default { fetch() { return new Response('1'); } };",
    });
    // Same code again is fine (idempotent).
    await pool.register("default/immutable-00001", {
      code: "export default { fetch() { return new Response('1'); } };",
    });
    await expect(
      pool.register("default/immutable-00001", {
        code: "export default { fetch() { return new Response('2'); } };",
      }),
    ).rejects.toThrow(ConflictError);
    pool.unregister("default/immutable-00001");
    await expect(
      pool.register("default/immutable-00001", {
        code: "export default { fetch() { return new Response('1'); } };",
        env: { CHANGED: "yes" },
      }),
    ).rejects.toThrow(ConflictError);
  });

  it("names the offending field when a registration is invalid", async () => {
    let error: unknown;
    try {
      await pool.register("default/invalid-00001", {
        code: "export default {}",
        env: { "bad name": "x" },
        compatibilityDate: "June 2025",
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const fields = (error as ValidationError).causes.map((c) => c.field).sort();
    expect(fields).toEqual(["compatibilityDate", "env.bad name"]);
  });

  it("rejects a revision key that cannot travel in a header", () => {
    expect(() => pool.endpointFor("has space")).toThrow(ValidationError);
  });

  it("maps a revision to the same process every time and spreads revisions over processes", () => {
    const slots = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const key = `default/spread-${i}`;
      const first = pool.endpointFor(key);
      expect(pool.endpointFor(key)).toEqual(first);
      expect(first.header).toEqual({ name: REVISION_HEADER, value: key });
      expect(first.host).toBe("127.0.0.1");
      slots.add(first.slot);
    }
    expect(slots).toEqual(new Set(["default/0", "default/1"]));
  });

  it("counts cold starts in the metrics registry", async () => {
    const registry = pool.options.metrics!;
    const coldStarts = () => metricValue(registry, "skiff_isolate_cold_starts_total");
    const before = await coldStarts();
    await pool.register("default/metric-00001", {
      code: `export default { fetch() { return new Response("m"); } };`,
    });
    await send(pool, "default/metric-00001");
    await send(pool, "default/metric-00001");
    expect(await coldStarts()).toBe(before + 1);
  });
});

describe("WorkerdPool gateway secret", () => {
  const echoHeaders = `export default { fetch(request) { return Response.json([...request.headers.keys()]); } };`;

  it("refuses a request without the gateway secret (or with a wrong one) with 403, counts it, and never lets the worker see the secret", async () => {
    await pool.register("default/secret-00001", { code: echoHeaders });
    const registry = pool.options.metrics!;
    const count = () => metricValue(registry, "skiff_agent_isolate_forbidden_total");
    const before = await count();
    const none = await send(pool, "default/secret-00001", { auth: null });
    const wrong = await send(pool, "default/secret-00001", { auth: "f".repeat(48) });
    const truncated = await send(pool, "default/secret-00001", {
      auth: pool.gatewaySecret.slice(0, -1),
    });
    for (const answer of [none, wrong, truncated]) {
      expect(answer.status).toBe(403);
      expect(answer.headers[ISOLATE_ERROR_HEADER]).toBe("forbidden");
      expect(answer.body).toMatch(/only answer requests from a Skiff gateway/);
    }
    // Counted from the router's stdout line: wait for it to arrive.
    await expect.poll(count, { timeout: 5_000 }).toBe(before + 3);
    const ok = await send(pool, "default/secret-00001");
    expect(ok.status).toBe(200);
    const seen = JSON.parse(ok.body) as string[];
    expect(seen).not.toContain(GATEWAY_AUTH_HEADER);
    expect(seen).not.toContain(REVISION_HEADER);
  });
});

describe("WorkerdPool namespaces", () => {
  it("gives each namespace processes of its own and never serves another namespace's revision", async () => {
    await pool.register("ns-one/rev-00001", {
      code: `export default { fetch() { return new Response("one"); } };`,
    });
    await pool.register("ns-two/rev-00001", {
      code: `export default { fetch() { return new Response("two"); } };`,
    });
    const one = pool.endpointFor("ns-one/rev-00001");
    const two = pool.endpointFor("ns-two/rev-00001");
    expect(one.port).not.toBe(two.port);
    const pids = (ns: string) =>
      new Set(
        pool
          .stats()
          .filter((s) => s.namespace === ns)
          .map((s) => s.pid),
      );
    expect([...pids("ns-one")].some((pid) => pids("ns-two").has(pid))).toBe(false);
    expect((await send(pool, "ns-one/rev-00001")).body).toBe("one");
    // A forged revision header for ns-two sent to ns-one's process, with the right secret.
    const res = await fetch(`http://${one.host}:${one.port}/`, {
      headers: { [REVISION_HEADER]: "ns-two/rev-00001", [GATEWAY_AUTH_HEADER]: pool.gatewaySecret },
    });
    expect(res.status).toBe(404);
    expect(await res.text()).toContain("not served by this process");
  });

  it("loads a revision without running it and reports a top-level throw with its message and position", async () => {
    await pool.register("default/toplevel-00001", {
      code: `const config = null;\nconst port = config.port;\nexport default { fetch() { return new Response("never"); } };`,
    });
    const result = await pool.load("default/toplevel-00001");
    expect(result.ok).toBe(false);
    expect(result.kind).toBe("module-error");
    expect(result.message).toContain("Cannot read properties of null");
    expect(result.position).toBe("worker.js:2:21");
    await pool.register("default/loads-00001", {
      code: `let calls = 0; export default { fetch() { calls++; return new Response(String(calls)); } };`,
    });
    expect(await pool.load("default/loads-00001")).toMatchObject({ ok: true, kind: "loaded" });
    // Loading did not call the handler.
    expect((await send(pool, "default/loads-00001")).body).toBe("1");
  });

  it("resumes a standby while a cold load of the same process waits on its module's I/O", async () => {
    // Skiff's bundles run the user's top level inside the load's probe
    // request (__skiffInit), where it may await: here for 3 s.
    const slow = keyOnSlot(pool, "default/slow-init", 0);
    const standby = keyOnSlot(pool, "default/standby", 0);
    await pool.register(standby, {
      code: `export default { fetch() { return new Response("back"); } };`,
    });
    expect(await pool.load(standby)).toMatchObject({ ok: true, kind: "loaded" });
    await pool.park(standby);
    await pool.register(slow, {
      code: `let ready = false;
export async function __skiffInit() { await new Promise((r) => setTimeout(r, 3000)); ready = true; }
export default { fetch() { return new Response(String(ready)); } };`,
    });
    const slowLoad = pool.load(slow).then((r) => `slow ${r.kind}`);
    // Sent after it to the same process: not queued behind it.
    const resume = pool.load(standby).then((r) => `standby ${r.kind}`);
    expect(await Promise.race([slowLoad, resume])).toBe("standby resumed");
    expect((await send(pool, standby)).body).toBe("back");
    expect(await slowLoad).toBe("slow loaded");
    expect((await send(pool, slow)).body).toBe("true");
  });
});
