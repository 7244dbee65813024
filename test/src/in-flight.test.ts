import { describe, expect, it } from "vitest";
import { InFlight } from "../../src/in-flight.ts";

describe("InFlight", () => {
  it("has concurrent callers of one key share one call, and other keys run their own", async () => {
    const flights = new InFlight<string>();
    const started: string[] = [];
    const gate = Promise.withResolvers<void>();
    const start = (key: string) => async () => {
      started.push(key);
      await gate.promise;
      return `done ${key}`;
    };
    const a1 = flights.run("a", start("a"));
    const a2 = flights.run("a", start("a"));
    const b = flights.run("b", start("b"));
    expect(a2).toBe(a1);
    gate.resolve();
    expect(await Promise.all([a1, a2, b])).toEqual(["done a", "done a", "done b"]);
    expect(started).toEqual(["a", "b"]);
  });

  it("frees the key once its call has settled, resolved or rejected", async () => {
    const flights = new InFlight<number>();
    expect(await flights.run("k", async () => 1)).toBe(1);
    expect(await flights.run("k", async () => 2)).toBe(2);
    await expect(flights.run("k", async () => Promise.reject(new Error("boom")))).rejects.toThrow();
    expect(await flights.run("k", async () => 3)).toBe(3);
  });

  it("hands a rejection to every caller sharing the call", async () => {
    const flights = new InFlight<number>();
    const failing = Promise.withResolvers<number>();
    const first = flights.run("k", () => failing.promise);
    const second = flights.run("k", async () => 0);
    failing.reject(new Error("boom"));
    await expect(first).rejects.toThrow("boom");
    await expect(second).rejects.toThrow("boom");
  });
});
