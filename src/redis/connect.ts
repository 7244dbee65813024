/**
 * The one place that creates Redis connections. Every component (gateway,
 * agent, scaler, API, store, fleet) and `skiff up` open theirs here, so that
 * credentials, TLS, connection names and the retry policy are the same
 * everywhere:
 *
 *   redis://HOST:PORT[/DB]              no credentials (a private server only)
 *   redis://:PASSWORD@HOST:PORT         `requirepass` / the `default` ACL user
 *   redis://USER:PASSWORD@HOST:PORT     an ACL user (deploy/redis/users.acl)
 *   rediss://...                        the same over TLS (system CAs; a private
 *                                       CA via NODE_EXTRA_CA_CERTS)
 *   memory://NAME                       the in-process store of one process
 *   redis+sentinel://[USER:PASSWORD@]H1:P1,H2:P2/MASTER[?sentinelUsername=U&sentinelPassword=P&db=N]
 *                                       Redis Sentinel: the sentinels are asked for
 *                                       MASTER's address (and again after a
 *                                       failover); USER:PASSWORD are the master's
 *                                       (and its replicas'), sentinelUsername /
 *                                       sentinelPassword the sentinels' own
 *                                       (`sentinelUrl` builds this from
 *                                       --redis-sentinels / --redis-master)
 *
 * Passwords never leave this module in text meant for people: use
 * `redactRedisUrl` for anything logged, printed or put in an error.
 */
import { Redis, type RedisOptions } from "ioredis";
import { SkiffError, UnavailableError } from "../errors.ts";
import type { Logger } from "../logging.ts";
import { connectMemoryRedis, isMemoryRedisUrl } from "./memory.ts";

/** QUIT lets pending replies arrive; a connection that is not up is just dropped. */
export async function quitRedis(r: Redis): Promise<void> {
  if (r.status !== "ready") return r.disconnect();
  try {
    await r.quit();
  } catch {
    r.disconnect();
  }
}

/**
 * Reconnect after 100 ms, 200 ms, ... up to 1 s, with jitter so that a fleet
 * does not reconnect in lockstep after a Redis restart. Never gives up: a
 * component outlives a Redis outage.
 */
export function reconnectDelay(times: number): number {
  return Math.min(times * 100, 1000) + Math.floor(Math.random() * 100);
}

/** The longest wait between two reconnect attempts (`reconnectDelay`). */
export const MAX_RECONNECT_DELAY_MS = 1_100;

export interface ConnectRedisOptions extends RedisOptions {
  /**
   * Warn on connection errors through this logger (the URL in the message is
   * redacted). Without it the caller attaches its own `error` listener.
   */
  logger?: Logger;
}

const MASK = "***";

const SENTINEL_SCHEME = "redis+sentinel://";

export function isSentinelUrl(url: string): boolean {
  return url.startsWith(SENTINEL_SCHEME);
}

