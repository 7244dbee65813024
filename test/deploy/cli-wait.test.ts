/**
 * `skiff service create --wait` watches the Service (no polling) and returns
 * as soon as the API writes Ready; against an API without watch it polls.
 * A recording HTTP proxy in front of the real API shows what the CLI asked.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Service } from "../../src/model/types.ts";
import { createRedisStore, type RedisStore } from "../../src/store/index.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";
import { redisUrl } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

interface Proxy {
  url: string;
  seen: string[];
  close(): Promise<void>;
}

/** Forwards to the API and records each request line; withoutWatch plays an API that has none. */
async function recordingProxy(target: string, options: { withoutWatch?: boolean } = {}) {
  const seen: string[] = [];
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? "/", target);
    if (options.withoutWatch) {
      url.searchParams.delete("watch");
      url.searchParams.delete("timeoutSeconds");
    }
    const upstream = request(
      {
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: url.pathname + url.search,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  } satisfies Proxy;
}

let api: TestApi;
let store: RedisStore;
const proxies: Proxy[] = [];

/** What the scaler does when the Service's revision is ready (the test plays the scaler). */
async function markReady(name: string) {
  await store.transact(async (tx) => {
    const svc = (await tx.get("services", "default", name)) as Service;
    svc.status.observedGeneration = svc.metadata.generation;
    svc.status.conditions = [
      { type: "Ready", status: "True", lastTransitionTime: new Date().toISOString() },
    ];
    tx.put(svc);
  });
}

beforeAll(async () => {
  api = await startTestApi();
  store = await createRedisStore({ url: redisUrl(), prefix: api.prefix });
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await store?.close();
  await api?.close();
});

async function proxy(options: { withoutWatch?: boolean } = {}) {
  const p = await recordingProxy(api.url, options);
  proxies.push(p);
  return p;
}

const create = (p: Proxy, name: string) =>
  runCli(["service", "create", name, "--image", "example/w", "--wait-timeout", "60"], {
    env: { SKIFF_API_URL: p.url, SKIFF_TOKEN: api.token },
  });

const plainGets = (p: Proxy, name: string) =>
  p.seen.filter(
    (s) => s.startsWith("GET ") && s.includes(`/services/${name}`) && !/watch=/.test(s),
  );

describe("service create --wait", () => {
  it("watches the Service and returns once it is Ready, without polling", async () => {
    const p = await proxy();
    const cli = create(p, "watched");
    await waitFor("the CLI's watch", () =>
      p.seen.some((s) => /services\/watched\?watch=true/.test(s)),
    );
    await markReady("watched");
    const r = await cli;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Service 'watched' created/);
    expect(r.stderr).toMatch(/True/);
    expect(p.seen.filter((s) => /watch=true/.test(s))).toHaveLength(1);
    expect(plainGets(p, "watched")).toEqual([]);
  });

  it("says so when the Service is deleted while it waits", async () => {
    const p = await proxy();
    const cli = create(p, "doomed");
    await waitFor("the CLI's watch", () =>
      p.seen.some((s) => /services\/doomed\?watch=true/.test(s)),
    );
    expect((await api.call("DELETE", api.ns("services", "doomed"))).status).toBe(200);
    const r = await cli;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/service "doomed" was deleted while waiting/);
  });

  it("polls an API that does not stream watches", async () => {
    const p = await proxy({ withoutWatch: true });
    const cli = create(p, "polled");
    await waitFor("the CLI to poll", () => plainGets(p, "polled").length >= 2);
    await markReady("polled");
    const r = await cli;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Service 'polled' created/);
  });
});
