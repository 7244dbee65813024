/**
 * The CLI's HTTP client for the deploy API. Errors come back as Kubernetes
 * Status objects and are thrown as the SkiffError they stand for
 * (`SkiffError.fromStatus`: code, message and field causes kept), so the CLI
 * prints every error the same way (format-error.ts).
 */
import type { Command } from "commander";
import { SkiffError, type StatusLike, UnavailableError } from "../../src/errors.ts";
import type { LogLine } from "../../src/fleet/logs.ts";
import type { Plural, ResourceOf } from "../../src/model/types.ts";
import type { ServiceDescription } from "../api/describe.ts";
import { type HttpResponse, httpRequest, readLines, readText } from "./http.ts";

export interface ClientOptions {
  apiUrl: string;
  token?: string | undefined;
  /** A CA (PEM file) to trust for an https:// API (settings caFile, env SKIFF_CA_FILE). */
  caFile?: string | undefined;
  namespace: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
}

/** A command's client, with the global flags (--api-url, --token, -n) of its command line. */
export type ClientFactory = (cmd: Command) => ApiClient;

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
      if (err instanceof SkiffError && err.code === "NOT_FOUND") return undefined;
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

  /** A service's instances per host and its recent events (the API's describe subresource). */
  async serviceDescription(service: string): Promise<ServiceDescription> {
    const path = `/apis/skiff.dev/v1/namespaces/${encodeURIComponent(this.namespace)}/services/${encodeURIComponent(service)}/describe`;
    return (await this.request("GET", path)) as ServiceDescription;
  }

  /**
   * A service's instance logs (the API's NDJSON stream of LogLine), ending
   * when the agents have answered or, with follow, when the caller aborts.
   */
  async logs(
    service: string,
    options: { revision?: string; follow: boolean; tailLines?: number; signal?: AbortSignal },
  ): Promise<AsyncIterable<LogLine>> {
    const query = new URLSearchParams({ follow: String(options.follow) });
    if (options.revision) query.set("revision", options.revision);
    if (options.tailLines !== undefined) query.set("tailLines", String(options.tailLines));
    const path = `/apis/skiff.dev/v1/namespaces/${encodeURIComponent(this.namespace)}/services/${encodeURIComponent(service)}/logs?${query}`;
    const connectMs = this.options.timeoutMs ?? 30_000;
    const signal = options.signal ?? new AbortController().signal;
    const res = await this.#send("GET", path, undefined, signal, connectMs);
    if (!/ndjson/.test(res.headers["content-type"] ?? "")) {
      const text = await readText(res).catch((err) => {
        throw this.#unreachable(err, connectMs);
      });
      this.#parse("GET", path, res, text);
      throw new UnavailableError(
        `GET ${path}: the API answered no log stream (is it older than this CLI?)`,
      );
    }
    return (async function* () {
      for await (const line of readLines(res)) yield JSON.parse(line) as LogLine;
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
        caFile: this.options.caFile,
      });
    } catch (err) {
      throw this.#unreachable(err, timeoutMs);
    }
  }

  #unreachable(err: unknown, timeoutMs: number): UnavailableError {
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const cause =
      e.name === "TimeoutError"
        ? `no answer within ${timeoutMs / 1000} s`
        : (e.code ?? e.cause?.code ?? e.message);
    return new UnavailableError(
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
    if (res.status >= 200 && res.status <= 299) return parsed;
    if (res.status === 503) {
      // No store behind the API, or no API behind a proxy: either way, retry.
      const e = SkiffError.fromStatus(
        parsed as StatusLike,
        503,
        "it answered 503 Service Unavailable; retry in a few seconds",
      );
      throw new UnavailableError(
        `the Skiff API at ${this.options.apiUrl} is unavailable: ${e.message}`,
        { causes: e.causes },
      );
    }
    throw SkiffError.fromStatus(
      parsed as StatusLike,
      res.status,
      `${method} ${path} failed with HTTP ${res.status}`,
    );
  }
}

/** One event of a watch stream (Kubernetes watch.Event). */
export interface WatchEvent<T = unknown> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}