export interface SentinelSettings {
  sentinels: { host: string; port: number }[];
  /** The master group name the sentinels monitor. */
  name: string;
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  db?: number;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const SENTINEL_HELP =
  "use redis+sentinel://[USER:PASSWORD@]HOST:PORT,HOST:PORT/MASTER (or --redis-sentinels HOST:PORT,... with --redis-master NAME)";

/** "h1:26379,h2:26379" -> addresses, or a SkiffError saying which item is wrong. */
export function parseSentinelList(text: string): { host: string; port: number }[] {
  const items = text
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  if (items.length === 0) throw new SkiffError("INVALID", `no sentinel given: ${SENTINEL_HELP}`);
  return items.map((item) => {
    const m = HOST_PORT.exec(item);
    const port = Number(m?.[2]);
    if (!m || port < 1 || port > 65535) {
      throw new SkiffError(
        "INVALID",
        `sentinel "${item}" is not HOST:PORT (e.g. 127.0.0.1:26379): ${SENTINEL_HELP}`,
      );
    }
    return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
  });
}

/** Take a redis+sentinel:// URL apart; a SkiffError says what is wrong (secrets redacted). */
export function parseSentinelUrl(url: string): SentinelSettings {
  const rest = url.slice(SENTINEL_SCHEME.length);
  const q = rest.indexOf("?");
  const main = q < 0 ? rest : rest.slice(0, q);
  const query = new URLSearchParams(q < 0 ? "" : rest.slice(q + 1));
  const slash = main.indexOf("/");
  const authority = slash < 0 ? main : main.slice(0, slash);
  const name = decodeURIComponent(slash < 0 ? "" : main.slice(slash + 1));
  const at = authority.lastIndexOf("@");
  const userinfo = at < 0 ? "" : authority.slice(0, at);
  const hosts = at < 0 ? authority : authority.slice(at + 1);
  if (!name || name.includes("/")) {
    throw new SkiffError(
      "INVALID",
      `Redis URL ${redactRedisUrl(url)} names no master: ${SENTINEL_HELP}`,
    );
  }
  const out: SentinelSettings = { sentinels: parseSentinelList(hosts), name };
  if (userinfo) {
    const colon = userinfo.indexOf(":");
    const user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    const pass = colon < 0 ? "" : decodeURIComponent(userinfo.slice(colon + 1));
    if (user) out.username = user;
    if (pass) out.password = pass;
  }
  const su = query.get("sentinelUsername");
  const sp = query.get("sentinelPassword");
  const db = query.get("db");
  if (su) out.sentinelUsername = su;
  if (sp) out.sentinelPassword = sp;
  if (db !== null) {
    if (!/^\d+$/.test(db)) {
      throw new SkiffError("INVALID", `Redis URL ${redactRedisUrl(url)}: db must be a number`);
    }
    out.db = Number(db);
  }
  return out;
}

/**
 * The redis+sentinel:// URL of `--redis-sentinels` + `--redis-master` (the
 * master's user and password, and the sentinels', given apart).
 */
export function sentinelUrl(options: {
  sentinels: string;
  master: string;
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
}): string {
  const list = parseSentinelList(options.sentinels);
  const hosts = list
    .map((s) => `${s.host.includes(":") ? `[${s.host}]` : s.host}:${s.port}`)
    .join(",");
  const user = options.username ? encodeURIComponent(options.username) : "";
  const auth = options.password ? `${user}:${encodeURIComponent(options.password)}@` : "";
  const query = new URLSearchParams();
  if (options.sentinelUsername) query.set("sentinelUsername", options.sentinelUsername);
  if (options.sentinelPassword) query.set("sentinelPassword", options.sentinelPassword);
  const qs = query.toString();
  return `${SENTINEL_SCHEME}${auth}${hosts}/${encodeURIComponent(options.master)}${qs ? `?${qs}` : ""}`;
}

/** The URL with its password (and any `password=` query item) replaced by `***`. */
export function redactRedisUrl(url: string): string {
  if (isMemoryRedisUrl(url)) return url;
  if (isSentinelUrl(url)) {
    const q = url.indexOf("?");
    let main = q < 0 ? url : url.slice(0, q);
    const at = main.lastIndexOf("@");
    if (at >= 0) {
      const info = main.slice(SENTINEL_SCHEME.length, at);
      const colon = info.indexOf(":");
      if (colon >= 0) main = `${SENTINEL_SCHEME}${info.slice(0, colon)}:${MASK}${main.slice(at)}`;
    }
    if (q < 0) return main;
    const query = new URLSearchParams(url.slice(q + 1));
    for (const key of [...query.keys()]) if (/pass/i.test(key)) query.set(key, MASK);
    return `${main}?${query.toString()}`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL we can take apart: keep only what cannot hold a secret.
    const at = url.lastIndexOf("@");
    return at < 0 ? url : `${url.slice(0, url.indexOf("//") + 2)}${MASK}@${url.slice(at + 1)}`;
  }
  if (parsed.password) parsed.password = MASK;
  for (const key of [...parsed.searchParams.keys()]) {
    if (/pass/i.test(key)) parsed.searchParams.set(key, MASK);
  }
  return parsed.toString();
}

/** Replace every occurrence of the URL's password in a text (e.g. an error message). */
export function redactSecrets(text: string, url: string): string {
  const passwords: string[] = [];
  try {
    if (isSentinelUrl(url)) {
      const s = parseSentinelUrl(url);
      passwords.push(s.password ?? "", s.sentinelPassword ?? "");
    } else passwords.push(decodeURIComponent(new URL(url).password));
  } catch {}
  let out = text.split(url).join(redactRedisUrl(url));
  for (const p of passwords) if (p.length >= 4) out = out.split(p).join(MASK);
  return out;
}

/** Check a URL's shape once, at the boundary, with a message saying how to fix it. */
function checkUrl(url: string): void {
  if (isSentinelUrl(url)) {
    parseSentinelUrl(url);
    return;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SkiffError(
      "INVALID",
      `Redis URL ${redactRedisUrl(url)} is not a URL: use redis://[USER:PASSWORD@]HOST:PORT, rediss://... for TLS, or memory://NAME`,
    );
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new SkiffError(
      "INVALID",
      `Redis URL ${redactRedisUrl(url)}: the scheme must be redis:// or rediss:// (TLS), or memory://NAME`,
    );
  }
  if (!parsed.hostname) {
    throw new SkiffError(
      "INVALID",
      `Redis URL ${redactRedisUrl(url)} names no host: use redis://[USER:PASSWORD@]HOST:PORT`,
    );
  }
  if (parsed.username && !parsed.password) {
    throw new SkiffError(
      "INVALID",
      `Redis URL ${redactRedisUrl(url)} names user "${decodeURIComponent(parsed.username)}" without a password: use redis://USER:PASSWORD@HOST:PORT (percent-encode ":" "@" "/" in the password)`,
    );
  }
}

/**
 * Open a connection. Defaults: a command fails after two reconnect attempts
 * while Redis is away (callers answer 503 or retry on their next period),
 * reconnects never stop (`reconnectDelay`). Options given win over these.
 */
export function connectRedis(url: string, options: ConnectRedisOptions = {}): Redis {
  const { logger, ...rest } = options;
  if (isMemoryRedisUrl(url)) return connectMemoryRedis(url, rest);
  checkUrl(url);
  const defaults = { maxRetriesPerRequest: 2, retryStrategy: reconnectDelay };
  const redis = isSentinelUrl(url)
    ? new Redis({
        ...parseSentinelUrl(url),
        // Ask the sentinels again at the same pace as a reconnect; a failover
        // shows as a lost connection, and the next one goes to the new master.
        sentinelRetryStrategy: reconnectDelay,
        ...defaults,
        ...rest,
      })
    : new Redis(url, { ...defaults, ...rest });
  if (logger) {
    const safe = redactRedisUrl(url);
    redis.on("error", (err: Error) =>
      logger.warn(
        {
          err: { message: redactSecrets(err.message, url), code: (err as { code?: string }).code },
        },
        `redis connection error (${safe}${options.connectionName ? `, ${options.connectionName}` : ""})`,
      ),
    );
  }
  return redis;
}

/**
 * Connect and wait until the connection is ready; a refused connection or
 * bad credentials fail with a SkiffError naming the (redacted) URL.
 */
export async function openRedis(url: string, options: ConnectRedisOptions = {}): Promise<Redis> {
  const redis = connectRedis(url, { ...options, lazyConnect: true });
  // The handshake's own error (e.g. WRONGPASS) says more than "Connection is closed".
  let last: Error | undefined;
  const onError = (err: Error) => {
    last = err;
    // Wrong credentials do not get better by reconnecting: fail now.
    if (AUTH_ERROR.test(err.message)) redis.disconnect();
  };
  redis.on("error", onError);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw redisUnreachable(url, last ?? err);
  } finally {
    redis.off("error", onError);
  }
  return redis;
}

const AUTH_ERROR = /NOAUTH|WRONGPASS|NOPERM|invalid password|invalid username/i;

/** The error for a Redis that cannot be reached or refuses our credentials. */
export function redisUnreachable(url: string, err: unknown): UnavailableError {
  const message = redactSecrets((err as Error)?.message ?? String(err), url);
  const auth = AUTH_ERROR.test(message) ? " (check the user and password in the URL)" : "";
  return new UnavailableError(`cannot reach Redis at ${redactRedisUrl(url)}: ${message}${auth}`);
}
