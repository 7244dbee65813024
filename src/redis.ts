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
 *
 * Passwords never leave this module in text meant for people: use
 * `redactRedisUrl` for anything logged, printed or put in an error.
 */
import { Redis, type RedisOptions } from "ioredis";
import { SkiffError, UnavailableError } from "./errors.ts";
import type { Logger } from "./logging.ts";
import { connectMemoryRedis, isMemoryRedisUrl } from "./redis-memory.ts";

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

/** The URL with its password (and any `password=` query item) replaced by `***`. */
export function redactRedisUrl(url: string): string {
  if (isMemoryRedisUrl(url)) return url;
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
  let password = "";
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {}
  let out = text.split(url).join(redactRedisUrl(url));
  if (password.length >= 4) out = out.split(password).join(MASK);
  return out;
}

/** Check a URL's shape once, at the boundary, with a message saying how to fix it. */
function checkUrl(url: string): void {
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
  const redis = new Redis(url, {
    maxRetriesPerRequest: 2,
    retryStrategy: reconnectDelay,
    ...rest,
  });
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
