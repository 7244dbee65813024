/**
 * The web console (/console) on a real API over the run's Redis: fleet
 * records and gateway counters are written in their documented formats, as
 * agents (src/fleet) and gateways (RevisionCounters) write them.
 *
 * Plain HTTP for the security properties (CSP, cookie flags, CSRF refusal,
 * namespaced tokens, escaping), then headless Chromium (playwright-core with
 * Debian's chromium) for what a user does: log in, see a service, split its
 * traffic and see the page reflect it, a view token that cannot change it,
 * tenant markup shown as text. Screenshots go to .cache/console-screenshots/.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Redis } from "ioredis";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRevisionStatus } from "../../scaler/controllers/revision-status.ts";
import { Fleet } from "../../src/fleet/fleet.ts";
import type { AgentRecord } from "../../src/fleet/types.ts";
import { createRedisStore } from "../../src/store/index.ts";
import { gatewayKeys, type RevisionCounters } from "../../src/traffic/keys.ts";
import { createToken, serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { connect, redisUrl } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

const CHROMIUM = "/usr/bin/chromium";
const SHOTS = join(import.meta.dirname, "..", "..", ".cache", "console-screenshots");
const TOKENS = "/apis/skiff.dev/v1/tokens";
const XSS = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`;
/** What the agent reports for broken-00001: the image name is the tenant's text. */
const PULL_FAILURE = 'image "<b>nope</b>:1" not found in any registry';

let api: TestApi;
let redis: Redis;
let fleet: Fleet;
const secrets: Record<string, string> = {};

async function makeToken(name: string, role: "view" | "edit", namespaces: string[]) {
  secrets[name] = await createToken(api, name, role, namespaces);
}

async function specTraffic(name: string, namespace = "default") {
  const r = await api.call("GET", api.ns("services", name, namespace));
  return r.json.spec.traffic;
}

function agentRecord(id: string): AgentRecord {
  return {
    id,
    address: "127.0.0.2",
    runtimes: ["container"],
    capacity: { cpuMillis: 2000, memoryBytes: 2 ** 30, maxInstances: 10 },
    labels: {},
    startedAt: new Date().toISOString(),
    heartbeatAt: Date.now(),
    version: "0.1.0",
  };
}

/** One gateway's counters, published the way gateway/counters.ts does. */
async function publishCounters(gw: string, ref: string, windowRequests: number) {
  const k = gatewayKeys(api.prefix);
  const c: RevisionCounters = {
    v: 1,
    at: Date.now(),
    since: Date.now() - 60_000,
    periodMs: 1000,
    inflight: 1,
    queued: 0,
    avgInflight: 1,
    requests: 1000,
    completed: 999,
    windowRequests,
    concurrencyMs: 1000,
    instances: {},
  };
  await redis
    .multi()
    .hset(k.metrics(gw), ref, JSON.stringify(c))
    .pexpire(k.metrics(gw), 60_000)
    .zadd(k.gateways, Date.now(), gw)
    .exec();
}

