/**
 * A Redis outage under a running `skiff api` (a real process on a private
 * redis-server that this test stops and restarts): the API logs one
 * structured line when Redis is lost and one when it is back (no raw
 * "[ioredis] Unhandled error event", no stack per reconnect attempt), the
 * CLI fails fast with a clear message meanwhile, and everything works again
 * afterwards. Also: the CLI against an API that is not there at all, and
 * secrets read from a token file never appear in the output.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../deploy/cli/client.ts";
import { runCli, type ServerProcess, startCliServer } from "../support/cli.ts";
import { freePort, type RedisServer, startRedisServer } from "../support/redis-server.ts";
import { waitFor } from "../support/wait.ts";

const TOKEN = "outage-admin-token-0123456789abcdef";
let dir: string;
let redis: RedisServer;
let api: ServerProcess;
let apiUrl: string;
let env: Record<string, string>;
/** How long a successful `skiff service list` takes here (mostly Node start-up on a busy machine). */
let healthyMs = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "skiff-outage-"));
  await writeFile(join(dir, "token"), `${TOKEN}\n`, { mode: 0o600 });
  redis = await startRedisServer({ appendonly: true, dir: join(dir) });
  const port = await freePort();
  api = startCliServer(
    [
      "api",
      "--redis-url",
      redis.url,
      "--port",
      String(port),
      "--no-tls",
      "--token-file",
      join(dir, "token"),
    ],
    { SKIFF_LOG_LEVEL: "info", SKIFF_TOKEN: "", SKIFF_TOKEN_FILE: "" },
  );
  const m = await api.waitFor(/Skiff API listening on (\S+)/);
  apiUrl = m[1]!;
  env = { SKIFF_API_URL: apiUrl, SKIFF_TOKEN_FILE: join(dir, "token"), SKIFF_TOKEN: "" };
}, 30_000);

afterAll(async () => {
  await api?.kill();
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function timedCli(args: string[]) {
  const started = performance.now();
  const r = await runCli(args, { env });
  return { ...r, ms: performance.now() - started };
}

describe("a Redis outage under skiff api", () => {
  it("the CLI works with the token from a file", async () => {
    const r = await timedCli(["service", "list"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    healthyMs = r.ms;
  });

  it("while Redis is down: the CLI fails fast with a clear message; one log line per state change", async () => {
    const port = redis.port;
    await redis.stop();
    await api.waitFor(/redis connection lost/, 10_000);
    // Several requests during the outage, each while ioredis keeps reconnecting.
    const tries = [];
    for (let i = 0; i < 3; i++) tries.push(await timedCli(["service", "list"]));
    for (const r of tries) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /Error: the Skiff API at http:\/\/127\.0\.0\.1:\d+ is unavailable: the API cannot reach its store \(Redis\) right now; retry in a few seconds/,
      );
    }
    // The API itself answers 503 at once.
    const started = performance.now();
    const direct = await fetch(new URL("/apis/serving.knative.dev/v1/services", apiUrl), {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const directMs = performance.now() - started;
    expect(direct.status).toBe(503);
    console.log(
      `during the outage: the API answered 503 in ${directMs.toFixed(0)} ms; skiff service list failed in ${tries.map((r) => r.ms.toFixed(0)).join(", ")} ms (a healthy run took ${healthyMs.toFixed(0)} ms)`,
    );
    // Before, the CLI waited about 6 s for the API's answer; now the API answers at once.
    expect(directMs).toBeLessThan(1_500);
    const client = new ApiClient({ apiUrl, token: TOKEN, namespace: "default" });
    const t0 = performance.now();
    await expect(client.list("services")).rejects.toThrow(
      /is unavailable: the API cannot reach its store/,
    );
    expect(performance.now() - t0).toBeLessThan(1_500);
    const ready = await fetch(new URL("/readyz", apiUrl));
    expect(ready.status).toBe(503);

    redis = await startRedisServer({ appendonly: true, dir, port });
    await api.waitFor(/redis connection back/, 15_000);
    await waitFor(
      "skiff service list to work again",
      async () => (await timedCli(["service", "list"])).code === 0,
      15_000,
      200,
    );

    const out = api.output();
    expect(out).not.toMatch(/\[ioredis\] Unhandled error event/);
    expect(out.match(/redis connection lost/g)).toHaveLength(1);
    expect(out.match(/redis connection back/g)).toHaveLength(1);
    // One structured line each: JSON with a redis field (and downMs when back), no stack traces.
    const lines = out.split("\n").filter((l) => /redis connection (lost|back)/.test(l));
    expect(lines.map((l) => JSON.parse(l).redis)).toEqual(["lost", "back"]);
    expect(JSON.parse(lines[1]!).downMs).toBeGreaterThan(0);
    expect(out).not.toMatch(/ECONNREFUSED[\s\S]*at TCPConnectWrap/);
    expect(out).not.toContain(TOKEN);
  }, 60_000);

  it("an API that is not there: the CLI says so at once", async () => {
    const port = await freePort();
    const started = performance.now();
    const r = await runCli(["service", "list", "--api-url", `http://127.0.0.1:${port}`], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /cannot reach the Skiff API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    );
    // The client itself (no Node start-up in the measure) gives up at once.
    const client = new ApiClient({ apiUrl: `http://127.0.0.1:${port}`, namespace: "default" });
    const t0 = performance.now();
    await expect(client.list("services")).rejects.toThrow(/cannot reach the Skiff API/);
    const clientMs = performance.now() - t0;
    console.log(
      `API not there: skiff service list failed in ${(performance.now() - started).toFixed(0)} ms, the client call in ${clientMs.toFixed(0)} ms`,
    );
    expect(clientMs).toBeLessThan(1_500);
  });
});
