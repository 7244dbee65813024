/**
 * One long-lived Docker events subscription for the containers of one agent
 * (filtered by label), instead of a wait() request per container. It
 * reconnects on its own, replaying from the last event seen, and says so with
 * "reconnect" so the owner can re-check what it tracks.
 */
import { EventEmitter } from "node:events";
import type Docker from "dockerode";

export interface DieEvent {
  containerId: string;
  exitCode: number | undefined;
}

interface Events {
  die: [DieEvent];
  oom: [{ containerId: string }];
  reconnect: [];
  warning: [Error];
}

interface RawEvent {
  Type?: string;
  Action?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
}

export class ContainerEvents extends EventEmitter<Events> {
  readonly #docker: Docker;
  readonly #labels: string[];
  #stream: NodeJS.ReadableStream | undefined;
  #opening: Promise<void> | undefined;
  #closed = false;
  #lastTime: number | undefined;
  #retry: NodeJS.Timeout | undefined;

  constructor(docker: Docker, labels: string[]) {
    super();
    this.#docker = docker;
    this.#labels = labels;
  }

  /** Resolves once the subscription is live (events from now on are seen). */
  open(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("container events closed"));
    if (this.#stream) return Promise.resolve();
    this.#opening ??= this.#subscribe().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    const s = this.#stream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    this.#stream = undefined;
    s?.destroy?.();
  }

  async #subscribe(): Promise<void> {
    const stream = await this.#docker.getEvents({
      ...(this.#lastTime === undefined ? {} : { since: this.#lastTime }),
      filters: { type: ["container"], event: ["die", "oom"], label: this.#labels },
    });
    if (this.#closed) {
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      return;
    }
    this.#stream = stream;
    let buf = "";
    stream.on("data", (chunk: Buffer | string) => {
      buf += chunk.toString();
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) this.#dispatch(line);
      }
    });
    const lost = (err?: Error) => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      if (this.#closed) return;
      this.emit("warning", new Error(`docker events stream lost: ${err?.message ?? "ended"}`));
      this.#scheduleRetry();
    };
    stream.on("error", lost);
    stream.on("end", () => lost());
    stream.on("close", () => lost());
  }

  #scheduleRetry(): void {
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      this.open().then(
        () => this.emit("reconnect"),
        (err: Error) => {
          this.emit("warning", err);
          this.#scheduleRetry();
        },
      );
    }, 250);
    this.#retry.unref();
  }

  #dispatch(line: string): void {
    let ev: RawEvent;
    try {
      ev = JSON.parse(line) as RawEvent;
    } catch {
      return;
    }
    if (typeof ev.time === "number") this.#lastTime = ev.time;
    const containerId = ev.Actor?.ID ?? ev.id;
    if (ev.Type !== "container" || !containerId) return;
    if (ev.Action === "die") {
      const code = ev.Actor?.Attributes?.exitCode;
      this.emit("die", { containerId, exitCode: code === undefined ? undefined : Number(code) });
    } else if (ev.Action === "oom") {
      this.emit("oom", { containerId });
    }
  }
}
