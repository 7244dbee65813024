/**
 * The code the agent serves to its routers, by revision key. Revisions are
 * immutable: registering different code under a key that is (or was) in use is
 * refused, since a process may still hold the old isolate (the workerd loader
 * never evicts). The loader name includes a digest of the code, so a key that
 * was unregistered and registered again with new code can never reach a stale
 * isolate.
 */
import { createHash } from "node:crypto";
import { ConflictError } from "../../src/errors.ts";
import { DEFAULT_COMPATIBILITY_DATE, type RevisionCode } from "./options.ts";

/** What the router receives, serialized once at registration. */
export interface CodePayload {
  loaderName: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  mainModule: string;
  modules: Record<string, string>;
  env: Record<string, string>;
  network: "none" | "internet";
}

interface Entry {
  digest: string;
  json: string;
}

const MAIN_MODULE = "worker.js";

export class CodeRegistry {
  readonly #entries = new Map<string, Entry>();
  /** Digests of unregistered keys: a key can only come back with the same code. */
  readonly #retired = new Map<string, string>();

  /** Returns false when the same code was already registered (idempotent). */
  register(key: string, code: RevisionCode): boolean {
    const compatibilityDate = code.compatibilityDate ?? DEFAULT_COMPATIBILITY_DATE;
    const digest = createHash("sha256")
      .update(
        JSON.stringify([
          code.code,
          Object.entries(code.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
          code.network,
          compatibilityDate,
          code.compatibilityFlags,
        ]),
      )
      .digest("hex");
    const known = this.#entries.get(key)?.digest ?? this.#retired.get(key);
    if (known !== undefined && known !== digest) {
      throw new ConflictError(
        `revision ${key} is already registered with different code or settings; revisions are immutable, register the change under a new revision key`,
        { kind: "Revision", name: key },
      );
    }
    if (this.#entries.has(key)) return false;
    const payload: CodePayload = {
      loaderName: `${key}#${digest.slice(0, 16)}`,
      compatibilityDate,
      compatibilityFlags: code.compatibilityFlags,
      mainModule: MAIN_MODULE,
      modules: { [MAIN_MODULE]: code.code },
      env: code.env,
      network: code.network,
    };
    this.#retired.delete(key);
    this.#entries.set(key, { digest, json: JSON.stringify(payload) });
    return true;
  }

  unregister(key: string): boolean {
    const entry = this.#entries.get(key);
    if (!entry) return false;
    this.#entries.delete(key);
    this.#retired.set(key, entry.digest);
    return true;
  }

  /** Whether any revision of the namespace is registered. */
  hasNamespace(namespace: string): boolean {
    const prefix = `${namespace}/`;
    for (const key of this.#entries.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** The serialized payload the router fetches, or undefined. */
  payload(key: string): string | undefined {
    return this.#entries.get(key)?.json;
  }

  get size(): number {
    return this.#entries.size;
  }
}
