/**
 * `skiff deploy` of the Workers project in examples/workers-project: wrangler
 * reads its wrangler.jsonc and bundles it, the CLI maps name, main, vars,
 * compatibility_date and compatibility_flags onto a worker revision, and
 * `skiff up` (in this process) serves it. A project using keys Skiff cannot
 * honour is refused with their names, before anything is built or sent.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Up } from "../../deploy/up.ts";
import { runCli } from "../support/cli.ts";
import { startTestUp } from "../support/up.ts";
import { hit } from "./support.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const PROJECT = join(ROOT, "examples", "workers-project");
const TOKEN = "wrangler-test-token-0123456789ab";
const temp = mkdtempSync(join(tmpdir(), "skiff-wrangler-test-"));
let up: Up;
let env: Record<string, string>;

beforeAll(async () => {
  up = await startTestUp({
    stateDir: join(temp, "state"),
    name: "wrangler",
    token: TOKEN,
    agent: {
      id: `wrangler-${process.pid}`,
      containers: false,
      isolateProcesses: 1,
      isolateStateDir: join(temp, "isolate"),
    },
  });
  env = { SKIFF_API_URL: up.apiUrl, SKIFF_TOKEN: TOKEN };
}, 120_000);

afterAll(async () => {
  await up?.close();
  rmSync(temp, { recursive: true, force: true });
}, 60_000);

describe("skiff deploy (a Workers project)", () => {
  it("builds the project with wrangler and serves it as a worker revision", async () => {
    const r = await runCli(["deploy", PROJECT, "--wait-timeout", "150"], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/True: \n$/); // the wait's progress
    expect(r.stdout).toContain("Service 'greeter' created in namespace 'default'");
    const answer = await hit(up.gatewayUrl, "greeter.default.localhost", "/?who=wrangler");
    expect(answer).toEqual({ status: 200, body: "Hello, wrangler! (bundled by wrangler)" });

    const rev = await fetch(
      `${up.apiUrl}/apis/serving.knative.dev/v1/namespaces/default/revisions/greeter-00001`,
      { headers: { authorization: `Bearer ${TOKEN}` } },
    ).then((res) => res.json() as Promise<{ spec: { worker: Record<string, unknown> } }>);
    expect(rev.spec.worker).toMatchObject({
      main: "index.js",
      env: [{ name: "GREETING", value: "Hello" }],
      compatibilityDate: "2025-01-01",
      compatibilityFlags: ["nodejs_compat"],
    });
  }, 240_000);

  it("names the keys Skiff cannot honour and deploys nothing", async () => {
    const dir = join(temp, "kv-project");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "index.js"), "export default { fetch() { return new Response('x') } }");
    writeFileSync(
      join(dir, "wrangler.toml"),
      [
        'name = "kv-user"',
        'main = "index.js"',
        'compatibility_date = "2025-01-01"',
        'routes = ["example.com/*"]',
        "[[kv_namespaces]]",
        'binding = "CACHE"',
        'id = "0123456789abcdef"',
      ].join("\n"),
    );
    const r = await runCli(["deploy", dir], { env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'wrangler.toml: Skiff cannot honour "routes", "kv_namespaces"; a worker revision takes name, main, vars, compatibility_date and compatibility_flags',
    );
    const svc = await fetch(
      `${up.apiUrl}/apis/serving.knative.dev/v1/namespaces/default/services/kv-user`,
      { headers: { authorization: `Bearer ${TOKEN}` } },
    );
    expect(svc.status).toBe(404);
  }, 60_000);
});
