/**
 * Which upstream errors blame the instance (it is avoided for a moment and
 * the request moves on) and which belong to the request alone (answered for
 * that request, instance untouched). Issue 11: a duplicate Host header made
 * undici refuse the request, that was taken for a connect failure, and a
 * healthy instance was marked suspect; two such requests a second stalled the
 * whole service. Errors here are real ones from undici, not constructed.
 */
import { createServer } from "node:net";
import { Agent, request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { isConnectError, isRequestError } from "../../gateway/upstream-errors.ts";
import { freePort } from "../support/redis-server.ts";

const agent = new Agent({ connect: { timeout: 2_000 } });
afterAll(() => agent.close());

async function errorOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected the request to fail");
}

describe("upstream error classification", () => {
  it("a refused connection blames the instance", async () => {
    const port = await freePort();
    const err = await errorOf(request(`http://127.0.0.1:${port}/`, { dispatcher: agent }));
    expect(isConnectError(err)).toBe(true);
    expect(isRequestError(err)).toBe(false);
  });

  it("a connection closed before any answer blames the instance", async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    const err = await errorOf(request(`http://127.0.0.1:${port}/`, { dispatcher: agent }));
    server.close();
    expect(isConnectError(err)).toBe(true);
  });

  it("headers undici refuses (duplicate Host, bad names) belong to the request, never to the instance", async () => {
    const port = await freePort();
    for (const headers of [
      ["host", "a.example", "host", "b.example"],
      ["bad header", "x"],
      ["x-ok", "line\r\nbreak"],
    ]) {
      const err = await errorOf(
        request(`http://127.0.0.1:${port}/`, { dispatcher: agent, headers }),
      );
      expect(
        isRequestError(err),
        `${JSON.stringify(headers)}: ${(err as { code?: string }).code}`,
      ).toBe(true);
      expect(isConnectError(err)).toBe(false);
    }
  });
});
