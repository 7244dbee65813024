/**
 * Compatibility proof: the example workers run unchanged under real Deno
 * (`deno serve` / `deno run`, from the `deno` npm package) and under Skiff
 * (compiled by the model, run as isolates in workerd), with the same answers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GATEWAY_AUTH_HEADER, WorkerdPool } from "../../agent/isolate/index.ts";
import { compileWorker } from "../../src/model/index.ts";
import { freePort } from "../support/redis-server.ts";
import { waitFor } from "../support/wait.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = join(root, "node_modules/.bin/deno");
const denoDir = mkdtempSync(join(tmpdir(), "skiff-deno-"));

interface Example {
  file: string;
  /** How Deno runs it: `serve` for export default { fetch }, `run` for Deno.serve(). */
  mode: "serve" | "run";
  requests: { path: string; method?: string; body?: string }[];
}

const examples: Example[] = [
  {
    file: "examples/workers/hello.ts",
    mode: "serve",
    requests: [{ path: "/" }, { path: "/json" }],
  },
  {
    file: "examples/workers/deno-serve.js",
    mode: "run",
    requests: [
      { path: "/" },
      { path: "/?name=Ada" },
      { path: "/echo", method: "POST", body: "12345" },
    ],
  },
];

const ENV = { TARGET: "Compat" };
let pool: WorkerdPool;
const children: ChildProcess[] = [];

beforeAll(async () => {
  pool = new WorkerdPool({ processes: 1, host: "127.0.0.1" });
  await pool.start();
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await pool?.stop();
});

async function startDeno(example: Example): Promise<string> {
  const port = await freePort();
  const file = join(root, example.file);
  const args =
    example.mode === "serve"
      ? ["serve", "--quiet", "--allow-env", "--host", "127.0.0.1", "--port", String(port), file]
      : ["run", "--quiet", "--allow-net=127.0.0.1", "--allow-env", file];
  const child = spawn(deno, args, {
    env: {
      ...process.env,
      ...ENV,
      HOST: "127.0.0.1",
      PORT: String(port),
      DENO_DIR: denoDir,
      DENO_NO_UPDATE_CHECK: "1",
      NO_COLOR: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const state = await waitFor(
    `deno answering on ${url}`,
    async () => {
      if (child.exitCode !== null) return "exited";
      await fetch(url);
      return "up";
    },
    10_000,
    50,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${log}`);
  });
  if (state === "exited") throw new Error(`deno exited: ${log}`);
  return url;
}

type Answer = { status: number; body: string; type: string | null; servedBy: string | null };

async function ask(
  url: string,
  r: Example["requests"][number],
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(url + r.path, {
    method: r.method ?? "GET",
    body: r.body ?? null,
    headers,
  });
  return {
    status: res.status,
    body: await res.text(),
    type: res.headers.get("content-type"),
    servedBy: res.headers.get("x-served-by"),
  };
}

describe("examples run unchanged under Deno and under Skiff", () => {
  for (const example of examples) {
    it(`${example.file} gives the same answers`, async () => {
      const source = readFileSync(join(root, example.file), "utf8");
      const compiled = await compileWorker({
        source,
        language: example.file.endsWith(".ts") ? "typescript" : "javascript",
      });
      const key = `compat/${example.mode}`;
      await pool.register(key, { code: compiled.code, env: ENV });
      const ep = pool.endpointFor(key);
      const denoUrl = await startDeno(example);
      for (const r of example.requests) {
        const underDeno = await ask(denoUrl, r);
        const underSkiff = await ask(`http://${ep.host}:${ep.port}`, r, {
          [ep.header.name]: ep.header.value,
          [GATEWAY_AUTH_HEADER]: pool.gatewaySecret,
        });
        expect(underDeno.status).toBe(200);
        expect(underSkiff, `${r.method ?? "GET"} ${r.path}`).toEqual(underDeno);
      }
    });
  }
});