beforeAll(async () => {
  api = await startTestApi();
  redis = connect();
  fleet = new Fleet({ redis, prefix: api.prefix });
  // hello: two revisions; evil: tenant markup in annotations; other-ns: another tenant.
  expect((await api.call("POST", api.ns("services"), serviceBody("hello"))).status).toBe(201);
  const v2 = await api.call(
    "PUT",
    api.ns("services", "hello"),
    serviceBody("hello", { env: { TARGET: "v2" } }),
  );
  expect(v2.json.status.latestCreatedRevisionName).toBe("hello-00002");
  const evil = serviceBody("evil");
  (evil.metadata as Record<string, unknown>).annotations = { "example.com/note": XSS };
  expect((await api.call("POST", api.ns("services"), evil)).status).toBe(201);
  expect(
    (await api.call("POST", api.ns("services", undefined, "team-b"), serviceBody("secret"))).status,
  ).toBe(201);
  await makeToken("viewer", "view", ["default"]);
  await makeToken("editor", "edit", ["default"]);
  await makeToken("team-b", "edit", ["team-b"]);
  expect((await api.call("POST", api.ns("services"), serviceBody("broken"))).status).toBe(201);
  // A host with a ready instance of hello and of team-b's service, and one of
  // broken that cannot pull its image, reported as an agent reports them.
  await fleet.registerAgent(agentRecord("host-a"), 120_000);
  const ready = { phase: "ready" as const, readyAt: Date.now() };
  for (const [id, ns, rev, state] of [
    ["hello-00002-aaaaaa", "default", "hello-00002", ready],
    ["secret-00001-bbbbbb", "team-b", "secret-00001", ready],
    [
      "broken-00001-cccccc",
      "default",
      "broken-00001",
      {
        phase: "backoff" as const,
        reason: "ImageNotFound",
        message: PULL_FAILURE,
        lastFailure: {
          condition: "ResourcesAvailable" as const,
          reason: "ImageNotFound",
          message: PULL_FAILURE,
          at: Date.now(),
        },
      },
    ],
  ] as const) {
    await fleet.writeInstanceStatus(
      {
        id,
        agentId: "host-a",
        namespace: ns,
        revision: rev,
        runtime: "container",
        restarts: 0,
        since: Date.now(),
        ...state,
      },
      120_000,
    );
  }
  // The scaler's revision-status controller turns the reports into Revision
  // conditions; stopped once they are written, so nothing changes under the pages.
  const store = await createRedisStore({ url: redisUrl(), prefix: api.prefix });
  const status = await startRevisionStatus({
    store,
    fleet,
    domain: "localhost",
    scheme: "http",
    holdFailureMs: 1_000,
    resyncIntervalMs: 60_000,
  });
  const readyOf = async (rev: string) =>
    (await api.call("GET", api.ns("revisions", rev))).json.status.conditions?.find(
      (c: { type: string }) => c.type === "Ready",
    )?.status;
  await waitFor("hello-00002 Ready", async () => (await readyOf("hello-00002")) === "True");
  await waitFor("broken-00001 failing", async () => (await readyOf("broken-00001")) === "False");
  await status.stop();
  await store.close();
});

afterAll(async () => {
  await fleet?.close();
  redis?.disconnect();
  await api?.close();
});

// ---- plain HTTP -------------------------------------------------------------

function url(path: string) {
  return new URL(path, api.url).toString();
}

function origin() {
  return new URL(api.url).origin;
}

