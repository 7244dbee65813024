/**
 * The child processes and temporary folders of a gateway-capacity run: each
 * one started here is tracked, so `cleanUp` leaves nothing behind whatever
 * part failed. With two cores or more, a process can be pinned to one
 * (taskset), so that the load generator and the proxy under test never share.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PINNED = cpus().length >= 2;

const children = new Set<ChildProcess>();
const dirs: string[] = [];

/** `cmd args` run on `core` (when pinning is possible and a core is given). */
function pinned(core: number | undefined, cmd: string, args: string[]): [string, string[]] {
  return PINNED && core !== undefined
    ? ["taskset", ["-c", String(core), cmd, ...args]]
    : [cmd, args];
}

/** Starts a tracked child; stdout is piped (see `firstLine`), stderr shown. */
export function startProcess(
  cmd: string,
  args: string[],
  core?: number,
  env?: NodeJS.ProcessEnv,
): ChildProcess {
  const [c, a] = pinned(core, cmd, args);
  const child = spawn(c, a, {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
    env: env ?? process.env,
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** A temporary folder, removed by `cleanUp`. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** The first line a child prints (how the started servers announce their URL). */
export async function firstLine(child: ChildProcess): Promise<string> {
  let buf = "";
  const out = child.stdout as NonNullable<ChildProcess["stdout"]>;
  while (!buf.includes("\n")) {
    const [chunk] = (await Promise.race([
      once(out, "data"),
      once(child, "exit").then(() => {
        throw new Error(`process ${child.spawnargs.join(" ")} exited before answering`);
      }),
    ])) as [Buffer];
    buf += String(chunk);
  }
  out.resume();
  return buf.split("\n")[0] as string;
}

/** SIGTERM, then SIGKILL after 5 s. */
export async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(5_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

/** Stops every child still running and removes the temporary folders. */
export async function cleanUp(): Promise<void> {
  for (const c of [...children]) await stop(c);
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
}
