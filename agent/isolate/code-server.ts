/**
 * The loopback HTTP service the routers fetch revision code from (their CODE
 * service binding). Each fetch is one new loader entry in the asking process,
 * which is how the pool counts entries for recycling and cold starts for
 * metrics. Every namespace's processes have their own token, and a token
 * only reads its own namespace's revisions: another local process (or one
 * namespace's workerd) cannot read code, nor another namespace's bundles.
 * Workers themselves never reach this server (their outbound network has no
 * loopback; only the router's CODE binding points here).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CodeRegistry } from "./registry.ts";

export interface CodeServerOptions {
  registry: CodeRegistry;
  /** The namespace whose processes hold this token; undefined: not a token we issued. */
  namespaceOf: (token: string) => string | undefined;
  /** Called when a process loads a revision (before the code is sent). */
  onLoad: (processId: string, revision: string) => void;
}

export interface CodeServer {
  port: number;
  close(): Promise<void>;
}

const PREFIX = "/code/";

function handle(options: CodeServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const token = req.headers["x-skiff-token"];
  const namespace = typeof token === "string" ? options.namespaceOf(token) : undefined;
  if (namespace === undefined) {
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
  // Another namespace's revision reads as unknown: its existence is not told either.
  const payload = revision.startsWith(`${namespace}/`)
    ? options.registry.payload(revision)
    : undefined;
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
