/**
 * The loopback HTTP service the routers fetch revision code from (their CODE
 * service binding). Each fetch is one new loader entry in the asking process,
 * which is how the pool counts entries for recycling and cold starts for
 * metrics. A per-pool secret keeps other local processes from reading code.
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CodeRegistry } from "./registry.ts";

export interface CodeServerOptions {
  registry: CodeRegistry;
  token: string;
  /** Called when a process loads a revision (before the code is sent). */
  onLoad: (processId: string, revision: string) => void;
}

export interface CodeServer {
  port: number;
  close(): Promise<void>;
}

const PREFIX = "/code/";

function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function handle(options: CodeServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const token = req.headers["x-skiff-token"];
  if (!sameSecret(typeof token === "string" ? token : undefined, options.token)) {
    res.writeHead(403).end();
    return;
  }
  const url = req.url ?? "";
  if (req.method !== "GET" || !url.startsWith(PREFIX)) {
    res.writeHead(404).end();
    return;
  }
  let revision: string;
  try {
    revision = decodeURIComponent(url.slice(PREFIX.length));
  } catch {
    res.writeHead(400).end();
    return;
  }
  const payload = options.registry.payload(revision);
  if (payload === undefined) {
    res.writeHead(404).end();
    return;
  }
  const processId = req.headers["x-skiff-process"];
  options.onLoad(typeof processId === "string" ? processId : "", revision);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
  });
  res.end(payload);
}

export async function startCodeServer(options: CodeServerOptions): Promise<CodeServer> {
  const server: Server = createServer((req, res) => handle(options, req, res));
  // Routers keep their connection to us open; never let it hold stop() up.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