/** Log in over HTTP; returns the session cookie ("name=value"). */
async function login(token: string, headers: Record<string, string> = {}) {
  const res = await fetch(url("/console/login"), {
    method: "POST",
    redirect: "manual",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      origin: origin(),
      ...headers,
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return res;
}

async function session(token: string): Promise<string> {
  const res = await login(token);
  expect(res.status).toBe(303);
  return res.headers.get("set-cookie")!.split(";")[0]!;
}

async function page(cookie: string, path = "/console") {
  const res = await fetch(url(path), { headers: { cookie }, redirect: "manual" });
  return { res, text: await res.text() };
}

async function postTraffic(cookie: string, fields: Record<string, string>, originHeader?: string) {
  const res = await fetch(url("/console/services/default/hello/traffic"), {
    method: "POST",
    redirect: "manual",
    headers: {
      cookie,
      "content-type": "application/x-www-form-urlencoded",
      ...(originHeader === undefined ? {} : { origin: originHeader }),
    },
    body: new URLSearchParams(fields).toString(),
  });
  return { res, text: await res.text() };
}

describe("console over HTTP", () => {
  it("without a session /console redirects to the login page, which has a strict CSP", async () => {
    const res = await fetch(url("/console"), { redirect: "manual" });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/console/login");
    const login = await fetch(url("/console/login"));
    expect(login.status).toBe(200);
    const csp = login.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).not.toContain("unsafe-eval");
    expect(login.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await login.text();
    // No inline script or style for the CSP to have to allow.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|\sstyle=/);
  });

  it("logging in sets an HttpOnly SameSite=Strict cookie on /console, Secure behind TLS", async () => {
    const res = await login(api.token);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/console");
    const cookie = res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^skiff_console=/);
    expect(cookie).toMatch(/;\s*HttpOnly/i);
    expect(cookie).toMatch(/;\s*SameSite=Strict/i);
    expect(cookie).toMatch(/;\s*Path=\/console/i);
    expect(cookie).not.toMatch(/;\s*Secure/i);
    // Behind a TLS proxy: Secure, and a __Host- cookie that sibling hosts cannot plant.
    const tls = await login(api.token, { "x-forwarded-proto": "https" });
    const tlsCookie = tls.headers.get("set-cookie") ?? "";
    expect(tlsCookie).toMatch(/^__Host-skiff_console=/);
    expect(tlsCookie).toMatch(/;\s*Secure/i);
    expect(tlsCookie).toMatch(/;\s*Path=\/(;|$)/i);
    expect(tlsCookie).toMatch(/;\s*HttpOnly/i);
    expect(tlsCookie).not.toMatch(/Domain=/i);
    const overTls = await fetch(url("/console"), {
      redirect: "manual",
      headers: { cookie: tlsCookie.split(";")[0]!, "x-forwarded-proto": "https" },
    });
    expect(overTls.status).toBe(200);
    // The plain-HTTP cookie name is not read over TLS (nor the reverse).
    const mixed = await fetch(url("/console"), {
      redirect: "manual",
      headers: { cookie: `skiff_console=${api.token}`, "x-forwarded-proto": "https" },
    });
    expect(mixed.status).toBe(303);
    const { res: home, text } = await page(cookie.split(";")[0]!);
    expect(home.status).toBe(200);
    expect(home.headers.get("cache-control")).toBe("no-store");
    expect(text).toContain("http://hello.default.localhost");
  });

  it("a wrong token is refused with no cookie", async () => {
    const res = await login("skf_not-a-real-token");
    expect(res.status).toBe(401);
    expect(res.headers.get("set-cookie")).toBeNull();
  });

  it("cross-site POSTs are refused (CSRF): login, traffic, logout", async () => {
    const evilLogin = await login(api.token, { origin: "http://evil.example" });
    expect(evilLogin.status).toBe(403);
    expect(evilLogin.headers.get("set-cookie")).toBeNull();
    const cookie = await session(secrets.editor!);
    const before = await specTraffic("hello");
    const forged = await postTraffic(cookie, { pin: "hello-00001" }, "http://evil.example");
    expect(forged.res.status).toBe(403);
    // A tenant's service is the same site (SameSite lets the cookie through), not the same origin.
    const sibling = await postTraffic(
      cookie,
      { pin: "hello-00001" },
      "http://evil.default.localhost",
    );
    expect(sibling.res.status).toBe(403);
    // A request with neither Origin nor Sec-Fetch-Site proves nothing: refused too.
    const blind = await postTraffic(cookie, { pin: "hello-00001" });
    expect(blind.res.status).toBe(403);
    expect(await specTraffic("hello")).toEqual(before);
    const logout = await fetch(url("/console/logout"), {
      method: "POST",
      redirect: "manual",
      headers: { cookie, origin: "http://evil.example" },
    });
    expect(logout.status).toBe(403);
  });

  it("a view token reads but cannot change traffic", async () => {
    const cookie = await session(secrets.viewer!);
    const { text } = await page(cookie);
    expect(text).toContain("hello-00002");
    expect(text).not.toContain("Apply traffic");
    const before = await specTraffic("hello");
    const r = await postTraffic(cookie, { pin: "hello-00001" }, origin());
    expect(r.res.status).toBe(403);
    expect(r.text).toContain("only reads");
    expect(await specTraffic("hello")).toEqual(before);
  });

  it("an edit token's change goes through the API's validation (sum not 100 is refused)", async () => {
    const cookie = await session(secrets.editor!);
    const before = await specTraffic("hello");
    const bad = await postTraffic(
      cookie,
      { "percent.hello-00001": "30", "percent.hello-00002": "30" },
      origin(),
    );
    expect(bad.res.status).toBe(422);
    expect(bad.text).toContain("100");
    expect(await specTraffic("hello")).toEqual(before);
    const stale = await postTraffic(cookie, { resourceVersion: "1", pin: "hello-00001" }, origin());
    expect(stale.res.status).toBe(409);
    expect(await specTraffic("hello")).toEqual(before);
  });

  it("a namespaced token sees only its namespace: services, instances, hosts without addresses", async () => {
    const cookie = await session(secrets["team-b"]!);
    const { text } = await page(cookie);
    expect(text).toContain("secret-00001");
    expect(text).not.toContain("default/hello");
    expect(text).not.toContain("hello-0000");
    expect(text).toContain("host-a");
    expect(text).toContain("secret-00001-bbbbbb");
    expect(text).not.toContain("127.0.0.2");
    const admin = await page(await session(api.token));
    expect(admin.text).toContain("127.0.0.2");
    expect(admin.text).toContain("hello-00002-aaaaaa");
    await publishCounters("gw-http", "team-b/secret-00001", 7);
    await publishCounters("gw-http", "default/hello-00002", 3);
    const rates = await (await fetch(url("/console/rates"), { headers: { cookie } })).json();
    expect(rates).toEqual({ "team-b/secret": 7 });
  });

  it("a failing revision shows its condition's message, escaped", async () => {
    const { text } = await page(await session(secrets.viewer!));
    const row = /<tr data-revision="broken-00001">[\s\S]*?<\/tr>/.exec(text)?.[0] ?? "";
    expect(row).toContain("Failing");
    expect(row).toContain("image &quot;&lt;b&gt;nope&lt;/b&gt;:1&quot; not found in any registry");
    expect(text).not.toContain("<b>nope</b>");
  });

  it("tenant markup is escaped, never markup", async () => {
    const { text } = await page(await session(secrets.editor!));
    expect(text).not.toContain("<script>window.__xss");
    expect(text).not.toContain('<img src=x onerror="window');
    expect(text).toContain("&lt;script&gt;window.__xss=1&lt;/script&gt;");
  });

  it("revoking the token ends its console session at once", async () => {
    await makeToken("short-lived", "view", ["default"]);
    const cookie = await session(secrets["short-lived"]!);
    expect((await page(cookie)).res.status).toBe(200);
    expect((await api.call("DELETE", `${TOKENS}/short-lived`)).status).toBe(200);
    const after = await page(cookie);
    expect(after.res.status).toBe(303);
    expect(after.res.headers.get("location")).toBe("/console/login");
    const rates = await fetch(url("/console/rates"), { headers: { cookie } });
    expect(rates.status).toBe(401);
  });

  it("logout clears the cookie", async () => {
    const cookie = await session(secrets.viewer!);
    const res = await fetch(url("/console/logout"), {
      method: "POST",
      redirect: "manual",
      headers: { cookie, origin: origin() },
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("set-cookie")).toMatch(/^skiff_console=;.*Max-Age=0/i);
  });
});

// ---- headless Chromium ------------------------------------------------------

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `console browser test skipped: ${CHROMIUM} is missing (apt-get install chromium; scripts/test.sh installs it)`,
  );
}

