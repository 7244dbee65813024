/**
 * The CLI's HTTP/1.1 client for http:// URLs, straight over node:net.
 *
 * Why not fetch or node:http: loading either costs 100-150 ms of CPU at start
 * (measured in bench/cli-start.ts), most of a command's budget, while a
 * request to the API is a single exchange that this small client covers:
 * one request per connection (Connection: close), bodies framed by
 * Content-Length, chunked encoding or the end of the connection. https://
 * URLs go through fetch (TLS is not worth re-doing here), or node:https
 * when a CA file is to be trusted (fetch takes no CA of its own).
 */
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import { UsageError } from "../../src/errors.ts";

export interface HttpRequest {
  method: string;
  headers: Record<string, string>;
  body?: string | undefined;
  signal?: AbortSignal | undefined;
  /** https only: trust this CA (PEM file) instead of the system's roots. */
  caFile?: string | undefined;
}

export interface HttpResponse {
  status: number;
  statusText: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The body, chunk by chunk as it arrives (a watch streams for minutes). */
  body: AsyncIterable<Buffer>;
}

/** Most bytes of a status line and headers; an API never sends more. */
const MAX_HEAD_BYTES = 64 * 1024;

export async function httpRequest(url: URL, req: HttpRequest): Promise<HttpResponse> {
  if (url.protocol === "https:") {
    return req.caFile ? viaHttps(url, req, req.caFile) : viaFetch(url, req);
  }
  if (url.protocol !== "http:") {
    throw new TypeError(`unsupported API URL scheme ${url.protocol} (use http:// or https://)`);
  }
  return viaSocket(url, req);
}

async function viaFetch(url: URL, req: HttpRequest): Promise<HttpResponse> {
  const res = await fetch(url, {
    method: req.method,
    headers: req.headers,
    body: req.body ?? null,
    signal: req.signal ?? null,
  });
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    headers[k] = v;
  });
  const stream = res.body;
  return {
    status: res.status,
    statusText: res.statusText,
    headers,
    body: (async function* () {
      if (!stream) return;
      for await (const chunk of stream) yield Buffer.from(chunk);
    })(),
  };
}

/** https trusting one CA: node:https (loaded only here), the response streamed as it arrives. */
async function viaHttps(url: URL, req: HttpRequest, caFile: string): Promise<HttpResponse> {
  let ca: string;
  try {
    ca = await readFile(caFile, "utf8");
  } catch (err) {
    throw new UsageError(
      `cannot read the CA file ${caFile} (SKIFF_CA_FILE or caFile in the CLI settings): ${(err as Error).message}`,
    );
  }
  const { request } = await import("node:https");
  return new Promise((resolve, reject) => {
    const r = request(url, { method: req.method, headers: req.headers, ca }, (res) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) {
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
      }
      resolve({
        status: res.statusCode ?? 0,
        statusText: res.statusMessage ?? "",
        headers,
        body: res as AsyncIterable<Buffer>,
      });
    });
    r.on("error", reject);
    if (req.signal) {
      if (req.signal.aborted) r.destroy(req.signal.reason as Error);
      req.signal.addEventListener("abort", () => r.destroy(req.signal?.reason as Error), {
        once: true,
      });
    }
    r.end(req.body);
  });
}

/** A queue that turns socket events into an async iterator. */
class Chunks implements AsyncIterable<Buffer> {
  /** Called when the reader stops early (a watch that got what it waited for). */
  cancel: () => void = () => {};
  #items: Buffer[] = [];
  #done = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  push(b: Buffer): void {
    if (b.length) this.#items.push(b);
    this.#notify();
  }
  end(err?: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = err;
    this.#notify();
  }
  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    try {
      for (;;) {
        const next = this.#items.shift();
        if (next) {
          yield next;
          continue;
        }
        if (this.#done) {
          if (this.#error) throw this.#error;
          return;
        }
        await new Promise<void>((r) => {
          this.#wake = r;
        });
      }
    } finally {
      // Stopped reading before the end: close the connection, or it keeps the process alive.
      if (!this.#done) this.cancel();
    }
  }
}

