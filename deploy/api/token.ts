/**
 * The API's bearer token. Redis keeps only its SHA-256, so every API replica
 * accepts the same token and a token generated on first start survives
 * restarts without ever being stored in clear text.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";

export interface TokenOptions {
  redis: Redis;
  prefix: string;
  /** A token from flags/env/config; wins over the stored one. */
  given?: string | undefined;
}

export interface ApiToken {
  /** Constant-time check of a presented token. */
  verify(presented: string): boolean;
  /** Set only when this start generated the token: print it once. */
  generated?: string;
}

export function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

export function tokenHashKey(prefix: string): string {
  return `${prefix}auth:token-sha256`;
}

function verifier(hash: Buffer): (presented: string) => boolean {
  // Hashing first gives equal-length buffers, so timingSafeEqual never throws
  // and the comparison time does not depend on the presented token.
  return (presented) => timingSafeEqual(sha256(presented), hash);
}

export async function resolveApiToken(options: TokenOptions): Promise<ApiToken> {
  const key = tokenHashKey(options.prefix);
  if (options.given) {
    const hash = sha256(options.given);
    await options.redis.set(key, hash.toString("hex"), "NX");
    return { verify: verifier(hash) };
  }
  const stored = await options.redis.get(key);
  if (stored) return { verify: verifier(Buffer.from(stored, "hex")) };
  const token = `skf_${randomBytes(24).toString("base64url")}`;
  const won = await options.redis.set(key, sha256(token).toString("hex"), "NX");
  if (won) return { verify: verifier(sha256(token)), generated: token };
  // Another replica generated one at the same moment: use theirs.
  const theirs = await options.redis.get(key);
  return { verify: verifier(Buffer.from(theirs ?? "", "hex")) };
}
