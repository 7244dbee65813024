/**
 * workerd dies with the agent that started it: a SIGKILLed agent on a host
 * where no agent runs again must not leave its isolates serving (issue 11's
 * orphans). A real agent-like process (a WorkerdPool in a child Node process)
 * is SIGKILLed; its workerd processes are in their own process group, so only
 * the parent-death signal can reach them.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { killWorkerdOf } from "../../support/workerd.ts";
import { alive } from "./support.ts";

const POOL = join(fileURLToPath(import.meta.url), "../../../../agent/isolate/index.ts");

const script = (stateDir: string) => `
const { WorkerdPool } = await import(${JSON.stringify(POOL)});
const pool = new WorkerdPool({ processes: 2, stateDir: ${JSON.stringify(stateDir)}, watchdog: { stallMs: 3000 } });
await pool.start();
await pool.register("default/orphan-00001", { code: 'export default { fetch() { return new Response("x"); } };' });
await pool.register("other/orphan-00001", { code: 'export default { fetch() { return new Response("y"); } };' });
console.log(JSON.stringify(pool.pids()));
setInterval(() => {}, 1000);
`;

let stateDir: string | undefined;
afterEach(async () => {
  // What the killed agent left: its workerd (when the test failed), cgroups, state folder.
  if (stateDir) {
    await killWorkerdOf(stateDir);
    await rm(stateDir, { recursive: true, force: true });
  }
  stateDir = undefined;
});

describe("workerd and its agent", () => {
  it("ends every workerd process of an agent that was SIGKILLed", async () => {
    stateDir = await mkdtemp(join(tmpdir(), "skiff-parent-death-"));
    const agent = spawn(process.execPath, ["--input-type=module", "-e", script(stateDir)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    agent.stdout.setEncoding("utf8");
    agent.stdout.on("data", (chunk: string) => {
      out += chunk;
    });
    await expect.poll(() => out.includes("]"), { timeout: 30_000 }).toBe(true);
    const pids = JSON.parse(out.trim().split("\n").at(-1)!) as number[];
    expect(pids.length).toBe(4);
    for (const pid of pids) expect(alive(pid)).toBe(true);

    const exited = once(agent, "exit");
    agent.kill("SIGKILL");
    await exited;
    for (const pid of pids) {
      await expect.poll(() => alive(pid), { timeout: 5_000 }).toBe(false);
    }
  }, 60_000);
});
