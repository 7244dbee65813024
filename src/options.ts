/**
 * Building blocks of the components' zod option schemas, so every server
 * validates Redis URLs, ids, domains, loggers and registries the same way and
 * reports bad options as one ValidationError naming each field.
 */
import { z } from "zod";
import { ValidationError } from "./errors.ts";
import type { Logger } from "./logging.ts";
import { Registry } from "./metrics.ts";

export const redisUrlSchema = z
  .string()
  .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL, e.g. "redis://127.0.0.1:6379"')
  .default("redis://127.0.0.1:6379");

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
