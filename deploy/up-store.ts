/**
 * The store of `skiff up` when no Redis is named: a private redis-server with
 * AOF and a generated password under the state folder (reused when a killed
 * run left it running), else the in-process Redis saved to a file.
 */
import { randomBytes } from "node:crypto";
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { delimiter, join, resolve } from "node:path";
import { UnavailableError } from "../src/errors.ts";
import { connectRedis, redactRedisUrl } from "../src/redis/connect.ts";
import { openMemoryRedisFile } from "../src/redis/memory-file.ts";
import { type RedisServer, startRedisServer } from "../src/redis/server.ts";

/** Whether an executable of this name is on PATH. */
function onPath(name: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

export interface LocalStore {
  url: string;
  stop: () => Promise<void>;
  /** The start-up line saying which store is in use. */
  describe: string;
}

/**
 * The store when no Redis is named: reuse the redis-server this state folder
 * already runs (a previous `skiff up` that was killed), or start one with AOF
 * so that nothing is lost on restart; without redis-server on PATH, the
 * in-process Redis kept in a snapshot file under the state folder.
 */
export async function localStore(
  stateDir: string,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): Promise<LocalStore> {
  const dir = join(stateDir, "redis");
  const portFile = join(stateDir, "redis.port");
  let previous: number | undefined;
  try {
    previous = Number(readFileSync(portFile, "utf8").trim()) || undefined;
  } catch {}
  const password = redisPassword(stateDir);
  const withAuth = (port: number) => `redis://:${password.value}@127.0.0.1:${port}`;
  const auth = `password in ${password.file}`;
  // One that answers without a password is not ours as it must be (see stopOpenRedisOfDir).
  if (previous) await stopOpenRedisOfDir(previous, dir);
  // Still open: someone else's server took the port (a wrong password would not be refused there).
  const taken = previous !== undefined && (await answers(`redis://127.0.0.1:${previous}`));
  if (previous && !taken && (await answers(withAuth(previous)))) {
    // Left running by a run that was killed: ours again, stopped with us.
    const url = withAuth(previous);
    return {
      url,
      stop: () => shutdownRedis(url),
      describe: `running redis-server at ${redactRedisUrl(url)} (data in ${dir}, append-only, ${auth})`,
    };
  }
  if (!onPath("redis-server", env)) {
    const file = join(stateDir, "store.json");
    const mem = await openMemoryRedisFile({
      file,
      onError: (err) => log(`Store:    saving ${file} failed (retrying): ${err.message}`),
    });
    const kept = mem.restored ? `, ${mem.restored} keys restored` : "";
    return {
      url: mem.url,
      stop: () => mem.stop(),
      describe: `in-process (redis-server is not on PATH), saved to ${file}${kept}; install redis-server (or pass --redis-url) for a store that separate processes can share`,
    };
  }
  mkdirSync(dir, { recursive: true });
  let server: RedisServer;
  try {
    server = await startRedisServer({
      appendonly: true,
      dir,
      detached: true,
      password: password.value,
      ...(previous ? { port: previous } : {}),
    });
  } catch (err) {
    if (!previous) {
      throw new UnavailableError(
        `cannot start a local redis-server: ${(err as Error).message}; pass --redis-url to use another Redis`,
        { cause: err },
      );
    }
    // The port of the last run is taken by something else: any free one will do.
    server = await startRedisServer({
      appendonly: true,
      dir,
      detached: true,
      password: password.value,
    });
  }
  writeFileSync(portFile, `${server.port}\n`);
  return {
    url: server.url,
    stop: () => server.stop(),
    describe: `started redis-server at ${redactRedisUrl(server.url)} (data in ${dir}, append-only, ${auth})`,
  };
}

/**
 * The password of the redis-server `skiff up` runs: generated on first start,
 * kept in `{stateDir}/redis.password` (mode 0600, folder 0700) and reused, so a
 * restart finds its data and a running server again. Containers and other
 * users of the host cannot read it.
 */
export function redisPassword(stateDir: string): { value: string; file: string } {
  const file = join(stateDir, "redis.password");
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  let value = "";
  try {
    value = readFileSync(file, "utf8").trim();
  } catch {}
  if (!value) {
    value = randomBytes(24).toString("hex");
    // wx: two starts racing on a fresh folder must not end up with two passwords.
    try {
      writeFileSync(file, `${value}\n`, { mode: 0o600, flag: "wx" });
    } catch {
      value = readFileSync(file, "utf8").trim();
    }
  }
  // A copy restored from a backup may have come back readable by others.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return { value, file };
}

/**
 * A redis-server without a password on the last run's port that serves this
 * state folder's data was started by a Skiff from before passwords: stop it
 * (SHUTDOWN syncs the AOF), so that ours starts on the same data with a
 * password. A server of anyone else (another data folder) is left alone.
 */
async function stopOpenRedisOfDir(port: number, dir: string): Promise<void> {
  const url = `redis://127.0.0.1:${port}`;
  if (!(await answers(url))) return;
  const r = connectRedis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on("error", () => {});
  try {
    await r.connect();
    const [, served] = (await r.config("GET", "dir")) as [string, string];
    if (served !== resolve(dir)) return;
  } catch {
    return;
  } finally {
    r.disconnect();
  }
  await shutdownRedis(url);
}

/** Stop a redis-server an earlier run started: SHUTDOWN syncs the AOF first. */
async function shutdownRedis(url: string): Promise<void> {
  const r = connectRedis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on("error", () => {});
  try {
    await r.connect();
    await r.shutdown();
  } catch {
    // SHUTDOWN closes the connection instead of replying.
  } finally {
    r.disconnect();
  }
}

async function answers(url: string): Promise<boolean> {
  const probe = connectRedis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on("error", () => {}); // a refused connection is the answer we look for
  try {
    await probe.connect();
    await probe.ping();
    return true;
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
