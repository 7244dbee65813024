/** A real deploy API on a free loopback port, over the run's Redis, with its own key prefix. */

import { Agent, fetch as undiciFetch } from "undici";
import { stringify } from "yaml";
import { type ApiServer, startApiServer } from "../../deploy/api/server.ts";
import { parseConfig } from "../../src/config.ts";
import { type Logger, silentLogger } from "../../src/logging.ts";
import { createRegistry } from "../../src/metrics.ts";
import { type Manifest, serviceManifest } from "./fixtures.ts";
import { redisUrl, uniquePrefix } from "./redis.ts";

export const BASE = "/apis/serving.knative.dev/v1";
export const TOKEN = "test-token-0123456789abcdef";

export interface ApiClient {
  /** Call the API; JSON bodies by default, or raw text with a content type. */
  call(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<Reply>;
}

export interface TestApi extends ApiServer, ApiClient {
  prefix: string;
  token: string;
  ns(plural: string, name?: string, namespace?: string): string;
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  json: any;
}

export async function startTestApi(
  options: {
    prefix?: string;
    /** The admin token this start sets (replacing any stored one); null: none given. */
    token?: string | null;
    config?: Record<string, unknown>;
    logger?: Logger;
  } = {},
): Promise<TestApi> {
  const prefix = options.prefix ?? uniquePrefix("api");
  const token = options.token === null ? "" : (options.token ?? TOKEN);
  const given: Record<string, unknown> = {
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    api: token ? { port: 0, token } : { port: 0 },
    ...options.config,
  };
  // HTTPS is the default; a test that does not ask for it gets plain HTTP on
  // loopback (no certificates generated into the user's state folder).
  const api = given.api as Record<string, unknown>;
  if (api.tls === undefined) given.api = { ...api, tls: { enabled: false } };
  const config = parseConfig(given);
  const server = await startApiServer({
    config,
    logger: options.logger ?? silentLogger,
    registry: createRegistry({ component: "api" }),
  });
  return {
    ...server,
    ...apiClient(server.url, token, server.ca),
    prefix,
    token,
    ns: (plural, name, namespace = "default") =>
      `${BASE}/namespaces/${namespace}/${plural}${name ? `/${name}` : ""}`,
  };
}

/** Calls to the deploy API at `url` as `token`: startTestApi's, or one a `skiff up` or process started; over TLS it trusts `ca` alone. */
export function apiClient(url: string, token: string, ca?: string): ApiClient {
  const tlsAgent = ca ? new Agent({ connect: { ca } }) : undefined;
  return {
    async call(method, path, body, headers = {}) {
      const h: Record<string, string> = { authorization: `Bearer ${token}`, ...headers };
      let payload: string | Uint8Array | undefined;
      if (body !== undefined) {
        // Bytes, so fetch adds no Content-Type of its own: tests choose it.
        if (typeof body === "string") payload = new TextEncoder().encode(body);
        else {
          payload = JSON.stringify(body);
          h["content-type"] ??= "application/json";
        }
      }
      const init = { method, headers: h, body: payload ?? null };
      // Over TLS: trust the API's generated CA (and nothing else) for these calls.
      const res = tlsAgent
        ? await undiciFetch(new URL(path, url), { ...init, dispatcher: tlsAgent })
        : await fetch(new URL(path, url), init);
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text, json };
    },
  };
}

/** A namespaced token made through the API (what `skiff token create` does); its secret. */
export async function createToken(
  api: ApiClient,
  name: string,
  role: "view" | "edit",
  namespaces: string[],
): Promise<string> {
  const r = await api.call("POST", "/apis/skiff.dev/v1/tokens", {
    apiVersion: "skiff.dev/v1",
    kind: "Token",
    metadata: { name },
    spec: { role, namespaces },
  });
  if (r.status !== 201) throw new Error(`creating token ${name}: ${r.status} ${r.text}`);
  return r.json.status.token as string;
}

/** A minimal valid Service body: Knative's helloworld-go saying Hello World. */
export function serviceBody(
  name: string,
  extra: { env?: Record<string, string>; traffic?: unknown[] } = {},
): Manifest {
  return serviceManifest(name, {
    image: "ghcr.io/knative/helloworld-go:latest",
    env: extra.env ?? { TARGET: "World" },
    traffic: extra.traffic,
  });
}

/** serviceBody as YAML, the way kubectl and a server-side apply send it. */
export function serviceYaml(name: string): string {
  return stringify(serviceBody(name));
}
