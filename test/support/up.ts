/**
 * A whole `skiff up` in the test process, as the end-to-end tests run it:
 * the run's Redis under a prefix of its own, every port ephemeral, the API on
 * plain HTTP over loopback (tests talk to it with fetch), and the short
 * timings that let a test wait for agents and leaders in seconds.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startUp, type Up } from "../../deploy/up.ts";
import { silentLogger } from "../../src/logging.ts";
import { apiClient, BASE } from "./api.ts";
import { removeContainers } from "./containers.ts";
import type { Manifest } from "./fixtures.ts";
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

export interface FileUp {
  /** `{name}-{pid}`: the agent's id, so the owner of its containers. */
  agentId: string;
  /** startTestUp with this file's state folder, agent id and `config`. */
  start(config?: Record<string, unknown>): Promise<Up>;
  /** Close the up (if started), remove its agent's containers and its state folder. */
  close(): Promise<void>;
}

/** One test file's `skiff up`, with a state folder and agent id of its own and the cleanup of both. */
export function fileUp(name: string, token: string): FileUp {
  const agentId = `${name}-${process.pid}`;
  const stateDir = mkdtempSync(join(tmpdir(), `skiff-${name}-up-`));
  let up: Up | undefined;
  return {
    agentId,
    async start(config) {
      up = await startTestUp({ stateDir, name, token, agent: { id: agentId }, config });
      return up;
    },
    async close() {
      await up?.close();
      await removeContainers([agentId]);
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** POST a Service into `default` through the API, then wait until its first revision is Ready. */
export async function createServiceReady(up: Up, token: string, service: Manifest): Promise<void> {
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
