/**
 * Namespaces made by `kubectl create ns` (POST /api/v1/namespaces): Skiff's
 * namespaces otherwise exist when used, so only these need keeping, to be
 * listed while empty. `{prefix}namespaces` (HASH name -> JSON { uid,
 * creationTimestamp }), written with HSETNX: two creates of one name cannot
 * both succeed.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { timestamp } from "../../src/control/objects.ts";
import { AlreadyExistsError, isSkiffError, UnavailableError } from "../../src/errors.ts";

export interface NamespaceRecord {
  uid: string;
  creationTimestamp: string;
}

export function namespacesKey(prefix: string): string {
  return `${prefix}namespaces`;
}

export class NamespaceStore {
  readonly #redis: Redis;
  readonly #key: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#key = namespacesKey(prefix);
  }

  /** Record a namespace; a 409 AlreadyExists when it was created before. */
  async create(name: string, options: { dryRun: boolean }): Promise<NamespaceRecord> {
    const record = { uid: randomUUID(), creationTimestamp: timestamp() };
    const exists = () => new AlreadyExistsError(`namespaces "${name}" already exists`, { name });
    if (options.dryRun) {
      if (await guard(this.#redis.hexists(this.#key, name))) throw exists();
      return record;
    }
    const added = await guard(this.#redis.hsetnx(this.#key, name, JSON.stringify(record)));
    if (!added) throw exists();
    return record;
  }

  /** Every created namespace, by name. */
  async all(): Promise<Map<string, NamespaceRecord>> {
    const raw = await guard(this.#redis.hgetall(this.#key));
    return new Map(Object.entries(raw).map(([k, v]) => [k, JSON.parse(v) as NamespaceRecord]));
  }
}

async function guard<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (isSkiffError(err)) throw err;
    throw new UnavailableError(`the store (Redis) is unavailable: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
