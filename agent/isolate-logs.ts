/**
 * Workers' console output for `skiff logs`: the workerd pool hands over each
 * console line with its revision (agent/isolate/router.js marks them); this
 * keeps the last lines of each revision in memory and tells followers of new
 * ones. Nothing is written anywhere: as with containers, logs stay where the
 * instances run. Bounded: MAX_LINES per revision, MAX_REVISIONS revisions
 * (the least recently written go first), lines cut at MAX_LINE_CHARS.
 */
import { MAX_LINE_CHARS, MAX_TAIL_LINES } from "../src/fleet/log-limits.ts";
import type { WorkerdPool, WorkerLogEvent } from "./isolate/index.ts";

export interface WorkerLogLine {
  stream: "stdout" | "stderr";
  /** RFC 3339, when the agent read it. */
  time: string;
  text: string;
}

const MAX_LINES = MAX_TAIL_LINES;
const MAX_REVISIONS = 1_000;

export class IsolateLogs {
  /** Revision key "{ns}/{rev}" -> its last lines, oldest first (insertion order: least recently written first). */
  readonly #lines = new Map<string, WorkerLogLine[]>();
  readonly #followers = new Map<string, Set<(line: WorkerLogLine) => void>>();

  /** Listen to a pool's worker console lines. */
  static of(pool: WorkerdPool): IsolateLogs {
    const logs = new IsolateLogs();
    pool.on("workerLog", (e) => logs.push(e));
    return logs;
  }

  push(e: WorkerLogEvent): void {
    const line: WorkerLogLine = {
      stream: e.stream,
      time: new Date().toISOString(),
      text: e.text.slice(0, MAX_LINE_CHARS),
    };
    let lines = this.#lines.get(e.revision);
    if (lines) this.#lines.delete(e.revision);
    else {
      lines = [];
      if (this.#lines.size >= MAX_REVISIONS) {
        const oldest = this.#lines.keys().next().value;
        if (oldest !== undefined) this.#lines.delete(oldest);
      }
    }
    lines.push(line);
    if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
    this.#lines.set(e.revision, lines);
    for (const f of this.#followers.get(e.revision) ?? []) f(line);
  }

  /** The last `n` lines of a revision, oldest first. */
  tail(revision: string, n: number): WorkerLogLine[] {
    return n <= 0 ? [] : (this.#lines.get(revision) ?? []).slice(-n);
  }

  /** Call `fn` with each new line of a revision until the returned function is called. */
  follow(revision: string, fn: (line: WorkerLogLine) => void): () => void {
    let set = this.#followers.get(revision);
    if (!set) {
      set = new Set();
      this.#followers.set(revision, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.#followers.delete(revision);
    };
  }
}
