/**
 * Building blocks of the components' zod option schemas, so every server
 * validates Redis URLs, ids, domains, loggers and registries the same way and
 * reports bad options as one ValidationError naming each field.
 */
import { Redis } from "ioredis";
import { z } from "zod";
import { ValidationError } from "./errors.ts";
import type { Logger } from "./logging.ts";
import { Registry } from "./metrics.ts";

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

export const redisUrlSchema = redisUrlTextSchema.default("redis://127.0.0.1:6379");

/** An existing ioredis connection handed in by the caller (a real or an in-process one). */
export const redisInstanceSchema = z.custom<Redis>(
  (v) =>
    v instanceof Redis ||
    (typeof v === "object" &&
      v !== null &&
      typeof (v as Redis).duplicate === "function" &&
      typeof (v as Redis).evalsha === "function"),
  "must be an ioredis Redis instance",
);

export const redisPrefixSchema = z
  .string()
  .regex(/^\S+$/, 'must be a non-empty prefix without spaces, e.g. "skiff:"')
  .default("skiff:");

/** An id naming one running replica in Redis keys and logs. */
export function replicaIdSchema(example: string) {
  return z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/,
      `use letters, digits, ".", "_" and "-" (e.g. "${example}")`,
    );
}

/** Hosts are `{service}.{namespace}.{domain}`. */
export const domainSchema = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
    'a DNS name such as "example.com"',
  )
  .default("localhost");

export const portSchema = z.number().int().min(0).max(65535);

export const loggerSchema = z.custom<Logger>(
  (v) => typeof v === "object" && v !== null && typeof (v as Logger).warn === "function",
  "must be a pino logger",
);

export const registrySchema = z.custom<Registry>(
  (v) => v instanceof Registry,
  "must be a prom-client Registry",
);

/** Parse options or throw a ValidationError with one cause per bad field. */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  input: unknown,
  kind: string,
): z.output<S> {
  const parsed = schema.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  throw ValidationError.of(
    parsed.error.issues.map((i) => ({
      field: i.path.map(String).join("."),
      message: i.message,
      reason: "FieldValueInvalid",
    })),
    { kind, name: "options" },
  );
}
