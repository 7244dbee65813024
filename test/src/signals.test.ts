/**
 * Graceful stop survives a repeated SIGTERM and a Ctrl-C delivered twice; a
 * second SIGINT (a person's) exits at once. Real signals to a child.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const module = fileURLToPath(new URL("../../src/signals.ts", import.meta.url));
// A child that takes 600 ms to stop and says when it finished.
const script = `
import { handleShutdownSignals } from ${JSON.stringify(module)};
handleShutdownSignals(async () => { await new Promise((r) => setTimeout(r, 600)); console.log("stopped cleanly"); }, () => {});
console.log("ready");
setInterval(() => {}, 1000);
`;

function run(
  signals: NodeJS.Signals[],
  gapMs = 400,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (out === "ready\n") {
        for (const [i, s] of signals.entries()) setTimeout(() => child.kill(s), 50 + i * gapMs);
      }
    });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, out }));
  });
}

describe("shutdown signals", () => {
  it("a second SIGTERM does not cut the graceful stop short", async () => {
    const { code, out } = await run(["SIGTERM", "SIGTERM"]);
    expect(out).toContain("stopped cleanly");
    expect(code).toBe(0);
  });

  it("one Ctrl-C delivered twice (the terminal's group signal and npm's forward) is one graceful stop", async () => {
    const { code, out } = await run(["SIGINT", "SIGINT"], 5);
    expect(out).toContain("stopped cleanly");
    expect(code).toBe(0);
  });

  it("a second SIGINT exits at once with 130", async () => {
    const { code, out } = await run(["SIGINT", "SIGINT"]);
    expect(out).not.toContain("stopped cleanly");
    expect(code).toBe(130);
  });
});