describe.skipIf(!haveChromium)("console in headless Chromium", () => {
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  });
  afterAll(async () => {
    await browser?.close();
  });
  const pageErrors: string[] = [];
  afterEach(() => {
    expect(pageErrors.splice(0)).toEqual([]);
  });

  async function loggedIn(token: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const p = await context.newPage();
    p.on("dialog", (d) => void d.dismiss());
    // A CSP violation or a script error shows up as a console error (HTTP
    // statuses do too: the favicon's 404, the refused POST's 403; not counted).
    p.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
        pageErrors.push(m.text());
    });
    p.on("pageerror", (e) => pageErrors.push(e.message));
    await p.goto(url("/console"));
    expect(p.url()).toMatch(/\/console\/login$/);
    await p.fill("#token", token);
    await p.click("button[type=submit]");
    await p.waitForURL(/\/console$/);
    return p;
  }

  function hello(p: Page) {
    return p.locator('article.service[data-service="default/hello"]');
  }

  it("an edit token logs in, sees hello, splits its traffic 50/50 and sees it", async () => {
    const p = await loggedIn(secrets.editor!);
    const card = hello(p);
    await card.waitFor();
    expect(await card.locator(".url a").textContent()).toBe("http://hello.default.localhost");
    expect(await card.locator("tr[data-revision]").count()).toBe(3); // two revisions + latest
    expect(await p.locator('tr[data-revision="broken-00001"] .failure').textContent()).toBe(
      PULL_FAILURE,
    );
    await p.screenshot({ path: join(SHOTS, "01-services.png"), fullPage: true });

    await card.locator('input[name="percent.hello-00001"]').fill("50");
    await card.locator('input[name="tag.hello-00001"]').fill("stable");
    await card.locator('input[name="percent.hello-00002"]').fill("50");
    await card.locator('input[name="percent.@latest"]').fill("");
    await card.locator("button.apply").click();
    await p.waitForURL(/\/console$/);
    const pct = (rev: string) => hello(p).locator(`tr[data-revision="${rev}"] .pct`).textContent();
    expect(await pct("hello-00001")).toBe("50%");
    expect(await pct("hello-00002")).toBe("50%");
    expect(await hello(p).locator('tr[data-revision="hello-00001"] .tags').textContent()).toContain(
      "stable",
    );
    const stored = (await specTraffic("hello")) as { revisionName: string }[];
    expect(stored.sort((a, b) => a.revisionName.localeCompare(b.revisionName))).toEqual([
      { revisionName: "hello-00001", tag: "stable", percent: 50, latestRevision: false },
      { revisionName: "hello-00002", percent: 50, latestRevision: false },
    ]);
    await p.screenshot({ path: join(SHOTS, "02-split.png"), fullPage: true });

    // Pin: all traffic to hello-00002, the tag kept at 0%.
    await hello(p).locator('tr[data-revision="hello-00002"] button.pin').click();
    await p.waitForURL(/\/console$/);
    expect(await pct("hello-00002")).toBe("100%");
    expect(await pct("hello-00001")).toBe("0%");
    await p.context().close();
  });

  it("shows hosts with instances and a live request-rate sparkline", async () => {
    const p = await loggedIn(api.token);
    const host = p.locator('article.host[data-host="host-a"]');
    await host.waitFor();
    expect(await host.locator('tr[data-instance="hello-00002-aaaaaa"]').textContent()).toContain(
      "ready",
    );
    const rps = hello(p).locator(".rps");
    // Each poll reads the gateways' latest counters: keep publishing until the page shows them.
    await waitFor("the sparkline's rate", async () => {
      await publishCounters("gw-browser", "default/hello-00002", 12);
      return (await rps.textContent())?.startsWith("12.0");
    });
    await waitFor("a drawn sparkline", async () => {
      const points = await hello(p).locator("svg.spark polyline").getAttribute("points");
      return points?.includes(",");
    });
    await p.screenshot({ path: join(SHOTS, "03-hosts-and-rates.png"), fullPage: true });
    await p.context().close();
  });

  it("a view token sees no traffic controls, and a forged POST from the page is refused", async () => {
    const p = await loggedIn(secrets.viewer!);
    await hello(p).waitFor();
    expect(await p.locator("button.apply").count()).toBe(0);
    expect(await p.locator("button.pin").count()).toBe(0);
    const before = await specTraffic("hello");
    const status = await p.evaluate(async () => {
      const res = await fetch("/console/services/default/hello/traffic", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "pin=hello-00001",
      });
      return res.status;
    });
    expect(status).toBe(403);
    expect(await specTraffic("hello")).toEqual(before);
    await p.screenshot({ path: join(SHOTS, "04-view-token.png"), fullPage: true });
    await p.context().close();
  });

  it("tenant markup in an annotation renders as text and runs nothing", async () => {
    const p = await loggedIn(secrets.editor!);
    const card = p.locator('article.service[data-service="default/evil"]');
    await card.locator("details.annotations summary").click();
    // The note's value (creator and lastModifier, set by the API, are listed too).
    const note = card.locator('dt:text-is("example.com/note") + dd');
    expect(await note.textContent()).toBe(XSS);
    expect(await card.locator("dd script, dd img").count()).toBe(0);
    // Runs in the page: globalThis is its window (the test's tsconfig has no DOM types).
    expect(
      await p.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss),
    ).toBeUndefined();
    await p.screenshot({ path: join(SHOTS, "05-escaped-markup.png"), fullPage: true });
    await p.context().close();
  });
});
