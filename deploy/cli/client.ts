/**
 * The CLI's HTTP client for the deploy API. Errors come back as Kubernetes
 * Status objects; ApiError keeps their code, reason and field causes.
 */
import type { Plural, ResourceOf } from "../../src/model/types.ts";
import { type HttpResponse, httpRequest, readLines, readText } from "./http.ts";

export interface ClientOptions {
  apiUrl: string;
  token?: string | undefined;
  namespace: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
}

export interface StatusCause {
  field?: string;
  message: string;
  reason?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly causes: StatusCause[];
  constructor(status: number, reason: string, message: string, causes: StatusCause[] = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.reason = reason;
    this.causes = causes;
  }
}

const BASE = "/apis/serving.knative.dev/v1";

export class ApiClient {
  readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.options = options;
  }

  get namespace(): string {
    return this.options.namespace;
  }

  path(kind: Plural, name?: string, namespace = this.options.namespace): string {
    const base = `${BASE}/namespaces/${encodeURIComponent(namespace)}/${kind}`;
    return name ? `${base}/${encodeURIComponent(name)}` : base;
  }

  async get<P extends Plural>(kind: P, name: string): Promise<ResourceOf<P>> {
    return this.request("GET", this.path(kind, name)) as Promise<ResourceOf<P>>;
  }

  /** undefined when the object does not exist. */
  async find<P extends Plural>(kind: P, name: string): Promise<ResourceOf<P> | undefined> {
    try {
      return await this.get(kind, name);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  async list<P extends Plural>(
    kind: P,
    options: { labelSelector?: string; allNamespaces?: boolean } = {},
  ): Promise<ResourceOf<P>[]> {
    const path = options.allNamespaces ? `${BASE}/${kind}` : this.path(kind);
    const query = options.labelSelector
      ? `?labelSelector=${encodeURIComponent(options.labelSelector)}`
      : "";
    const list = (await this.request("GET", path + query)) as { items: ResourceOf<P>[] };
    return list.items;
  }

  async create<P extends Plural>(kind: P, body: unknown): Promise<ResourceOf<P>> {
    return this.request("POST", this.path(kind), body) as Promise<ResourceOf<P>>;
  }

  async replace<P extends Plural>(kind: P, name: string, body: unknown): Promise<ResourceOf<P>> {
    return this.request("PUT", this.path(kind, name), body) as Promise<ResourceOf<P>>;
  }

  async delete(kind: Plural, name: string): Promise<void> {
    await this.request("DELETE", this.path(kind, name));
  }

  async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const timeoutMs = this.options.timeoutMs ?? 30_000;
    const res = await this.#send(method, path, body, AbortSignal.timeout(timeoutMs), timeoutMs);
    let text: string;
    try {
      text = await readText(res);
    } catch (err) {
      throw this.#unreachable(err, timeoutMs);
    }
    return this.#parse(method, path, res, text);
  }

  /**
   * Watch one object (`name`) or a collection: the API's `?watch=true` stream
   * of {type, object} events. Returns undefined when the API does not stream
   * watches (an older API answers with the plain object instead).
   */
  async watch<P extends Plural>(
    kind: P,
    name: string | undefined,
    options: { timeoutSeconds: number; signal?: AbortSignal },
  ): Promise<AsyncIterable<WatchEvent<ResourceOf<P>>> | undefined> {
    const query = `?watch=true&timeoutSeconds=${Math.max(1, Math.ceil(options.timeoutSeconds))}`;
    const path = this.path(kind, name) + query;
    // Connecting gets the usual timeout; the stream itself lasts up to timeoutSeconds
    // (the API ends it), bounded only by the caller's signal.
    const connectMs = this.options.timeoutMs ?? 30_000;
    const connecting = new AbortController();
    const timer = setTimeout(
      () => connecting.abort(new DOMException("connect timeout", "TimeoutError")),
      connectMs,
    );
    const signal = options.signal
      ? AbortSignal.any([options.signal, connecting.signal])
      : connecting.signal;
    let res: HttpResponse;
    try {
      res = await this.#send("GET", path, undefined, signal, connectMs);
    } finally {
      clearTimeout(timer);
    }
    const type = res.headers["content-type"] ?? "";
    if (!res.status.toString().startsWith("2") || !/stream=watch/.test(type)) {
      // An error, or an API without watch: its answer is a plain JSON document.
      const text = await readText(res).catch((err) => {
        throw this.#unreachable(err, connectMs);
      });
      this.#parse("GET", path, res, text);
      return undefined;
    }
    return (async function* () {
      for await (const line of readLines(res)) {
        yield JSON.parse(line) as WatchEvent<ResourceOf<P>>;
      }
    })();
  }

  async #send(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
    timeoutMs: number,
  ): Promise<HttpResponse> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      return await httpRequest(new URL(path, this.options.apiUrl), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      throw this.#unreachable(err, timeoutMs);
    }
  }

  #unreachable(err: unknown, timeoutMs: number): ApiError {
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const cause =
      e.name === "TimeoutError"
        ? `no answer within ${timeoutMs / 1000} s`
        : (e.code ?? e.cause?.code ?? e.message);
    return new ApiError(
      0,
      "Unreachable",
      `cannot reach the Skiff API at ${this.options.apiUrl} (${cause}); is it running? (skiff up, or pass --api-url / set SKIFF_API_URL)`,
    );
  }

  #parse(method: string, path: string, res: HttpResponse, text: string): unknown {
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (res.status === 503) {
      const message = (parsed as { message?: string } | undefined)?.message;
      throw new ApiError(
        503,
        "ServiceUnavailable",
        `the Skiff API at ${this.options.apiUrl} is unavailable: ${message ?? "it answered 503 Service Unavailable; retry in a few seconds"}`,
      );
    }
    if (res.status < 200 || res.status > 299) {
      const status = parsed as {
        message?: string;
        reason?: string;
        details?: { causes?: StatusCause[] };
      };
      throw new ApiError(
        res.status,
        status?.reason ?? res.statusText,
        status?.message ?? `${method} ${path} failed with HTTP ${res.status}`,
        status?.details?.causes ?? [],
      );
    }
    return parsed;
  }
}

/** One event of a watch stream (Kubernetes watch.Event). */
export interface WatchEvent<T = unknown> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}
