/**
 * The load runner: `wrk` (one thread, pinned to core 0 beside the backend),
 * its output parsed, and interleaved trials of several targets so that a
 * slow moment of the machine hits every target alike.
 */
import { once } from "node:events";
import { HOST } from "./fleet.ts";
import { startProcess } from "./processes.ts";

interface WrkResult {
  rps: number;
  requests: number;
  p50ms: number;
  errors: number;
}

/** Medians over the trials of one target, and every trial's figure (req/s, or p50 at -c1). */
export interface TrialResult {
  rps: number;
  p50ms: number;
  errors: number;
  all: number[];
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : n;
}

export async function wrk(url: string, connections: number, seconds: number): Promise<WrkResult> {
  const args = [
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    "-H",
    `Host: ${HOST}`,
    url,
  ];
  const child = startProcess("wrk", args, 0);
  let out = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += String(c);
  });
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${out}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sock ? sock.slice(1).reduce((s, x) => s + Number(x), 0) : 0);
  return {
    rps,
    requests,
    p50ms: p50 ? toMs(p50[1] as string, p50[2] as string) : Number.NaN,
    errors,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** `count` interleaved trials of several targets, after a 1 s warm-up of each. */
export async function trials(
  targets: Record<string, string>,
  connections: number,
  seconds: number,
  count: number,
): Promise<Record<string, TrialResult>> {
  const acc: Record<string, WrkResult[]> = {};
  for (const [name, url] of Object.entries(targets)) {
    acc[name] = [];
    await wrk(url, connections, 1); // warm-up
  }
  for (let t = 0; t < count; t++) {
    for (const [name, url] of Object.entries(targets)) {
      const r = await wrk(url, connections, seconds);
      (acc[name] as WrkResult[]).push(r);
      console.log(
        `  ${name.padEnd(22)} -c${connections} trial ${t + 1}: ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50ms.toFixed(3)} ms  errors ${r.errors}`,
      );
    }
  }
  const out: Record<string, TrialResult> = {};
  for (const [name, rs] of Object.entries(acc)) {
    out[name] = {
      rps: median(rs.map((r) => r.rps)),
      p50ms: median(rs.map((r) => r.p50ms)),
      errors: rs.reduce((s, r) => s + r.errors, 0),
      all: rs.map((r) => (connections === 1 ? r.p50ms : r.rps)),
    };
  }
  return out;
}
