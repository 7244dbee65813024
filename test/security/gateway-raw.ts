/**
 * Raw-socket helpers for the gateway security tests: they send bytes no HTTP
 * client library would (duplicate Host, absolute-form targets, requests
 * smuggled after an upgrade) and read whatever comes back.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import type { TestScaler } from "../gateway/support.ts";

export interface RawConnection {
  socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves once `text` appears in what was received (or the socket closed). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<boolean>;
  /** Resolves when the server closed the connection (true) or after timeoutMs (false). */
  closed(timeoutMs?: number): Promise<boolean>;
  send(text: string): void;
  destroy(): void;
}

export async function rawConnect(gatewayUrl: string): Promise<RawConnection> {
  const { hostname, port } = new URL(gatewayUrl);
  const socket = connect(Number(port), hostname);
  await once(socket, "connect");
  let data = "";
  let isClosed = false;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of listeners) l();
  };
  socket.on("data", (chunk: Buffer) => {
    data += String(chunk);
    notify();
  });
  socket.on("error", () => {});
  socket.on("close", () => {
    isClosed = true;
    notify();
  });
  const until = (check: () => boolean, timeoutMs: number) =>
    new Promise<boolean>((resolve) => {
      if (check()) return resolve(true);
      const timer = setTimeout(() => {
        listeners.delete(l);
        resolve(check());
      }, timeoutMs);
      const l = () => {
        if (!check() && !isClosed) return;
        clearTimeout(timer);
        listeners.delete(l);
        resolve(check());
      };
      listeners.add(l);
    });
  return {
    socket,
    received: () => data,
    waitFor: (text, timeoutMs = 5_000) =>
      until(() => (typeof text === "string" ? data.includes(text) : text.test(data)), timeoutMs),
    closed: (timeoutMs = 5_000) => until(() => isClosed, timeoutMs),
    send: (text) => {
      if (!socket.destroyed) socket.write(text);
    },
    destroy: () => socket.destroy(),
  };
}

/** Send one raw request on a fresh connection; returns what came back by close or timeout. */
export async function rawRequest(gatewayUrl: string, text: string, timeoutMs = 5_000) {
  const c = await rawConnect(gatewayUrl);
  c.send(text);
  await c.waitFor(/\r\n\r\n/, timeoutMs);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(c.received())?.[1] ?? 0);
  c.destroy();
  return { status, text: c.received() };
}

/**
 * A stand-in for the agent's workerd router: one port shared by many
 * revisions, which serves whichever revision the `x-skiff-revision` header
 * names and records every request's revision and gateway-auth header. It
 * answers requests with `Upgrade: websocket` with a 101 and then echoes bytes;
 * any other request (even with Connection: upgrade) gets a plain keep-alive
 * answer, as workerd does.
 */
export interface SharedRouter {
  host: string;
  port: number;
  seen: { revision: string | undefined; auth: string | undefined; url: string | undefined }[];
  close(): Promise<void>;
}

export async function startSharedRouter(): Promise<SharedRouter> {
  const seen: SharedRouter["seen"] = [];
  const record = (req: IncomingMessage) => {
    const revision = req.headers["x-skiff-revision"];
    const auth = req.headers["x-skiff-gateway-auth"];
    seen.push({
      revision: Array.isArray(revision) ? revision.join(",") : revision,
      auth: Array.isArray(auth) ? auth.join(",") : auth,
      url: req.url,
    });
  };
  // Only WebSocket upgrades are switched; any other request (Connection: upgrade
  // included) is a plain request on a kept-alive connection, as workerd does.
  const server: Server = createServer(
    { shouldUpgradeCallback: (req) => req.headers.upgrade?.toLowerCase() === "websocket" },
    (req, res) => {
      record(req);
      req.resume();
      res.setHeader("content-type", "text/plain");
      res.end(`served revision=${req.headers["x-skiff-revision"] ?? "(none)"}\n`);
    },
  );
  server.on("upgrade", (req, socket) => {
    record(req);
    socket.on("error", () => socket.destroy());
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    socket.on("data", (chunk: Buffer) => socket.write(chunk));
  });
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    host: "127.0.0.1",
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Tenant a's app: the host an attacker knows, and its revision as the router's header names it. */
export const HOST_A = "app.tenant-a.localhost";
export const REV_A = "tenant-a/app-00001";
/** Tenant b's vault revision: what no request for tenant a may reach. */
export const REV_B = "tenant-b/vault-00001";

/** Route tenant a's app and tenant b's vault to isolate endpoints on one shared router, as one workerd serves two namespaces. */
export async function routeTwoTenants(scaler: TestScaler, router: SharedRouter): Promise<void> {
  await scaler.route("tenant-a", "app", [{ revision: "app-00001", percent: 100 }]);
  await scaler.route("tenant-b", "vault", [{ revision: "vault-00001", percent: 100 }]);
  await scaler.endpoint("tenant-a", "app-00001", router, {
    runtime: "isolate",
    header: { name: "x-skiff-revision", value: REV_A },
  });
  await scaler.endpoint("tenant-b", "vault-00001", router, {
    runtime: "isolate",
    header: { name: "x-skiff-revision", value: REV_B },
  });
}
