/**
 * `skiff gateway --workers 2` as an operator runs it: two worker processes
 * serve one port, the admin port sums their metrics, and SIGTERM to the
 * command stops every worker after the requests in flight finish.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startCliServer } from "../support/cli.ts";
import { redisUrl, uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";
import { type Backend, hit, host, processExists, startBackend, TestScaler } from "./support.ts";

const prefix = uniquePrefix("gw-cli-workers");
const scaler = new TestScaler(prefix);
let backend: Backend;
let cli: ServerProcess | undefined;

/** Child pids of a process (Linux /proc). */
async function childrenOf(pid: number): Promise<number[]> {
  const { readFile } = await import("node:fs/promises");
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8");
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

beforeAll(async () => {
  backend = await startBackend("hello", (req, res) => {
    req.resume();
    // "/slow" is a slow instance, for the drain under test.
    setTimeout(() => res.end("hello\n"), req.url?.includes("slow") ? 800 : 0);
  });
  await scaler.agent();
  await scaler.route("default", "hello", [{ revision: "hello-00001", percent: 100 }]);
  await scaler.endpoint("default", "hello-00001", backend);
});

afterAll(async () => {
  await cli?.kill("SIGKILL");
  await backend?.close();
  await scaler.close();
});

describe("skiff gateway --workers", () => {
  it("serves through two workers and stops them all on SIGTERM once requests in flight are done", async () => {
    cli = startCliServer([
      "gateway",
      "--redis-url",
      redisUrl(),
      "--redis-prefix",
      prefix,
      "--port",
      "0",
      "--admin-port",
      "0",
      "--id",
      "cli-gw",
      "--workers",
      "2",
    ]);
    const [, url, adminUrl] = (await cli.waitFor(
      /Skiff gateway cli-gw serving on (\S+) .*2 workers.*health and metrics at (\S+)/,
      30_000,
    )) as string[];
    const workers = await waitFor("two worker processes", async () => {
      const pids = await childrenOf(cli?.child.pid as number);
      return pids.length === 2 ? pids : undefined;
    });
    expect((await hit(url as string, host("hello"))).status).toBe(200);
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^skiff_gateway_workers 2$/m);

    const slow = hit(url as string, host("hello"), { path: "/slow" });
    await waitFor("the slow request at the backend", () => backend.inflight > 0);
    const exited = new Promise<number | null>((r) => cli?.child.once("exit", (code) => r(code)));
    cli.child.kill("SIGTERM");
    expect(await slow).toMatchObject({ status: 200, body: "hello\n" });
    expect(await exited).toBe(0);
    for (const pid of workers) expect(processExists(pid)).toBe(false);
  });

  it("refuses a bad --workers value with the flag's name", async () => {
    const bad = startCliServer(["gateway", "--redis-url", redisUrl(), "--workers", "0"]);
    await bad.waitFor(/--workers 0: expected a whole number from 1 to 1024/);
    await bad.kill("SIGKILL");
  });
});
