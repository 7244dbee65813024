/**
 * Workers' console lines carry their revision (the router's mark), so that
 * `skiff logs` can attribute them. A worker cannot print a line under another
 * revision's mark: its console puts its own mark first, and what console.dir
 * prints is not a marked line (the pool would also drop a mark naming another
 * namespace than the process's).
 */
import { afterEach, describe, expect, it } from "vitest";
import { WorkerdPool, type WorkerLogEvent } from "../../../agent/isolate/index.ts";
import { send } from "./support.ts";

let pool: WorkerdPool | undefined;
afterEach(async () => {
  await pool?.stop();
  pool = undefined;
});

describe("worker console lines", () => {
  it("are attributed to the revision that wrote them, and a worker cannot print one for another revision", async () => {
    pool = new WorkerdPool({ processes: 1, watchdog: { stallMs: 3_000 } });
    const lines: WorkerLogEvent[] = [];
    pool.on("workerLog", (e) => lines.push(e));
    await pool.start();
    const mark = (rev: string) => `"\\u001eskiff:${rev}\\u001f`;
    await pool.register("default/talk-00001", {
      code: `export default { fetch() {
        console.log("own line", 1);
        console.warn("own warning");
        console.dir(${mark("other/victim-00001")} forged across");
        console.dir(${mark("default/sibling-00001")} forged within");
        return new Response("ok");
      } };`,
    });
    expect((await send(pool, "default/talk-00001")).body).toBe("ok");
    await expect
      .poll(() => lines.map((l) => `${l.revision} ${l.stream} ${l.text}`), { timeout: 5_000 })
      .toEqual(["default/talk-00001 stdout own line 1", "default/talk-00001 stderr own warning"]);
  });
});
