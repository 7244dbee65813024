/**
 * API tokens. Redis keeps only SHA-256 hashes, so every API replica accepts
 * the same tokens, a secret is shown once (when made) and never stored in
 * clear text, and every request is checked against Redis: a revoked token
 * stops working at once on every replica.
 *
 * - The admin token: `{prefix}auth:token-sha256` (STRING, hex). A start with
 *   a given token (--token-file, SKIFF_TOKEN, config) replaces it, which
 *   revokes the previous admin token; without one the stored hash is kept, or
 *   a token is generated on first start and printed once.
 * - Namespaced tokens: `{prefix}auth:tokens` (HASH sha256 hex -> JSON record:
 *   name, role, namespaces, creationTimestamp) and `{prefix}auth:token-names`
 *   (HASH name -> sha256 hex), written and removed together by Lua scripts.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import {
  AlreadyExistsError,
  isSkiffError,
  NotFoundError,
  UnavailableError,
} from "../../src/errors.ts";

export type Role = "view" | "edit";
export const ROLES: readonly Role[] = ["view", "edit"];

/** Who a request is: the admin, or a token limited to namespaces and a role. */
export type Principal =
  | { kind: "admin" }
  | { kind: "token"; name: string; role: Role; namespaces: string[] };

/** A namespaced token as stored (no secret, no hash). */
export interface TokenRecord {
  name: string;
  role: Role;
  namespaces: string[];
  creationTimestamp: string;
}

export interface TokenOptions {
  redis: Redis;
  prefix: string;
  /** A token from flags/env/config; replaces the stored admin token. */
  given?: string | undefined;
}

export interface ApiToken {
  /** Set only when this start generated the token: print it once. */
  generated?: string;
}

export function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

export function tokenHashKey(prefix: string): string {
  return `${prefix}auth:token-sha256`;
}

function tokensKey(prefix: string): string {
  return `${prefix}auth:tokens`;
}

function namesKey(prefix: string): string {
  return `${prefix}auth:token-names`;
}

/** A new secret: 32 random bytes, prefixed so that secret scanners recognise it. */
export function newSecret(): string {
  return `skf_${randomBytes(32).toString("base64url")}`;
}

/** Settle the admin token hash in Redis at start. */
export async function resolveApiToken(options: TokenOptions): Promise<ApiToken> {
  const key = tokenHashKey(options.prefix);
  if (options.given) {
    // SET, not SET NX: a new admin token revokes the old one.
    await options.redis.set(key, sha256(options.given).toString("hex"));
    return {};
  }
  if (await options.redis.exists(key)) return {};
  const token = newSecret();
  const won = await options.redis.set(key, sha256(token).toString("hex"), "NX");
  // Another replica generated one at the same moment: theirs stands.
  return won ? { generated: token } : {};
}

const CREATE = `
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1`;

const REVOKE = `
local sha = redis.call('HGET', KEYS[2], ARGV[1])
if not sha then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], sha)
return 1`;

/** Redis failures are "try again", never a 500 with a driver message. */
async function guard<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (isSkiffError(err)) throw err;
    throw new UnavailableError(
      `the token store (Redis) is unavailable: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

export class TokenStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  /** Who presents this secret, or undefined for an unknown (or revoked) one. Reads Redis every time. */
  async authenticate(secret: string): Promise<Principal | undefined> {
    const hash = sha256(secret).toString("hex");
    const [admin, record] = await guard(
      Promise.all([
        this.#redis.get(tokenHashKey(this.#prefix)),
        this.#redis.hget(tokensKey(this.#prefix), hash),
      ]),
    );
    // Both sides are hashes of fixed length: comparing them leaks nothing about the secret.
    if (admin === hash) return { kind: "admin" };
    if (!record) return undefined;
    const r = JSON.parse(record) as TokenRecord;
    return { kind: "token", name: r.name, role: r.role, namespaces: r.namespaces };
  }

  /** Make a token; returns its record and the secret (shown once, never stored). */
  async create(input: Omit<TokenRecord, "creationTimestamp">): Promise<{
    record: TokenRecord;
    secret: string;
  }> {
    const secret = newSecret();
    const record: TokenRecord = {
      name: input.name,
      role: input.role,
      namespaces: [...input.namespaces],
      creationTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
    };
    const made = await guard(
      this.#redis.eval(
        CREATE,
        2,
        tokensKey(this.#prefix),
        namesKey(this.#prefix),
        record.name,
        sha256(secret).toString("hex"),
        JSON.stringify(record),
      ),
    );
    if (Number(made) !== 1) {
      throw new AlreadyExistsError(
        `token "${record.name}" already exists; revoke it first (skiff token revoke ${record.name}) or choose another name`,
        { kind: "tokens", name: record.name },
      );
    }
    return { record, secret };
  }

  async list(): Promise<TokenRecord[]> {
    const all = await guard(this.#redis.hvals(tokensKey(this.#prefix)));
    return all
      .map((json) => JSON.parse(json) as TokenRecord)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<TokenRecord> {
    const hash = await guard(this.#redis.hget(namesKey(this.#prefix), name));
    const json = hash ? await guard(this.#redis.hget(tokensKey(this.#prefix), hash)) : null;
    if (!json) throw notFound(name);
    return JSON.parse(json) as TokenRecord;
  }

  /** Revoke at once: the next request with it, on any replica, is refused. */
  async revoke(name: string): Promise<void> {
    const gone = await guard(
      this.#redis.eval(REVOKE, 2, tokensKey(this.#prefix), namesKey(this.#prefix), name),
    );
    if (Number(gone) !== 1) throw notFound(name);
  }
}

function notFound(name: string): NotFoundError {
  return new NotFoundError(`token "${name}" not found; list tokens with: skiff token list`, {
    kind: "tokens",
    name,
  });
}
