/** Shared bits of the isolate pool tests: real HTTP against real workerd. */
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Agent, request } from "undici";
import { GATEWAY_AUTH_HEADER, type WorkerdPool } from "../../../agent/isolate/index.ts";
import { rendezvousSlot } from "../../../agent/isolate/shard.ts";
import { isReset } from "../../../gateway/upstream-errors.ts";

export interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * One request to a revision through its pool endpoint, as a gateway sends it.
 * `fresh` opens a new connection (no keep-alive reuse).
 */
export async function send(
  pool: WorkerdPool,
  revision: string,
  options: {
    path?: string;
    method?: "GET" | "POST";
    body?: string;
    headers?: Record<string, string>;
    fresh?: boolean;
    /** Retry once on a fresh connection when the socket closes before any answer. */
    retryClosed?: boolean;
    /** The gateway secret to send (default: the pool's); null sends none. */
    auth?: string | null;
  } = {},
): Promise<Answer> {
  try {
    return await sendOnce(pool, revision, options);
  } catch (err) {
    // A recycled process closes its idle keep-alive connections, a killed one
    // resets them; a request that met either fails before any response byte.
    // The gateway retries such a reset once (an idempotent request without a
    // body, gateway/attempt.ts); tests of recycling and restarts opt in to do the same.
    const idempotent = (options.method ?? "GET") === "GET" && options.body === undefined;
    if (!options.retryClosed || !idempotent || !isReset(err as Error)) throw err;
    return sendOnce(pool, revision, { ...options, fresh: true });
  }
}

async function sendOnce(
  pool: WorkerdPool,
  revision: string,
  options: {
    path?: string;
    method?: "GET" | "POST";
    body?: string;
    headers?: Record<string, string>;
    fresh?: boolean;
    auth?: string | null;
  },
): Promise<Answer> {
  const ep = pool.endpointFor(revision);
  const dispatcher = options.fresh ? new Agent({ pipelining: 0 }) : undefined;
  const auth = options.auth === undefined ? pool.gatewaySecret : options.auth;
  try {
    const res = await request(`http://${ep.host}:${ep.port}${options.path ?? "/"}`, {
      method: options.method ?? "GET",
      ...(options.body !== undefined ? { body: options.body } : {}),
      headers: {
        ...options.headers,
        [ep.header.name]: ep.header.value,
        ...(auth === null ? {} : { [GATEWAY_AUTH_HEADER]: auth }),
      },
      dispatcher,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
  } finally {
    await dispatcher?.close();
  }
}

/** A revision key that the pool places on its namespace's process `slot` (tests pick co-located revisions). */
export function keyOnSlot(pool: WorkerdPool, prefix: string, slot: number): string {
  for (let i = 0; i < 10_000; i++) {
    const key = `${prefix}-${i}`;
    if (rendezvousSlot(key, pool.options.processes) === slot) return key;
  }
  throw new Error(`no key with prefix ${prefix} maps to slot ${slot}`);
}

/** A loopback HTTP server that counts the requests it receives. */
export async function countingServer(): Promise<{
  url: string;
  hits: () => number;
  close: () => Promise<void>;
}> {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    res.end("reached");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    hits: () => hits,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** True while a process with this pid runs (a zombie nobody reaped yet counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 3, after the parenthesised command name, is the state.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** CPU time (user + system, ms) of a process's main thread, which runs workerd's JavaScript; undefined once gone. */
export function cpuMsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}
