/**
 * A workerd with a static one-worker config (no router, no loader): the floor
 * the benchmarks measure the isolate pool against. `prepare` writes the
 * config once; `spawn` starts a process on an ephemeral port of 127.0.0.1.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface StaticWorkerd {
  /** Start one process; resolves once it listens. */
  spawn(): Promise<{ child: ChildProcess; port: number }>;
  /** Remove the config folder (kill the processes first). */
  remove(): Promise<void>;
}

export async function prepareStaticWorkerd(code: string): Promise<StaticWorkerd> {
  const dir = await mkdtemp(join(tmpdir(), "skiff-bench-static-workerd-"));
  const binary = createRequire(import.meta.url).resolve("workerd/bin/workerd");
  await writeFile(join(dir, "worker.js"), code);
  await writeFile(
    join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = (modules = [(name = "worker.js", esModule = embed "worker.js")], compatibilityDate = "2025-09-01")) ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ],
);
`,
  );
  return {
    async spawn() {
      const child = spawn(binary, ["serve", join(dir, "config.capnp"), "--control-fd", "3"], {
        stdio: ["ignore", "ignore", "inherit", "pipe"],
        cwd: dir,
        env: {},
      });
      const [chunk] = (await once(child.stdio[3] as NodeJS.ReadableStream, "data")) as [Buffer];
      const port = (JSON.parse(chunk.toString().split("\n")[0] ?? "{}") as { port: number }).port;
      return { child, port };
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
