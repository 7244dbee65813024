/**
 * Answers `skiff logs` requests (src/fleet/logs.ts) for the instances this
 * agent holds: containers' output read from the Docker engine (stdout and
 * stderr), workers' console lines from memory (isolate-logs.ts: one stream per
 * revision, which all its isolate instances here share), the last
 * `tailLines`, then new lines while following, published in batches on the
 * request's reply channel. Bounded: at most
 * MAX_REQUESTS requests at once, lines cut at MAX_LINE_CHARS, every stream
 * closed at the request's deadline or as soon as nobody listens any more.
 */
import type Docker from "dockerode";
import type { Redis } from "ioredis";
import { MAX_LINE_CHARS } from "../src/fleet/log-limits.ts";
import {
  type LogLine,
  type LogReply,
  type LogRequest,
  logChannels,
  logRequestSchema,
} from "../src/fleet/logs.ts";
import type { InstanceStatus } from "../src/fleet/types.ts";
import type { Logger } from "../src/logging.ts";
import { RedisSubscriber } from "../src/redis/subscriber.ts";
import { labelKeys } from "./container/spec.ts";
import type { IsolateLogs, WorkerLogLine } from "./isolate-logs.ts";

export interface LogRelayOptions {
  agentId: string;
  redis: Redis;
  prefix: string;
  /** Absent: no containers here. */
  docker?: Docker | undefined;
  /** Absent: no isolates here. */
  isolateLogs?: IsolateLogs | undefined;
  /** What the agent holds now (only these instances' containers are read). */
  instances: () => InstanceStatus[];
  logger: Logger;
  /** Container label prefix (ContainerRuntime's labelPrefix). */
  labelPrefix?: string;
}

const MAX_REQUESTS = 16;
const BATCH_MS = 100;
const BATCH_LINES = 200;

export class LogRelay {
  readonly #o: LogRelayOptions;
  readonly #subscriber: RedisSubscriber;
  readonly #active = new Map<string, AbortController>();
  readonly #keys: ReturnType<typeof labelKeys>;

