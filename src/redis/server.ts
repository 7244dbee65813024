/**
 * Run a private redis-server: the embedded store of `skiff up` (with AOF under
 * its state folder) and the throwaway server of the test suite.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { UnavailableError } from "../errors.ts";
import { connectRedis } from "./connect.ts";

export interface RedisServer {
  /** With the credentials given (`redis://[USER]:PASSWORD@...`): never print it, see redactRedisUrl. */
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
  /**
   * `requirepass`: clients must AUTH with it. Written to a config file of mode
   * 0600 in `dir`, never on the command line (where `ps` would show it).
   */
  password?: string;
  /** An ACL file (`user NAME on >PASS ~keys +cmds`); `username` + `password` are then used to probe. */
  aclFile?: string;
  /** The ACL user the returned URL (and the start-up probe) authenticate as. */
  username?: string;
}

export async function startRedisServer(options: StartRedisOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "skiff-redis-")));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Secrets go in a file only the owner reads; redis-server takes it as its config.
  const conf = join(dir, "skiff-redis.conf");
  const lines = ["# written by Skiff on every start"];
  if (options.password && !options.aclFile)
    lines.push(`requirepass "${quoteConf(options.password)}"`);
  if (options.aclFile) lines.push(`aclfile "${quoteConf(options.aclFile)}"`);
  await writeFile(conf, `${lines.join("\n")}\n`, { mode: 0o600 });
  await chmod(conf, 0o600);
  const child = spawn(
    options.binary ?? "redis-server",
    [
      conf,
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
        new UnavailableError(
          `cannot start redis-server (is it installed? apt-get install redis-server): ${err.message}`,
        ),
      ),
    );
  });
  const auth = options.password
    ? `${encodeURIComponent(options.username ?? "")}:${encodeURIComponent(options.password)}@`
    : "";
  const url = `redis://${auth}127.0.0.1:${port}`;
  const ready = (async () => {
    for (let i = 0; i < 200; i++) {
      const probe = connectRedis(url, {
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
      if (child.exitCode !== null)
        throw new UnavailableError(
          `redis-server exited at start (its output follows; a port in use or a bad data directory are the usual causes): ${stderr}`,
        );
    }
    throw new UnavailableError(
      `redis-server did not answer on 127.0.0.1:${port} within 5 s of starting (is the host overloaded?): ${stderr}`,
    );
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

/** A value inside double quotes in redis.conf. */
function quoteConf(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
}
