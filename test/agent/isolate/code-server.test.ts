/** The code server only gives a namespace's processes that namespace's bundles. */
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CodeServer, startCodeServer } from "../../../agent/isolate/code-server.ts";
import { CodeRegistry } from "../../../agent/isolate/registry.ts";

const registry = new CodeRegistry();
const loads: string[] = [];
let server: CodeServer;

beforeAll(async () => {
  const code = (n: string) => ({
    code: `export default { fetch() { return new Response("${n}"); } };`,
    env: {},
    network: "none" as const,
    compatibilityFlags: [],
  });
  registry.register("alpha/rev-00001", code("a"));
  registry.register("beta/rev-00001", code("b"));
  const tokens = new Map([
    ["alpha-token-0123456789", "alpha"],
    ["beta-token-0123456789", "beta"],
  ]);
  server = await startCodeServer({
    registry,
    namespaceOf: (t) => tokens.get(t),
    onLoad: (_p, revision) => loads.push(revision),
  });
});
afterAll(() => server.close());

async function get(revision: string, token?: string) {
  const res = await request(
    `http://127.0.0.1:${server.port}/code/${encodeURIComponent(revision)}`,
    {
      headers: token ? { "x-skiff-token": token } : {},
    },
  );
  return { status: res.statusCode, body: await res.body.text() };
}

describe("code server", () => {
  it("answers a namespace's own token with its bundle", async () => {
    const answer = await get("alpha/rev-00001", "alpha-token-0123456789");
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).modules["worker.js"]).toContain('"a"');
  });

  it("refuses anyone without a token it issued (403), and another namespace's bundle reads as unknown (404)", async () => {
    expect((await get("alpha/rev-00001")).status).toBe(403);
    expect((await get("alpha/rev-00001", "guess-token-0123456789")).status).toBe(403);
    const cross = await get("alpha/rev-00001", "beta-token-0123456789");
    expect(cross.status).toBe(404);
    expect(cross.body).toBe("");
    expect(loads).toEqual(["alpha/rev-00001"]);
  });
});
