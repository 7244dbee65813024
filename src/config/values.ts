/**
 * The value types settings share (ports, durations, Redis URLs, prefixes,
 * domains, replica ids), defined once for the configuration and the
 * components' option schemas alike.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";

export const MiB = 1024 * 1024;

export const portSchema = z.number().int().min(0).max(65535);

/** Whole milliseconds within bounds. */
export const msSchema = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.number().int().min(min).max(max);

/**
 * A Redis URL with no default (for "url or an existing connection" options).
 * `memory://NAME` is the in-process Redis of a single-process `skiff up`.
 */
export const redisUrlTextSchema = z
  .string()
  .regex(
    /^(rediss?:\/\/|redis\+sentinel:\/\/|memory:\/\/)/,
    'must be a redis:// or rediss:// URL (e.g. "redis://127.0.0.1:6379"), redis+sentinel://HOST:PORT,.../MASTER for Redis Sentinel, or memory://NAME for the in-process store of one process',
  );

export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
export const redisUrlSchema = redisUrlTextSchema.default(DEFAULT_REDIS_URL);

export const redisPrefixSchema = z
  .string()
  .regex(/^\S+$/, 'must be a non-empty prefix without spaces, e.g. "skiff:"')
  .default("skiff:");

/** Hosts are `{service}.{namespace}.{domain}`. */
export const domainSchema = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
    'a DNS name such as "example.com"',
  )
  .default("localhost");

/** Scheme of the URLs Skiff reports (status.url). */
export const urlSchemeSchema = z.enum(["http", "https"]).default("http");

/** A listen address. */
export const hostSchema = z.string().min(1).default("127.0.0.1");

/** An id naming one running replica in Redis keys and logs. */
export function replicaIdSchema(example: string) {
  return z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/,
      `use letters, digits, ".", "_" and "-" (e.g. "${example}")`,
    );
}

/** A replica's id when none is given: this host's name (else `fallback`) and a random suffix. */
export function defaultReplicaId(fallback: string): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]/g, "-")
    .slice(0, 60);
  return `${host || fallback}-${randomBytes(3).toString("hex")}`;
}
