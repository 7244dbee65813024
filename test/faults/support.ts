/**
 * The fault suite's instruments: a bounded closed-loop load that counts every
 * request (sent / succeeded / failed, the slowest answer, what failures
 * said), and the record of each scenario's figures, written to
 * `.cache/faults/results.json` for `npm run faults:doc`, which renders
 * docs/reliability.md from them (scripts/faults-doc.ts). The suite never
 * writes into the repository itself.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent as HttpAgent, request } from "undici";
import { waitFor } from "../support/wait.ts";

export const RESULTS_FILE = join(
  dirname(fileURLToPath(import.meta.url)),
  "../../.cache/faults/results.json",
);

export interface Counts {
  sent: number;
  succeeded: number;
  failed: number;
  /** Requests started and not answered yet (at the moment of the snapshot). */
  inflight: number;
  slowestMs: number;
  failureSamples: string[];
  /** First line of 2xx bodies -> count. */
  bodies: Record<string, number>;
}

export interface CountedLoad {
  /** Stop sending, wait for every request in flight (each bounded by its timeout), report. */
  stop(): Promise<Counts>;
  current(): Counts;
}

/**
 * `connections` workers, each sending its next GET when the previous one was
 * answered (`pauseMs` between), spread over `gateways` round-robin. Every
 * request is bounded by `timeoutMs`; the whole load by `maxMs`.
 */
export function countedLoad(options: {
  gateways: () => string[];
  host: string;
  path?: string;
  connections: number;
  pauseMs?: number;
  timeoutMs?: number;
  maxMs?: number;
}): CountedLoad {
  const { host, path = "/", connections, pauseMs = 0, timeoutMs = 10_000 } = options;
  const deadline = Date.now() + (options.maxMs ?? 60_000);
  const dispatcher = new HttpAgent({ connections: connections * 2, keepAliveTimeout: 4_000 });
  const c: Counts = {
    sent: 0,
    succeeded: 0,
    failed: 0,
    inflight: 0,
    slowestMs: 0,
    failureSamples: [],
    bodies: {},
  };
  let stopped = false;
  const fail = (what: string) => {
    c.failed++;
    if (c.failureSamples.length < 10) c.failureSamples.push(what);
  };
  const workers = Array.from({ length: connections }, async (_, i) => {
    let n = i;
    while (!stopped && Date.now() < deadline) {
      const list = options.gateways();
      const gateway = list[n++ % list.length]!;
      c.sent++;
      c.inflight++;
      const started = performance.now();
      try {
        const res = await request(`${gateway}${path}`, {
          headers: { host },
          dispatcher,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        const body = (await res.body.text()).trim();
        if (res.statusCode >= 200 && res.statusCode < 300) {
          c.succeeded++;
          const line = body.split("\n")[0]!;
          c.bodies[line] = (c.bodies[line] ?? 0) + 1;
        } else fail(`HTTP ${res.statusCode} via ${gateway}: ${body.slice(0, 160)}`);
      } catch (err) {
        fail(`error via ${gateway}: ${(err as Error).message}`);
      } finally {
        c.inflight--;
        c.slowestMs = Math.max(c.slowestMs, performance.now() - started);
      }
      // The load's pace, not a wait for state.
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  });
  const snapshot = (): Counts => ({
    ...c,
    failureSamples: [...c.failureSamples],
    bodies: { ...c.bodies },
  });
  return {
    async stop() {
      stopped = true;
      await Promise.all(workers);
      await dispatcher.close().catch(() => {});
      return snapshot();
    },
    current: snapshot,
  };
}

/** Wait until `load` has had `n` more answers (any status) than now: proof that traffic flowed on. */
export async function answered(load: CountedLoad, n: number, timeoutMs = 30_000): Promise<void> {
  const count = () => {
    const c = load.current();
    return c.succeeded + c.failed;
  };
  const from = count();
  await waitFor(`${n} more answers`, () => count() >= from + n, timeoutMs, 20);
}

/** One row of docs/reliability.md. */
export interface ScenarioResult {
  /** Stable key, e.g. "agent-sigkill". */
  id: string;
  scenario: string;
  sent: number;
  succeeded: number;
  failed: number;
  /** Milliseconds from the fault to `recovered`, or undefined when nothing had to recover. */
  recoveryMs?: number;
  /** What "recovered" means for this scenario. */
  recovered: string;
  /** What else was measured or allowed (e.g. "failures allowed: in flight on the dead host"). */
  notes: string;
}

const results: ScenarioResult[] = [];

/** Print a scenario's counts and keep them for the results file. */
export function report(r: ScenarioResult): void {
  results.push(r);
  const recovery = r.recoveryMs === undefined ? "-" : `${Math.round(r.recoveryMs)} ms`;
  console.log(
    `[fault] ${r.scenario}: sent ${r.sent}, succeeded ${r.succeeded}, failed ${r.failed}, recovery ${recovery} (${r.recovered}); ${r.notes}`,
  );
}

/** Write this run's rows (merged over an earlier run's, by id) to .cache/faults/results.json. */
export async function writeResults(): Promise<void> {
  if (results.length === 0) return;
  let earlier: { results?: ScenarioResult[] } = {};
  try {
    earlier = JSON.parse(await readFile(RESULTS_FILE, "utf8"));
  } catch {}
  const byId = new Map((earlier.results ?? []).map((r) => [r.id, r]));
  for (const r of results) byId.set(r.id, r);
  await mkdir(dirname(RESULTS_FILE), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    `${JSON.stringify({ at: new Date().toISOString(), results: [...byId.values()] }, null, 2)}\n`,
  );
}
