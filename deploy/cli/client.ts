/**
 * The CLI's HTTP client for the deploy API. Errors come back as Kubernetes
 * Status objects; ApiError keeps their code, reason and field causes.
 */
import type { Plural, Resource, ResourceOf } from "../../src/model/types.ts";

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
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const url = new URL(path, this.options.apiUrl);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (err) {
      const name = (err as Error).name;
      const cause =
        name === "TimeoutError"
          ? `no answer within ${(this.options.timeoutMs ?? 30_000) / 1000} s`
          : ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message);
      throw new ApiError(
        0,
        "Unreachable",
        `cannot reach the Skiff API at ${this.options.apiUrl} (${cause}); is it running? (skiff up, or pass --api-url / set SKIFF_API_URL)`,
      );
    }
    const text = await res.text();
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
    if (!res.ok) {
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

export type { Resource };
