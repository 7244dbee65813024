/** Run the real `skiff` CLI as a child process: the same entry point (bin/skiff.js, the bundle) users run. */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { inNetns } from "./netns.ts";

export const CLI = fileURLToPath(new URL("../../bin/skiff.js", import.meta.url));
/** The example worker the CLI tests deploy with `--source`. */
export const HELLO_WORKER = fileURLToPath(
  new URL("../../examples/workers/hello.ts", import.meta.url),
);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string; netns?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [command, argv] = inNetns(options.netns, [process.execPath, CLI, ...args]);
    const child = spawn(command, argv, {
      env: { ...process.env, SKIFF_CONFIG_FILE: "/nonexistent/skiff-cli.json", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

export interface ServerProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first output line matching. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Collects a child's stdout+stderr and resolves waits for a pattern in it. */
export function watchOutput(
  child: ChildProcess,
  options: { name?: string; defaultTimeoutMs: number },
): { output(): string; waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray> } {
  const label = options.name ? `${options.name}: ` : "";
  let out = "";
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (d: Buffer) => {
    out += d;
    for (const w of [...waiters]) {
      const m = out.match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  return {
    output: () => out,
    waitFor(pattern, timeoutMs = options.defaultTimeoutMs) {
      const m = out.match(pattern);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${label}timed out waiting for ${pattern}; output:\n${out}`)),
          timeoutMs,
        );
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`${label}exited (${code}) before ${pattern}; output:\n${out}`));
        });
        waiters.push({
          pattern,
          resolve: (x) => {
            clearTimeout(timer);
            resolve(x);
          },
        });
      });
    },
  };
}

export function startCliServer(args: string[], env: Record<string, string> = {}): ServerProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, SKIFF_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const watched = watchOutput(child, { defaultTimeoutMs: 15_000 });
  return {
    child,
    ...watched,
    async kill(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      await exited;
    },
  };
}
