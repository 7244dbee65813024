/**
 * Kubernetes-style watches: `GET ...?watch=true` on one object or a collection
 * streams JSON lines of {type, object} events (ADDED, MODIFIED, DELETED, and
 * ERROR before an abnormal end), driven by the store's change notices.
 *
 * Semantics we can honour without a change history:
 *  - resourceVersion unset, "" or "0": the stream starts with the current
 *    objects as ADDED events, then every later change. Any other
 *    resourceVersion gets 410 Expired (there is no history to replay from).
 *  - The objects of an object's events have strictly increasing
 *    resourceVersions; an object leaving a label selector is DELETED.
 *  - A watch ends after timeoutSeconds (capped), on API shutdown, when the
 *    store's notices were interrupted (events may have been missed: the client
 *    watches again and gets the current state), or when its client reads too
 *    slowly. The client then simply watches again.
 *
 * Bounded for hostile clients: a cap on open watches overall and per token,
 * a queue limit per watch, and the token re-checked while the watch runs, so
 * a revoked token stops receiving within reauthMs.
 */
import type { Context } from "hono";
import {
  BadRequestError,
  ExpiredError,
  ForbiddenError,
  TooManyRequestsError,
  UnauthorizedError,
} from "../../src/errors.ts";
import type { Logger } from "../../src/logging.ts";
import type { Plural, Resource } from "../../src/model/types.ts";
import type { Store, StoreEvent } from "../../src/store/store.ts";
import { allowed } from "./access.ts";
import { toSkiffError } from "./status.ts";
import type { Principal, TokenStore } from "./token.ts";

export interface WatchLimits {
  /** Most watches open at once on this API process. */
  maxOpen: number;
  /** Most watches open at once per token (the admin token counts as one). */
  maxPerToken: number;
  /** Longest watch; a longer or absent timeoutSeconds is cut to this. */
  maxTimeoutSeconds: number;
  /** How often a running watch re-checks its token (revocation, scope). */
  reauthMs: number;
  /** Bytes of events queued for a client that does not read before its watch is ended. */
  maxQueuedBytes: number;
}

export const DEFAULT_WATCH_LIMITS: WatchLimits = {
  maxOpen: 256,
  maxPerToken: 16,
  maxTimeoutSeconds: 600,
  reauthMs: 5_000,
  maxQueuedBytes: 4 * 1024 * 1024,
};

export interface WatchTarget {
  plural: Plural;
  /** One namespace, or undefined for all that the principal may read. */
  namespace: string | undefined;
  /** One object, or undefined for the collection. */
  name?: string | undefined;
  labels?: Record<string, string> | undefined;
  /** When the client asked for Tables: each event's object as a one-row Table. */
  table?: ((objects: Resource[]) => unknown) | undefined;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "ERROR";

interface OpenWatch {
  close(): void;
}

export class WatchHub {
  readonly #store: Store;
  readonly #tokens: TokenStore;
  readonly #limits: WatchLimits;
  readonly #logger: Logger;
  readonly #open = new Set<OpenWatch>();
  readonly #perToken = new Map<string, number>();

