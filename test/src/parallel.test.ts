import { describe, expect, it } from "vitest";
import { inParallel } from "../../src/parallel.ts";

describe("inParallel", () => {
  it("keeps at most `limit` calls in flight, starts them in order and waits for all", async () => {
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const ended: number[] = [];
    await inParallel([0, 1, 2, 3, 4, 5, 6], 3, async (n) => {
      started.push(n);
      most = Math.max(most, ++running);
      // Later items end sooner: the order of ends is not the order of starts.
      await new Promise((r) => setTimeout(r, (7 - n) * 3));
      running--;
      ended.push(n);
    });
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(most).toBe(3);
    expect(ended.sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("a call that throws rejects the whole; the other workers still take the items left", async () => {
    const done: number[] = [];
    let allDone!: () => void;
    const finished = new Promise<void>((r) => {
      allDone = r;
    });
    // A generator: unlike an array's iterator, it closes when a for-of over it ends early.
    function* items() {
      yield* [1, 2, 3, 4, 5];
    }
    const run = inParallel(items(), 2, async (n) => {
      if (n === 1) throw new Error("one");
      await new Promise((r) => setTimeout(r, 5));
      done.push(n);
      if (done.length === 4) allDone();
    });
    await expect(run).rejects.toThrow("one");
    // A for-of over the shared generator would have closed it for every worker.
    await finished;
    expect(done.sort()).toEqual([2, 3, 4, 5]);
  });
});
