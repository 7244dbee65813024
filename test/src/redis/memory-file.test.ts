/** The in-process Redis of `skiff up` kept in a file: saved on change, restored on start. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connectRedis } from "../../../src/redis/connect.ts";
import { openMemoryRedisFile } from "../../../src/redis/memory-file.ts";

const dir = mkdtempSync(join(tmpdir(), "skiff-memfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("openMemoryRedisFile", () => {
  it("saves durable changes, leaves the file alone for TTL keys, and a new open restores them", async () => {
    const file = join(dir, "a", "store.json");
    const first = await openMemoryRedisFile({ file, intervalMs: 20 });
    expect(first.restored).toBe(0);
    const r = connectRedis(first.url);
    await r.hset("skiff:obj:x", "rv", "1", "json", "{}");
    await expect
      .poll(() => readFileSync(file, "utf8"), { timeout: 2_000 })
      .toContain("skiff:obj:x");
    const saved = statSync(file).mtimeMs;
    await r.set("skiff:fleet:agent:a", "alive", "PX", 60_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(statSync(file).mtimeMs).toBe(saved);
    await r.sadd("skiff:idx", "x");
    await first.stop(); // saves the last change
    r.disconnect();

    const second = await openMemoryRedisFile({ file });
    expect(second.url).not.toBe(first.url);
    expect(second.restored).toBe(2);
    const again = connectRedis(second.url);
    expect(await again.hgetall("skiff:obj:x")).toEqual({ rv: "1", json: "{}" });
    expect(await again.smembers("skiff:idx")).toEqual(["x"]);
    expect(await again.exists("skiff:fleet:agent:a")).toBe(0);
    again.disconnect();
    await second.stop();
  });

  it("refuses a damaged file with a message saying what to do, and leaves it as it was", async () => {
    const file = join(dir, "broken.json");
    writeFileSync(file, "{ not json");
    await expect(openMemoryRedisFile({ file })).rejects.toThrow(
      `cannot read the store snapshot ${file}: `,
    );
    await expect(openMemoryRedisFile({ file })).rejects.toThrow(
      /move the file away to start with an empty store/,
    );
    expect(readFileSync(file, "utf8")).toBe("{ not json");
  });
});
