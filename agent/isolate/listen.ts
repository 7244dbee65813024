/**
 * Listening sockets owned by the agent and handed to workerd (`--socket-fd`).
 *
 * Holding the socket in the agent is what lets a process be replaced on the
 * same port: a respawned or recycled workerd inherits the same descriptor, and
 * connections that arrive while no process is accepting wait in the backlog
 * instead of being refused. The agent must hold the descriptor *without*
 * accepting on it, which Node cannot do for a socket it listens on itself. So a
 * short-lived helper process binds and listens, then sends the raw handles over
 * IPC; Node hands a raw (`net.Native`) handle over as an unwatched descriptor.
 */
import { spawn } from "node:child_process";
import { UnavailableError } from "../../src/errors.ts";

/** The raw libuv TCP handle Node gives us; only what we use of it. */
export interface ListenHandle {
  readonly fd: number;
  close(callback?: () => void): void;
}

export interface ListeningSocket {
  port: number;
  handle: ListenHandle;
}

// CommonJS, run with `node -e`: argv[1] is JSON [host, ports].
const HELPER = `
const net = require("node:net");
// The agent went away mid-handshake: nobody will take the sockets, so do not linger.
process.once("disconnect", () => process.exit(0));
const [host, ports] = JSON.parse(process.argv[1]);
let left = ports.length;
ports.forEach((port, index) => {
  const server = net.createServer();
  server.on("error", (err) => {
    process.send({ index, error: String(err && err.message) }, () => process.exit(1));
  });
  server.listen({ host, port, exclusive: true, backlog: 4096 }, () => {
    process.send({ index, port: server.address().port }, server._handle, () => {
      if (--left === 0) process.exit(0);
    });
  });
});
`;

interface HelperMessage {
  index: number;
  port?: number;
  error?: string;
}

/** Bind one listening socket per requested port (0 = ephemeral) on `host`. */
export function openListeningSockets(host: string, ports: number[]): Promise<ListeningSocket[]> {
  return new Promise((resolve, reject) => {
    const sockets: ListeningSocket[] = [];
    let failure: Error | undefined;
    const child = spawn(process.execPath, ["-e", HELPER, JSON.stringify([host, ports])], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      env: {},
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("message", (message: HelperMessage, handle: unknown) => {
      if (message.error !== undefined || handle === undefined || message.port === undefined) {
        failure ??= new UnavailableError(
          `cannot listen on ${host}:${ports[message.index]}: ${message.error ?? "no handle received"}`,
        );
        return;
      }
      sockets[message.index] = { port: message.port, handle: handle as ListenHandle };
    });
    child.on("error", (err) => {
      failure ??= err;
      // The helper never started: no "exit" follows.
      if (child.pid === undefined) {
        reject(
          new UnavailableError(
            `cannot listen on ${host}: the socket helper could not start: ${err.message}`,
          ),
        );
      }
    });
    child.on("exit", (code, signal) => {
      const received = ports.filter((_, i) => sockets[i] !== undefined).length;
      if (!failure && received === ports.length) {
        resolve(sockets);
        return;
      }
      for (const socket of sockets) socket?.handle.close();
      // Say how it ended: a helper killed or out of descriptors leaves no stderr.
      const ended = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(
        failure ??
          new UnavailableError(
            `cannot listen on ${host}: the socket helper ${ended} after handing over ${received} of ${ports.length} sockets${stderr.trim() ? `: ${stderr.trim()}` : ""}`,
          ),
      );
    });
  });
}