  constructor(store: Store, tokens: TokenStore, limits: WatchLimits, logger: Logger) {
    this.#store = store;
    this.#tokens = tokens;
    this.#limits = limits;
    this.#logger = logger;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Ends every open watch (shutdown, or store notices interrupted). */
  closeAll(): void {
    for (const w of [...this.#open]) w.close();
  }

  /** Validates the query, takes a slot, and answers with the event stream. */
  async open(c: Context, principal: Principal, target: WatchTarget): Promise<Response> {
    const rv = c.req.query("resourceVersion");
    if (rv !== undefined && rv !== "" && rv !== "0") {
      throw new ExpiredError(
        `resourceVersion ${rv.slice(0, 40)} is too old: this API keeps no history of changes; watch without resourceVersion (or with 0) and the stream starts with the current state as ADDED events`,
      );
    }
    const timeoutSeconds = this.#timeout(c.req.query("timeoutSeconds"));
    const who = principal.kind === "admin" ? "admin" : `token:${principal.name}`;
    if (this.#open.size >= this.#limits.maxOpen) {
      throw new TooManyRequestsError(
        `too many open watches on this API (${this.#limits.maxOpen}); retry later`,
      );
    }
    const mine = this.#perToken.get(who) ?? 0;
    if (mine >= this.#limits.maxPerToken) {
      throw new TooManyRequestsError(
        `too many open watches for this token (${this.#limits.maxPerToken}); close some first`,
      );
    }
    const secret = /^Bearer[ \t]+(\S+)/i.exec(c.req.header("authorization") ?? "")?.[1] ?? "";
    return this.#stream(c, principal, secret, who, target, timeoutSeconds);
  }

  #timeout(value: string | undefined): number {
    const max = this.#limits.maxTimeoutSeconds;
    if (value === undefined || value === "") return max;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) {
      throw new BadRequestError(`timeoutSeconds must be a whole number of seconds`);
    }
    return n === 0 ? max : Math.min(n, max);
  }

  async #stream(
    c: Context,
    first: Principal,
    secret: string,
    who: string,
    target: WatchTarget,
    timeoutSeconds: number,
  ): Promise<Response> {
    const store = this.#store;
    const limits = this.#limits;
    const encoder = new TextEncoder();
    /** The last state sent per object key (for DELETED and ordering). */
    const sent = new Map<string, Resource>();
    let principal = first;
    let checkedAt = Date.now();
    let closed = false;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let chain: Promise<void> = Promise.resolve();
    let unwatch: (() => Promise<void>) | undefined;
    let timer: NodeJS.Timeout | undefined;

    const self: OpenWatch = { close: () => finish() };
    /** Ends the watch: with an ERROR event when `error` is given; `drop` discards what is queued. */
    const finish = (error?: unknown, drop = false) => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      this.#open.delete(self);
      const left = (this.#perToken.get(who) ?? 1) - 1;
      if (left > 0) this.#perToken.set(who, left);
      else this.#perToken.delete(who);
      void unwatch?.();
      try {
        // Errors the stream: its queue is freed and the connection closed at once.
        if (drop) return controller.error(error);
        if (error !== undefined) {
          const status = toSkiffError(error).toStatus();
          controller.enqueue(
            encoder.encode(`${JSON.stringify({ type: "ERROR", object: status })}\n`),
          );
        }
        controller.close();
      } catch {
        // The client is already gone.
      }
    };

    const send = (type: WatchEventType, object: Resource) => {
      if (closed) return;
      const shown = target.table ? target.table([object]) : object;
      controller.enqueue(encoder.encode(`${JSON.stringify({ type, object: shown })}\n`));
      // A client that stops reading must not make the API hold its events forever.
      if ((controller.desiredSize ?? 0) < -limits.maxQueuedBytes) {
        finish(new TooManyRequestsError("watch client reads too slowly"), true);
      }
    };

    const keyOf = (ns: string, name: string) => `${ns}/${name}`;
    const inScope = (ns: string, name: string) =>
      (target.namespace === undefined ? allowed(principal, "list", ns) : ns === target.namespace) &&
      (target.name === undefined || name === target.name);
    const matches = (obj: Resource) => {
      const labels = obj.metadata.labels ?? {};
      return Object.entries(target.labels ?? {}).every(([k, v]) => labels[k] === v);
    };
    const rvOf = (obj: Resource | undefined) => Number(obj?.metadata.resourceVersion ?? 0);

    /** Re-checks the token now and then: a revoked or narrowed token ends its watches. */
    const stillAllowed = async () => {
      if (Date.now() - checkedAt < limits.reauthMs) return true;
      checkedAt = Date.now();
      const now = await this.#tokens.authenticate(secret);
      if (!now) {
        finish(new UnauthorizedError("the watch's token was revoked"));
        return false;
      }
      principal = now;
      if (target.namespace !== undefined && !allowed(principal, "list", target.namespace)) {
        finish(
          new ForbiddenError(
            `the watch's token may no longer read namespace "${target.namespace}"`,
          ),
        );
        return false;
      }
      return true;
    };

    const handle = async (event: StoreEvent) => {
      if (closed || event.kind !== target.plural) return;
      if (!inScope(event.namespace, event.name)) return;
      if (!(await stillAllowed())) return;
      const key = keyOf(event.namespace, event.name);
      const known = sent.get(key);
      if (Number(event.resourceVersion) <= rvOf(known)) return;
      if (event.type === "delete") {
        if (!known) return;
        sent.delete(key);
        const last = structuredClone(known);
        last.metadata.resourceVersion = event.resourceVersion;
        send("DELETED", last);
        return;
      }
      const obj = await store.get(target.plural, event.namespace, event.name);
      // Gone again already: its delete notice follows.
      if (!obj || closed || rvOf(obj) <= rvOf(sent.get(key))) return;
      if (!matches(obj)) {
        if (known) {
          sent.delete(key);
          send("DELETED", obj);
        }
        return;
      }
      sent.set(key, obj);
      send(known ? "MODIFIED" : "ADDED", obj);
    };

    const stream = new ReadableStream<Uint8Array>(
      {
        start(ctrl) {
          controller = ctrl;
        },
        cancel() {
          finish();
        },
      },
      { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
    );

    this.#open.add(self);
    this.#perToken.set(who, (this.#perToken.get(who) ?? 0) + 1);
    try {
      // Subscribe first, then read the current state: nothing falls in between.
      // Notices that arrive meanwhile queue behind the initial state.
      let initial!: () => void;
      chain = new Promise<void>((r) => {
        initial = r;
      });
      unwatch = await store.watch((event) => {
        chain = chain.then(() => handle(event)).catch((err: unknown) => finish(err));
      });
      const current =
        target.name && target.namespace !== undefined
          ? [await store.get(target.plural, target.namespace, target.name)].filter(
              (o): o is Resource => o !== undefined,
            )
          : target.namespace !== undefined
            ? await store.list(target.plural, target.namespace, { labels: target.labels })
            : (await store.list(target.plural, undefined, { labels: target.labels })).filter((o) =>
                allowed(principal, "list", o.metadata.namespace),
              );
      for (const obj of current) {
        if (!inScope(obj.metadata.namespace, obj.metadata.name) || !matches(obj)) continue;
        sent.set(keyOf(obj.metadata.namespace, obj.metadata.name), obj);
        send("ADDED", obj);
      }
      initial();
    } catch (err) {
      finish();
      throw err;
    }
    c.req.raw.signal.addEventListener("abort", () => finish(), { once: true });
    timer = setTimeout(() => finish(), timeoutSeconds * 1000);
    timer.unref();
    this.#logger.debug({ who, ...target, timeoutSeconds }, "watch opened");
    return new Response(stream, {
      status: 200,
      headers: {
        "content-type": "application/json;stream=watch",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
    });
  }
}

/** `?watch=` values: true/1 watch, false/0/absent do not. */
export function isWatch(value: string | undefined): boolean {
  if (value === undefined || value === "" || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw new BadRequestError(`watch must be true or false, not "${value.slice(0, 40)}"`);
}
