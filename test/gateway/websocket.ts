/**
 * A minimal RFC 6455 WebSocket echo server and client for the gateway tests
 * (text frames, masking, 16/64-bit lengths, close), so the test needs no
 * WebSocket package and can set the Host header itself.
 */
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type Backend, listenBackend } from "./support.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function accept(key: string): string {
  return createHash("sha1")
    .update(key + GUID)
    .digest("base64");
}

export function encodeFrame(payload: Buffer, opcode: number, mask: boolean): Buffer {
  const len = payload.length;
  const head: number[] = [0x80 | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    head.push((len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (key[i % 4] as number);
  return Buffer.concat([Buffer.from(head), key, body]);
}

/** Feeds bytes in, calls onFrame for each complete frame. */
export function frameReader(onFrame: (opcode: number, payload: Buffer) => void) {
  let buf = Buffer.alloc(0);
  return (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = (buf[0] as number) & 0x0f;
      const masked = ((buf[1] as number) & 0x80) !== 0;
      let len = (buf[1] as number) & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      const keyLen = masked ? 4 : 0;
      if (buf.length < offset + keyLen + len) return;
      const key = buf.subarray(offset, offset + keyLen);
      const payload = Buffer.from(buf.subarray(offset + keyLen, offset + keyLen + len));
      if (masked) {
        for (let i = 0; i < payload.length; i++) {
          payload[i] = (payload[i] as number) ^ (key[i % 4] as number);
        }
      }
      buf = buf.subarray(offset + keyLen + len);
      onFrame(opcode, payload);
    }
  };
}

/** An echo server: every text frame comes back; close is answered with close. */
export async function startWebSocketEcho(host = "127.0.0.1"): Promise<Backend> {
  const server = createServer((_req, res) => res.end("websocket only\n"));
  server.on("upgrade", (req, socket: Duplex) => {
    backend.hits++;
    backend.seen.push(req.headers);
    socket.on("error", () => socket.destroy());
    const key = req.headers["sec-websocket-key"];
    if (req.headers.upgrade?.toLowerCase() !== "websocket" || typeof key !== "string") {
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      return;
    }
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept(key)}\r\n\r\n`,
    );
    socket.on(
      "data",
      frameReader((opcode, payload) => {
        if (opcode === 0x8) socket.end(encodeFrame(payload, 0x8, false));
        else if (opcode === 0x1 || opcode === 0x2)
          socket.write(encodeFrame(payload, opcode, false));
      }),
    );
  });
  // Upgrades only come once it listens, when `backend` is set.
  const backend = await listenBackend(server, host);
  return backend;
}

/** Open a WebSocket through the gateway for `host`, send each message, collect the echoes. */
export async function wsRoundTrip(
  gatewayUrl: string,
  host: string,
  messages: string[],
): Promise<string[]> {
  const { hostname, port } = new URL(gatewayUrl);
  const socket: Socket = connect(Number(port), hostname);
  await once(socket, "connect");
  const key = randomBytes(16).toString("base64");
  socket.write(
    `GET /chat HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const replies: string[] = [];
  return new Promise<string[]>((resolve, reject) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    const read = frameReader((opcode, payload) => {
      if (opcode !== 0x1 && opcode !== 0x2) return;
      replies.push(String(payload));
      if (replies.length === messages.length) {
        socket.end(encodeFrame(Buffer.alloc(0), 0x8, true));
        resolve(replies);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`closed after ${replies.length} replies`)));
    socket.on("data", (chunk: Buffer) => {
      if (upgraded) return read(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const status = String(head.subarray(0, end));
      if (!status.startsWith("HTTP/1.1 101") || !status.includes(accept(key))) {
        reject(new Error(`no upgrade: ${status}`));
        socket.destroy();
        return;
      }
      upgraded = true;
      for (const m of messages) socket.write(encodeFrame(Buffer.from(m), 0x1, true));
      read(head.subarray(end + 4));
    });
  });
}
