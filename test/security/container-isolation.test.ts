/**
 * Attack: from inside a deployed container, reach the control plane on the
 * host's loopback (Redis, admin ports, workerd sockets, the deploy API). With
 * host networking a few raw RESP commands to 127.0.0.1 owned the cluster; now
 * every container has its own network namespace, so its 127.0.0.1 is itself.
 * The container app (test/images/hello) makes the connections from inside;
 * the test never sends traffic to a bridge address.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createHarness, get, type Harness } from "../agent/container/harness.ts";
import { redisUrl } from "../support/redis.ts";

let h: Harness;
let server: Server;
let httpPort: number;

beforeAll(async () => {
  h = await createHarness("iso");
  // A stand-in for an admin port / the deploy API: an HTTP server on the host's 127.0.0.1.
  server = createServer((_req, res) => res.end("control plane\n"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  httpPort = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await h?.cleanup();
  await new Promise((resolve) => server?.close(resolve));
});

/** The host-side control: the port answers a TCP connect from the host itself. */
function reachableFromHost(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

describe("a container's 127.0.0.1 is the container itself", () => {
  test("the suite's redis-server and an HTTP server on the host's 127.0.0.1 are unreachable from inside; the container's own port is", async () => {
    const url = redisUrl();
    const redisPort = url.startsWith("redis://") ? Number(new URL(url).port || 6379) : undefined;
    const targets: Array<[string, number]> = [["host HTTP server", httpPort]];
    if (redisPort) targets.push(["host redis-server", redisPort]);

    const rt = h.runtime();
    const started = await rt.start(h.spec());
    for (const [what, port] of targets) {
      expect(await reachableFromHost(port)).toBe(true); // it is there, for the host
      const res = await get(`http://127.0.0.1:${started.port}/connect?port=${port}`);
      console.log(
        `from inside the container: TCP connect to 127.0.0.1:${port} (${what}) -> ${res.body.trim()}`,
      );
      expect(res.body).toMatch(/^failed: /);
    }
    // Also the port the agent published for this very container on the host's 127.0.0.1.
    const published = await get(`http://127.0.0.1:${started.port}/connect?port=${started.port}`);
    console.log(
      `from inside: 127.0.0.1:${started.port} (its own published host port) -> ${published.body.trim()}`,
    );
    expect(published.body).toMatch(/^failed: /);
    // The positive control: 127.0.0.1:8080 inside is the app itself.
    const self = await get(`http://127.0.0.1:${started.port}/connect?port=8080`);
    console.log(`from inside: 127.0.0.1:8080 (the app itself) -> ${self.body.trim()}`);
    expect(self.body).toBe("connected\n");
  });
});
