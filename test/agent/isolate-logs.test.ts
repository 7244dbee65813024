/** The agent's memory of workers' console lines: bounded per revision and in revisions, followed live. */
import { describe, expect, it } from "vitest";
import { IsolateLogs } from "../../agent/isolate-logs.ts";
import { MAX_LINE_CHARS, MAX_TAIL_LINES } from "../../src/fleet/log-limits.ts";

const line = (revision: string, text: string) => ({ revision, stream: "stdout" as const, text });

describe("IsolateLogs", () => {
  it("keeps the last lines of each revision, each cut to the line limit", () => {
    const logs = new IsolateLogs();
    for (let i = 0; i < MAX_TAIL_LINES + 5; i++) logs.push(line("ns/a-00001", `a${i}`));
    logs.push(line("ns/b-00001", "x".repeat(MAX_LINE_CHARS + 10)));
    const a = logs.tail("ns/a-00001", MAX_TAIL_LINES + 100);
    expect(a).toHaveLength(MAX_TAIL_LINES);
    expect(a[0]?.text).toBe("a5");
    expect(logs.tail("ns/a-00001", 2).map((l) => l.text)).toEqual([
      `a${MAX_TAIL_LINES + 3}`,
      `a${MAX_TAIL_LINES + 4}`,
    ]);
    expect(logs.tail("ns/b-00001", 1)[0]?.text).toHaveLength(MAX_LINE_CHARS);
    expect(logs.tail("ns/a-00001", 0)).toEqual([]);
  });

  it("forgets the revision written least recently beyond 1000 revisions", () => {
    const logs = new IsolateLogs();
    for (let i = 0; i < 1_001; i++) logs.push(line(`ns/r${i}-00001`, "hi"));
    expect(logs.tail("ns/r0-00001", 1)).toEqual([]);
    expect(logs.tail("ns/r1-00001", 1)).toHaveLength(1);
  });

  it("tells a follower of each new line of its revision until it stops following", () => {
    const logs = new IsolateLogs();
    const seen: string[] = [];
    const stop = logs.follow("ns/a-00001", (l) => seen.push(l.text));
    logs.push(line("ns/a-00001", "one"));
    logs.push(line("ns/b-00001", "other"));
    stop();
    logs.push(line("ns/a-00001", "two"));
    expect(seen).toEqual(["one"]);
  });
});
