/**
 * Run a private redis-server: the embedded store of `skiff up` (with AOF under
 * its state folder) and the throwaway server of the test suite.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface StartRedisOptions {
  /** Keep an append-only file in `dir` so a restart loses nothing. */
  appendonly?: boolean;
  /** Data folder; a temporary one (removed on stop) when absent. */
  dir?: string;
  port?: number;
  /** redis-server binary; default from PATH. */
  binary?: string;
  /**
   * Own process group, so a Ctrl-C meant for the parent does not stop Redis
   * under it while it shuts down (`skiff up` stops it last).
   */
  detached?: boolean;
}

export async function startRedisServer(options: StartRedisOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "skiff-redis-")));
  const child = spawn(
    options.binary ?? "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      options.appendonly ? "yes" : "no",
      "--protected-mode",
      "yes",
    ],
    { stdio: ["ignore", "ignore", "pipe"], detached: options.detached ?? false },
  );
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += String(d);
  });
  const spawnError = new Promise<never>((_, reject) => {
    child.once("error", (err) =>
      reject(
        new Error(
          `cannot start redis-server (is it installed? apt-get install redis-server): ${err.message}`,
        ),
      ),
    );
  });
  const url = `redis://127.0.0.1:${port}`;
  const ready = (async () => {
    for (let i = 0; i < 200; i++) {
      const probe = new Redis(url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on("error", () => {}); // refused while starting: expected, retried below
      try {
        await probe.connect();
        await probe.ping();
        return;
      } catch {
        await sleep(25);
      } finally {
        probe.disconnect();
      }
      if (child.exitCode !== null) throw new Error(`redis-server exited: ${stderr}`);
    }
    throw new Error(`redis-server did not answer on ${url}: ${stderr}`);
  })();
  await Promise.race([ready, spawnError]);
  return {
    url,
    port,
    dir,
    process: child,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, sleep(3000)]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
