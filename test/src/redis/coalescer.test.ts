/** Coalescer (src/redis/resync.ts): one pass at a time; requests meanwhile collapse into one more. */
import { describe, expect, test } from "vitest";
import { Coalescer } from "../../../src/redis/resync.ts";

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

describe("Coalescer", () => {
  test("requests while a pass runs collapse into one more pass, and each resolves after a pass that started after it", async () => {
    const runs: number[] = [];
    let n = 0;
    let hold = gate();
    const c = new Coalescer(async () => {
      const run = ++n;
      runs.push(run);
      await hold.opened;
    });
    const first = c.trigger();
    expect(c.busy).toBe(true);
    const second = c.trigger();
    const third = c.trigger();
    expect(second).toBe(third);
    const released = hold;
    hold = gate();
    released.open();
    await first;
    expect(runs).toEqual([1, 2]);
    hold.open();
    await second;
    expect(runs).toEqual([1, 2]);
    await c.idle();
    expect(c.busy).toBe(false);
  });

  test("a waiting request's argument is merged with later ones; a schedule decides where a pass starts", async () => {
    const seen: string[] = [];
    const order: string[] = [];
    let tail = Promise.resolve();
    const c = new Coalescer<string>(
      async (reason) => {
        seen.push(reason);
      },
      {
        merge: (waiting, next) => (next === "interval" ? waiting : next),
        schedule: (start) => {
          tail = tail.then(() => {
            order.push("pass");
            return start();
          });
          return tail;
        },
      },
    );
    tail = tail.then(() => {
      order.push("message");
    });
    const a = c.trigger("interval");
    const b = c.trigger("manual");
    const d = c.trigger("interval");
    expect(a).toBe(b);
    expect(b).toBe(d);
    await a;
    expect(seen).toEqual(["manual"]);
    expect(order).toEqual(["message", "pass"]);
  });
});