  constructor(options: LogRelayOptions) {
    this.#o = options;
    this.#keys = labelKeys(options.labelPrefix ?? "skiff.");
    this.#subscriber = new RedisSubscriber({
      redis: options.redis,
      name: "logs",
      logger: options.logger,
    });
  }

  async start(): Promise<void> {
    await this.#subscriber.subscribe(logChannels(this.#o.prefix).requests, (message) => {
      let request: LogRequest;
      try {
        request = logRequestSchema.parse(JSON.parse(message));
      } catch {
        return;
      }
      void this.#serve(request).catch((err: unknown) =>
        this.#o.logger.warn({ err, request: request.id }, "log request failed"),
      );
    });
  }

  async close(): Promise<void> {
    for (const abort of this.#active.values()) abort.abort();
    await this.#subscriber.close();
  }

  async #serve(request: LogRequest): Promise<void> {
    const wanted = new Set(request.revisions);
    const held = this.#o
      .instances()
      .filter(
        (i) =>
          (i.runtime === "container" ? this.#o.docker : this.#o.isolateLogs) !== undefined &&
          i.namespace === request.namespace &&
          wanted.has(i.revision),
      );
    if (held.length === 0) return; // Only agents holding instances answer.
    const reply = logChannels(this.#o.prefix).reply(request.id);
    const publish = (body: LogReply) => this.#o.redis.publish(reply, JSON.stringify(body));
    const agent = this.#o.agentId;
    if (this.#active.size >= MAX_REQUESTS) {
      await publish({ agent, end: true, instances: 0 });
      return;
    }
    const abort = new AbortController();
    this.#active.set(request.id, abort);
    const deadline = setTimeout(() => abort.abort(), Math.max(0, request.untilMs - Date.now()));
    let batch: LogLine[] = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = async () => {
      clearTimeout(timer);
      timer = undefined;
      if (batch.length === 0) return;
      const lines = batch;
      batch = [];
      // Nobody listens any more (the client left): stop reading.
      if ((await publish({ agent, lines })) === 0) abort.abort();
    };
    const push = (line: LogLine) => {
      batch.push(line);
      if (batch.length >= BATCH_LINES) void flush();
      else timer ??= setTimeout(() => void flush(), BATCH_MS);
    };
    try {
      const containers = this.#o.docker
        ? await this.#containers(
            request.namespace,
            held.filter((i) => i.runtime === "container"),
          )
        : [];
      const workers = this.#workers(held.filter((i) => i.runtime === "isolate"));
      await Promise.all([
        ...containers.map((c) => this.#read(c, request, abort.signal, push).catch(() => {})),
        ...workers.map((w) => this.#readWorker(w, request, abort.signal, push)),
      ]);
      await flush();
      await publish({ agent, end: true, instances: containers.length + workers.length });
    } finally {
      clearTimeout(deadline);
      clearTimeout(timer);
      this.#active.delete(request.id);
    }
  }

  /** One stream per held worker revision (its instances here share one isolate registration). */
  #workers(held: InstanceStatus[]): { instance: string; revision: string; key: string }[] {
    const byRevision = new Map<string, { instance: string; revision: string; key: string }>();
    for (const i of held) {
      if (!byRevision.has(i.revision)) {
        byRevision.set(i.revision, {
          instance: i.id,
          revision: i.revision,
          key: `${i.namespace}/${i.revision}`,
        });
      }
    }
    return [...byRevision.values()];
  }

  async #readWorker(
    w: { instance: string; revision: string; key: string },
    request: LogRequest,
    signal: AbortSignal,
    push: (line: LogLine) => void,
  ): Promise<void> {
    const logs = this.#o.isolateLogs;
    if (!logs || signal.aborted) return;
    const base = { agent: this.#o.agentId, instance: w.instance, revision: w.revision };
    const send = (l: WorkerLogLine) =>
      push({ ...base, stream: l.stream, time: l.time, text: l.text });
    for (const l of logs.tail(w.key, request.tailLines)) send(l);
    if (!request.follow) return;
    await new Promise<void>((resolve) => {
      const stop = logs.follow(w.key, send);
      signal.addEventListener(
        "abort",
        () => {
          stop();
          resolve();
        },
        { once: true },
      );
    });
  }

  /** This agent's containers of the held instances. */
  async #containers(namespace: string, held: InstanceStatus[]) {
    const k = this.#keys;
    const ids = new Map(held.map((i) => [i.id, i.revision]));
    const docker = this.#o.docker;
    if (!docker) return [];
    const list = await docker.listContainers({
      all: true,
      filters: {
        label: [
          `${k.managed}=true`,
          `${k.owner}=${this.#o.agentId}`,
          `${k.namespace}=${namespace}`,
        ],
      },
    });
    return list.flatMap((c) => {
      const instance = c.Labels[k.instance];
      const revision = instance ? ids.get(instance) : undefined;
      return instance && revision ? [{ id: c.Id, instance, revision }] : [];
    });
  }

  async #read(
    c: { id: string; instance: string; revision: string },
    request: LogRequest,
    signal: AbortSignal,
    push: (line: LogLine) => void,
  ): Promise<void> {
    if (signal.aborted) return;
    const docker = this.#o.docker;
    if (!docker) return;
    const container = docker.getContainer(c.id);
    const base = { agent: this.#o.agentId, instance: c.instance, revision: c.revision };
    const frames = new FrameReader((stream, text) => {
      const match = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) (.*)$/s.exec(text);
      const line: LogLine = {
        ...base,
        stream,
        text: (match?.[2] ?? text).slice(0, MAX_LINE_CHARS),
      };
      if (match?.[1]) line.time = match[1];
      push(line);
    });
    const options = { stdout: true, stderr: true, timestamps: true, tail: request.tailLines };
    if (!request.follow) {
      frames.write(await container.logs({ ...options, follow: false }));
      frames.end();
      return;
    }
    const stream = (await container.logs({ ...options, follow: true })) as NodeJS.ReadableStream & {
      destroy(): void;
    };
    await new Promise<void>((resolve) => {
      const stop = () => {
        stream.destroy();
        resolve();
      };
      signal.addEventListener("abort", stop, { once: true });
      stream.on("data", (chunk: Buffer) => frames.write(chunk));
      stream.on("error", stop);
      stream.on("end", () => {
        frames.end();
        signal.removeEventListener("abort", stop);
        resolve();
      });
    });
  }
}

/**
 * Docker's multiplexed log frames ([stream, 0, 0, 0, size BE] + payload),
 * split into lines per stream, across chunk boundaries.
 */
class FrameReader {
  #buf: Buffer = Buffer.alloc(0);
  readonly #partial = { stdout: "", stderr: "" };
  readonly #onLine: (stream: "stdout" | "stderr", text: string) => void;

  constructor(onLine: (stream: "stdout" | "stderr", text: string) => void) {
    this.#onLine = onLine;
  }

  write(chunk: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    while (this.#buf.length >= 8) {
      const size = this.#buf.readUInt32BE(4);
      if (this.#buf.length < 8 + size) break;
      const stream = this.#buf[0] === 2 ? "stderr" : "stdout";
      const text = this.#partial[stream] + this.#buf.subarray(8, 8 + size).toString("utf8");
      this.#buf = this.#buf.subarray(8 + size);
      const lines = text.split("\n");
      this.#partial[stream] = (lines.pop() ?? "").slice(0, MAX_LINE_CHARS);
      for (const line of lines) this.#onLine(stream, line);
    }
  }

  end(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.#partial[stream]) this.#onLine(stream, this.#partial[stream]);
      this.#partial[stream] = "";
    }
  }
}
