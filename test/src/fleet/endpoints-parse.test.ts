/** parseEndpoints: the one reader of a revision's endpoints hash (Fleet and the gateway's cache). */
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, test } from "vitest";
import { parseEndpoints } from "../../../src/fleet/endpoints.ts";
import type { Endpoint } from "../../../src/fleet/types.ts";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: pino({ level: "warn" }, sink) };
}

const endpoint = (instanceId: string): Endpoint => ({
  instanceId,
  agentId: "agent-1",
  runtime: "container",
  host: "127.0.0.2",
  port: 20001,
  protocol: "http1",
  containerConcurrency: 0,
  readyAt: 1,
});

describe("parseEndpoints", () => {
  test("a bad record is skipped with one log line naming it; the others are returned, sorted", async () => {
    const { lines, log } = capture();
    const hash = {
      b: JSON.stringify(endpoint("b")),
      broken: "{not json",
      wrong: JSON.stringify({ ...endpoint("wrong"), port: 0 }),
      a: JSON.stringify(endpoint("a")),
    };
    const eps = parseEndpoints(hash, log, { revision: "default/hello-00001" });
    expect(eps.map((e) => e.instanceId)).toEqual(["a", "b"]);
    await expect.poll(() => lines.length).toBe(2);
    expect(lines.map((l) => l.field).sort()).toEqual(["broken", "wrong"]);
    expect(lines.every((l) => l.revision === "default/hello-00001")).toBe(true);
  });

  test("a record of an agent older than protocol, containerConcurrency and readyAt gets their defaults", () => {
    const { protocol, containerConcurrency, readyAt, ...old } = endpoint("old");
    const [ep] = parseEndpoints({ old: JSON.stringify(old) }, capture().log);
    expect(ep).toEqual({ ...old, protocol: "http1", containerConcurrency: 0, readyAt: 0 });
  });
});
