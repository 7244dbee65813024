/**
 * Waiting for an app on 127.0.0.1 to answer: the benchmarks' "to first
 * response" of a container (or anything else started on a published port).
 */
import { request } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

/** One GET on a fresh connection; resolves with the status, or 0 when nothing answers yet. */
function getStatus(port: number, path = "/"): Promise<number> {
  return new Promise((resolve) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path,
      agent: false,
      headers: { connection: "close" },
    });
    req.once("response", (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
    });
    req.once("error", () => resolve(0));
    req.setTimeout(2_000, () => req.destroy());
    req.end();
  });
}

/** ms from `t0` until 127.0.0.1:port answers 200, polling every `everyMs`; throws after `timeoutMs`. */
export async function firstResponse(
  port: number,
  t0: number,
  { timeoutMs = 20_000, everyMs = 5 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<number> {
  while (performance.now() - t0 < timeoutMs) {
    if ((await getStatus(port)) === 200) return performance.now() - t0;
    await sleep(everyMs);
  }
  throw new Error(`no response on 127.0.0.1:${port} within ${timeoutMs} ms`);
}
