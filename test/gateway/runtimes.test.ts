/**
 * The gateway in front of both real endpoint kinds: a container (Docker, the
 * hello test image) started from zero when the activation signal arrives, and
 * isolates (workerd) that share one socket and are told apart only by the
 * internal revision header, which a client must not be able to forge.
 */
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContainerRuntime } from "../../agent/container/runtime.ts";
import { WorkerdPool } from "../../agent/isolate/index.ts";
import type { Gateway } from "../../gateway/server.ts";
import { ensureClusterIdentity } from "../../src/cluster.ts";
import { gatewayKeys } from "../../src/traffic/keys.ts";
import { removeContainers } from "../support/containers.ts";
import { helloImage } from "../support/images.ts";
import { connect, uniquePrefix } from "../support/redis.ts";
import { hit, host, startTestGateway, TestScaler } from "./support.ts";
import { wsRoundTrip } from "./websocket.ts";

const prefix = uniquePrefix("gw-runtimes");
const scaler = new TestScaler(prefix);
let gw: Gateway;

beforeAll(async () => {
  await scaler.agent();
  gw = await startTestGateway(prefix);
});

afterAll(async () => {
  await gw?.close(1_000);
  await scaler.close();
});

describe("container instances", () => {
  const docker = new Docker();
  const owner = `test-gw-${randomBytes(3).toString("hex")}`;
  let runtime: ContainerRuntime;
  let image: string;

  beforeAll(async () => {
    image = await helloImage(docker);
    runtime = new ContainerRuntime({ owner, startupTimeoutMs: 15_000 });
  }, 120_000);

  afterAll(async () => {
    await runtime?.close();
    await removeContainers([owner]);
  });

  it("holds requests for a revision at zero, and serves them from the container the scaler starts on the signal", async () => {
    const sub = scaler.redis.duplicate();
    const signals: string[] = [];
    let started: Promise<unknown> | undefined;
    sub.on("message", (_channel: string, message: string) => {
      signals.push(message);
      started ??= runtime
        .start({
          instanceId: `hello-00001-${randomBytes(3).toString("hex")}`,
          namespace: "default",
          service: "hello",
          configuration: "hello",
          revision: "hello-00001",
          timeoutSeconds: 30,
          containerConcurrency: 0,
          container: { image, env: [{ name: "TARGET", value: "Skiff" }] },
        })
        .then((instance) =>
          scaler.endpoint("default", "hello-00001", instance, {
            instanceId: instance.instanceId,
          }),
        );
    });
    await sub.subscribe(gatewayKeys(prefix).activateChannel);
    try {
      await scaler.route("default", "hello", [
        { revision: "hello-00001", percent: 100, timeoutSeconds: 30 },
      ]);
      await gw.resync();
      const results = await Promise.all(
        Array.from({ length: 20 }, () => hit(gw.url, host("hello"))),
      );
      await started;
      expect(signals).toEqual(["default/hello-00001"]);
      for (const res of results) {
        expect(res.status).toBe(200);
        expect(res.body).toBe("Hello Skiff!\n");
        expect(res.headers["k-revision"]).toBe("hello-00001");
      }
    } finally {
      sub.disconnect();
    }
  });
});

describe("isolate instances", () => {
  let pool: WorkerdPool;

  beforeAll(async () => {
    // Isolates demand the cluster's gateway secret, as the agent's pool does.
    const redis = connect();
    const { secret } = await ensureClusterIdentity(redis, prefix);
    redis.disconnect();
    pool = new WorkerdPool({
      processes: 1,
      watchdog: { stallMs: 3_000 },
      metrics: new Registry(),
      gatewaySecret: secret,
    });
    await pool.start();
    const code = (name: string) => `export default {
      fetch(request) {
        if (request.headers.get("upgrade") === "websocket") {
          const [client, server] = Object.values(new WebSocketPair());
          server.accept();
          server.addEventListener("message", (e) => server.send("${name}:" + e.data));
          return new Response(null, { status: 101, webSocket: client });
        }
        return new Response("${name} saw " + (request.headers.get("${WorkerdPool.revisionHeader}") ?? "no header"));
      },
    };`;
    for (const name of ["iso-a", "iso-b"]) {
      const key = `default/${name}-00001`;
      await pool.register(key, { code: code(name) });
      const ep = pool.endpointFor(key);
      await scaler.route("default", name, [{ revision: `${name}-00001`, percent: 100 }]);
      await scaler.endpoint("default", `${name}-00001`, ep, {
        runtime: "isolate",
        header: ep.header,
      });
    }
    await gw.resync();
  });

  afterAll(() => pool?.stop());

  it("routes each host to its own isolate on the shared workerd socket", async () => {
    expect((await hit(gw.url, host("iso-a"))).body).toBe("iso-a saw no header");
    expect((await hit(gw.url, host("iso-b"))).body).toBe("iso-b saw no header");
  });

  it("cannot be steered to another revision by a forged x-skiff-revision header", async () => {
    const forged = await hit(gw.url, host("iso-a"), {
      headers: { "x-skiff-revision": "default/iso-b-00001" },
    });
    expect(forged.status).toBe(200);
    expect(forged.body).toBe("iso-a saw no header");
  });

  it("passes a WebSocket through to an isolate", async () => {
    expect(await wsRoundTrip(gw.url, host("iso-b"), ["ping", "pong"])).toEqual([
      "iso-b:ping",
      "iso-b:pong",
    ]);
  });
});
