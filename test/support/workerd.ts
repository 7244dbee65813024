/**
 * workerd processes run in their own process group, so killing an agent
 * process (SIGKILL, as a crash test does) leaves them running until the next
 * agent on the same state folder reaps them. A test that kills an agent for
 * good reaps them itself, from the process table: every workerd whose config
 * lies in the agent's state folder or in the run folder it recorded there,
 * then the cgroups it recorded.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

export async function killWorkerdOf(stateDir: string): Promise<number[]> {
  const dirs = [stateDir];
  let cgroups: string[] = [];
  try {
    const left = JSON.parse(readFileSync(join(stateDir, "workerd.pids"), "utf8")) as {
      runDir?: string;
      cgroups?: string[];
    };
    if (typeof left.runDir === "string" && left.runDir !== stateDir) dirs.push(left.runDir);
    if (Array.isArray(left.cgroups)) cgroups = left.cgroups;
  } catch {
    // No pids file (never started a process, or already cleaned up).
  }
  const killed: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (!cmdline.includes("workerd")) continue;
    if (!dirs.some((d) => cmdline.includes(join(d, "workerd.capnp")))) continue;
    try {
      process.kill(Number(entry), "SIGKILL");
      killed.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  for (const d of dirs.slice(1)) rmSync(d, { recursive: true, force: true });
  // Its cgroups (namespace groups first, then the pool's) can go once their processes have.
  // Best effort (cleanup): after a second, remove what can be removed anyway.
  await waitFor(
    "the killed workerd processes gone",
    () => !killed.some((pid) => existsSync(`/proc/${pid}`)),
    1_000,
  ).catch(() => {});
  for (const dir of cgroups) {
    if (!dir.includes("/skiff/")) continue;
    try {
      rmdirSync(dir);
    } catch {
      // Busy or gone.
    }
  }
  return killed;
}