function viaSocket(url: URL, req: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port || 80);
    const socket = connect({ host, port });
    const body = new Chunks();
    body.cancel = () => {
      body.end();
      socket.destroy();
    };
    let head: Buffer | undefined = Buffer.alloc(0);
    let settled = false;
    const fail = (err: Error) => {
      socket.destroy();
      body.end(err);
      if (!settled) {
        settled = true;
        reject(err);
      }
    };
    const onAbort = () => {
      const reason = req.signal?.reason;
      fail(reason instanceof Error ? reason : new Error("aborted"));
    };
    if (req.signal?.aborted) return onAbort();
    req.signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("close", () => req.signal?.removeEventListener("abort", onAbort));

    socket.once("connect", () => {
      const lines = [`${req.method} ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
      lines.push("connection: close");
      for (const [k, v] of Object.entries(req.headers)) lines.push(`${k}: ${v}`);
      const payload = req.body === undefined ? undefined : Buffer.from(req.body);
      if (payload) lines.push(`content-length: ${payload.length}`);
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (payload) socket.write(payload);
    });

    let decode: ((chunk: Buffer) => void) | undefined;
    socket.on("data", (chunk: Buffer) => {
      if (decode) return decode(chunk);
      head = Buffer.concat([head!, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > MAX_HEAD_BYTES) fail(new Error("response headers too large"));
        return;
      }
      const [statusLine, ...headerLines] = head.subarray(0, end).toString("latin1").split("\r\n");
      const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(statusLine ?? "");
      if (!m) return fail(new Error(`not an HTTP response: ${statusLine?.slice(0, 80)}`));
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const i = line.indexOf(":");
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const rest = head.subarray(end + 4);
      head = undefined;
      decode = framing(headers, body, () => socket.destroy(), fail);
      settled = true;
      resolve({ status: Number(m[1]), statusText: m[2] ?? "", headers, body });
      decode(rest);
    });
    socket.once("end", () => {
      if (!settled) return fail(new Error("connection closed before a response"));
      // Framed bodies end on their own; an unframed one ends with the connection.
      body.end();
    });
    socket.once("error", fail);
  });
}

/** The body decoder for the response's framing; calls done() once the body is complete. */
function framing(
  headers: Record<string, string>,
  body: Chunks,
  done: () => void,
  fail: (err: Error) => void,
): (chunk: Buffer) => void {
  const finish = () => {
    body.end();
    done();
  };
  if (/\bchunked\b/i.test(headers["transfer-encoding"] ?? "")) {
    let buf: Buffer = Buffer.alloc(0);
    let need = -1; // bytes of chunk data still expected; -1: reading a size line
    return (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (need < 0) {
          const eol = buf.indexOf("\r\n");
          if (eol < 0) return;
          const size = Number.parseInt(buf.subarray(0, eol).toString("latin1"), 16);
          if (!Number.isFinite(size) || size < 0) return fail(new Error("bad chunked encoding"));
          buf = buf.subarray(eol + 2);
          if (size === 0) return finish();
          need = size;
        }
        if (buf.length < need + 2) return;
        body.push(buf.subarray(0, need));
        buf = buf.subarray(need + 2);
        need = -1;
      }
    };
  }
  const length = headers["content-length"];
  if (length !== undefined) {
    let left = Number(length);
    if (left === 0) {
      queueMicrotask(finish);
      return () => {};
    }
    return (chunk) => {
      if (left <= 0) return;
      const part = chunk.subarray(0, left);
      left -= part.length;
      body.push(part);
      if (left === 0) finish();
    };
  }
  return (chunk) => body.push(chunk);
}

/** The whole body as text. */
export async function readText(res: HttpResponse): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of res.body) parts.push(chunk);
  return Buffer.concat(parts).toString("utf8");
}

/** The body as lines (a watch stream: one JSON event per line). */
export async function* readLines(res: HttpResponse): AsyncIterable<string> {
  const utf8 = new TextDecoder();
  let rest = "";
  for await (const chunk of res.body) {
    rest += utf8.decode(chunk, { stream: true });
    let nl = rest.indexOf("\n");
    while (nl >= 0) {
      const line = rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
      if (line) yield line;
      nl = rest.indexOf("\n");
    }
  }
  if (rest.trim()) yield rest.trim();
}
