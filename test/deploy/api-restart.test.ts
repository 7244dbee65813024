/** `skiff api` as a real process: restarting it on the same Redis loses nothing. */
import { afterEach, describe, expect, it } from "vitest";
import { BASE, serviceBody } from "../support/api.ts";
import { type ServerProcess, startCliServer } from "../support/cli.ts";
import { redisUrl, uniquePrefix } from "../support/redis.ts";
import { freePort } from "../support/redis-server.ts";

let servers: ServerProcess[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.kill("SIGKILL")));
  servers = [];
});

async function startApi(port: number, prefix: string) {
  const s = startCliServer(["api", "--redis-url", redisUrl(), "--port", String(port), "--no-tls"], {
    SKIFF_REDIS_PREFIX: prefix,
    SKIFF_TOKEN: "",
  });
  servers.push(s);
  await s.waitFor(/listening on (http:\/\/\S+)/);
  return s;
}

async function call(port: number, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? null : JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  return { status: res.status, json: (await res.json()) as any };
}

describe("skiff api process", () => {
  it("prints a generated token once, and after a SIGKILL restart it still works and everything is there", async () => {
    const prefix = uniquePrefix("restart");
    const port = await freePort();
    const first = await startApi(port, prefix);
    const token = (await first.waitFor(/Generated API token[^:]*: (\S+)/))[1]!;
    const ns = `${BASE}/namespaces/default/services`;
    expect((await call(port, token, "POST", ns, serviceBody("keep"))).status).toBe(201);
    const put = await call(
      port,
      token,
      "PUT",
      `${ns}/keep`,
      serviceBody("keep", { env: { TARGET: "two" } }),
    );
    expect(put.status).toBe(200);
    const before = await call(port, token, "GET", `${ns}/keep`);
    await first.kill("SIGKILL");

    const second = await startApi(port, prefix);
    expect(second.output()).not.toMatch(/Generated API token/);
    const after = await call(port, token, "GET", `${ns}/keep`);
    expect(after.status).toBe(200);
    expect(after.json).toEqual(before.json);
    const revs = await call(port, token, "GET", `${BASE}/namespaces/default/revisions`);
    expect(
      revs.json.items.map((r: { metadata: { name: string } }) => r.metadata.name).sort(),
    ).toEqual(["keep-00001", "keep-00002"]);
    expect((await call(port, "wrong-token-wrong-token", "GET", ns)).status).toBe(401);
  });
});
