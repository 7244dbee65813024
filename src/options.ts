/**
 * Building blocks of the components' zod option schemas, so every server
 * validates Redis URLs, ids, domains, loggers and registries the same way and
 * reports bad options as one ValidationError naming each field. The value
 * types the configuration shares live in src/config/values.ts.
 */
import { Redis } from "ioredis";
import { z } from "zod";
import type { Logger } from "./logging.ts";
import { Registry } from "./metrics.ts";
import { parseOrThrow } from "./parse.ts";

export {
  defaultReplicaId,
  domainSchema,
  redisPrefixSchema,
  redisUrlSchema,
  redisUrlTextSchema,
  urlSchemeSchema,
} from "./config/values.ts";

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
  return parseOrThrow(schema, input ?? {}, { kind, name: "options" });
}
