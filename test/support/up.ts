/**
 * A whole `skiff up` in the test process, as the end-to-end tests run it:
 * the run's Redis under a prefix of its own, every port ephemeral, the API on
 * plain HTTP over loopback (tests talk to it with fetch), and the short
 * timings that let a test wait for agents and leaders in seconds.
 */
import { startUp, type Up } from "../../deploy/up.ts";
import { silentLogger } from "../../src/logging.ts";
import { apiClient, BASE } from "./api.ts";
import { redisUrl, uniquePrefix } from "./redis.ts";
import { waitFor } from "./wait.ts";

const DEFAULT_NS = `${BASE}/namespaces/default`;

export function startTestUp(options: {
  stateDir: string;
  /** Names the Redis prefix (made unique). */
  name: string;
  token: string;
  /** The agent's settings (its id at least); merged over the test timings. */
  agent: Record<string, unknown> & { id: string };
  /** Further top-level configuration (e.g. `images`). */
  config?: Record<string, unknown>;
}): Promise<Up> {
  return startUp({
    stateDir: options.stateDir,
    env: {},
    logger: silentLogger,
    overrides: {
      redisUrl: redisUrl(),
      redisPrefix: uniquePrefix(options.name),
      api: { port: 0, token: options.token, tls: { enabled: false } },
      gateway: { port: 0, adminPort: 0 },
      agent: { port: 0, heartbeatIntervalMs: 250, heartbeatTtlMs: 1500, ...options.agent },
      scaler: { port: 0, leaseMs: 1000, resyncIntervalMs: 2000 },
      ...options.config,
    },
  });
}

/** POST a Service into `default` through the API, then wait until its first revision is Ready. */
export async function createServiceReady(
  up: Up,
  token: string,
  service: { metadata: { name: string } } & Record<string, unknown>,
): Promise<void> {
  const api = apiClient(up.apiUrl, token);
  const res = await api.call("POST", `${DEFAULT_NS}/services`, service);
  if (res.status !== 201) throw new Error(`creating the service: ${res.status} ${res.text}`);
  const revision = `${service.metadata.name}-00001`;
  await waitFor(
    `${revision} Ready`,
    async () => {
      const rev = (await api.call("GET", `${DEFAULT_NS}/revisions/${revision}`)).json as {
        status: { conditions?: { type: string; status: string }[] };
      };
      return rev.status.conditions?.some((c) => c.type === "Ready" && c.status === "True");
    },
    60_000,
    100,
  );
}
