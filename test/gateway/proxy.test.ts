/**
 * One gateway (in-process) in front of plain Node backends on 127.0.0.1, over
 * real Redis: routing, headers, streaming, WebSockets, timeouts, retries,
 * queueing, counters and the admin port.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer as createHttp2Server } from "node:http2";
import { type AddressInfo, connect as netConnect } from "node:net";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../gateway/server.ts";
import { routingKeys } from "../../src/control/routing.ts";
import { gatewayKeys, type RevisionCounters } from "../../src/traffic/keys.ts";
import { uniquePrefix } from "../support/redis.ts";
import {
  type Backend,
  client,
  hit,
  host,
  startBackend,
  startTestGateway,
  TestScaler,
  until,
} from "./support.ts";
import { startWebSocketEcho, wsRoundTrip } from "./websocket.ts";

const prefix = uniquePrefix("gw-proxy");
const scaler = new TestScaler(prefix);
let gw: Gateway;
const backends: Backend[] = [];

async function backend(...args: Parameters<typeof startBackend>): Promise<Backend> {
  const b = await startBackend(...args);
  backends.push(b);
  return b;
}

beforeAll(async () => {
  await scaler.agent();
  gw = await startTestGateway(prefix);
});

afterAll(async () => {
  await gw?.close(1_000);
  await Promise.all(backends.map((b) => b.close()));
  await scaler.close();
});

/** Routes `service` to one fresh backend; returns it. */
async function serve(
  service: string,
  options: { handler?: Parameters<typeof startBackend>[1]; timeoutSeconds?: number } = {},
): Promise<Backend> {
  const rev = `${service}-00001`;
  const b = await backend(service, options.handler);
  await scaler.route("default", service, [
    { revision: rev, percent: 100, timeoutSeconds: options.timeoutSeconds ?? 30 },
  ]);
  await scaler.endpoint("default", rev, b);
  await gw.resync();
  return b;
}

describe("routing", () => {
  it("answers an unknown host with 404 'no such service' and proxies nowhere", async () => {
    const b = await serve("known");
    const before = b.hits;
    const res = await hit(gw.url, host("unknown"));
    expect(res.status).toBe(404);
    expect(res.body).toContain("no such service");
    expect(res.body).toContain("unknown.default.localhost");
    expect(b.hits).toBe(before);
  });

  it("routes a host written with no notice once a resync ran, and forgets one removed with none", async () => {
    const b = await backend("quiet");
    await scaler.endpoint("default", "quiet-00001", b);
    // Straight into the table, as a writer whose PUBLISH was lost would leave it.
    const table = routingKeys(prefix).hosts;
    const entry = {
      namespace: "default",
      service: "quiet",
      targets: [
        { revision: "quiet-00001", percent: 100, containerConcurrency: 0, timeoutSeconds: 30 },
      ],
    };
    await scaler.redis.hset(table, host("quiet"), JSON.stringify(entry));
    await gw.resync();
    expect((await hit(gw.url, host("quiet"))).status).toBe(200);
    await scaler.redis.hdel(table, host("quiet"));
    await gw.resync();
    expect((await hit(gw.url, host("quiet"))).status).toBe(404);
  });

  it("routes by Host ignoring port and case, and tag hosts only to their revision", async () => {
    const v1 = await backend("v1");
    const v2 = await backend("v2");
    await scaler.route("default", "tagged", [
      { revision: "tagged-00001", percent: 100, tag: "stable" },
      { revision: "tagged-00002", percent: 0, tag: "canary" },
    ]);
    await scaler.endpoint("default", "tagged-00001", v1);
    await scaler.endpoint("default", "tagged-00002", v2);
    await until("tagged routable", async () => (await hit(gw.url, host("tagged"))).status === 200);
    for (let i = 0; i < 20; i++) {
      expect(JSON.parse((await hit(gw.url, "Tagged.Default.LOCALHOST:8080")).body).name).toBe("v1");
      expect(JSON.parse((await hit(gw.url, host("tagged", "default", "canary"))).body).name).toBe(
        "v2",
      );
      expect(JSON.parse((await hit(gw.url, host("tagged", "default", "stable"))).body).name).toBe(
        "v1",
      );
    }
  });

  it("stops routing a host as soon as the scaler removes it", async () => {
    await serve("going");
    await scaler.route("default", "going", []);
    await until("going gone", async () => (await hit(gw.url, host("going"))).status === 404);
  });
});

describe("headers", () => {
  it("keeps Host, sets Forwarded and X-Forwarded-*, adds a request id and drops hop-by-hop headers", async () => {
    await serve("hdrs");
    // A raw request, so that Connection and the headers it names reach the gateway as written.
    const { port } = new URL(gw.url);
    const socket = netConnect(Number(port), "127.0.0.1");
    await once(socket, "connect");
    socket.write(
      "GET /p?q=1 HTTP/1.1\r\nHost: hdrs.default.localhost:8080\r\nX-Custom: kept\r\n" +
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n" +
        "Connection: close, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\n" +
        "Proxy-Authorization: Basic Zm9v\r\nTE: trailers\r\n\r\n",
    );
    let raw = "";
    for await (const chunk of socket) raw += String(chunk);
    expect(raw).toMatch(/^HTTP\/1.1 200/);
    expect(raw.toLowerCase()).toContain("x-backend: hdrs");
    const seen = JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4));
    expect(seen.url).toBe("/p?q=1");
    expect(seen.headers.host).toBe("hdrs.default.localhost:8080");
    expect(seen.headers["x-custom"]).toBe("kept");
    // Untrusted client values are replaced, not appended.
    expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen.headers["x-forwarded-host"]).toBe("hdrs.default.localhost:8080");
    expect(seen.headers["x-forwarded-proto"]).toBe("http");
    expect(seen.headers.forwarded).toBe(
      'for=127.0.0.1;host="hdrs.default.localhost:8080";proto=http',
    );
    expect(seen.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    for (const dropped of ["x-drop-me", "keep-alive", "proxy-authorization", "te"]) {
      expect(seen.headers[dropped]).toBeUndefined();
    }
  });

  it("keeps a request id the client sent", async () => {
    await serve("reqid");
    const res = await hit(gw.url, host("reqid"), { headers: { "x-request-id": "abc-123" } });
    expect(JSON.parse(res.body).headers["x-request-id"]).toBe("abc-123");
  });

  it("drops client x-skiff-* headers and sets the internal header only from the endpoint record", async () => {
    const b = await backend("internal");
    await scaler.route("default", "internal", [{ revision: "internal-00001", percent: 100 }]);
    await scaler.endpoint("default", "internal-00001", b, {
      runtime: "isolate",
      header: { name: "x-skiff-revision", value: "default/internal-00001" },
    });
    await until(
      "internal routable",
      async () => (await hit(gw.url, host("internal"))).status === 200,
    );
    const res = await hit(gw.url, host("internal"), {
      headers: {
        "x-skiff-revision": "default/other-00001",
        "X-Skiff-Anything": "forged",
      },
    });
    const seen = JSON.parse(res.body).headers;
    expect(seen["x-skiff-revision"]).toBe("default/internal-00001");
    expect(seen["x-skiff-anything"]).toBeUndefined();
  });
});

describe("streaming", () => {
  it("streams a 100 MB upload to the instance without buffering it, hash intact", async () => {
    let firstChunk: () => void = () => {};
    const gotFirst = new Promise<void>((resolve) => {
      firstChunk = resolve;
    });
    await serve("upload", {
      handler: (req, res) => {
        const hash = createHash("sha256");
        let bytes = 0;
        req.on("data", (chunk: Buffer) => {
          if (bytes === 0) firstChunk();
          bytes += chunk.length;
          hash.update(chunk);
        });
        req.on("end", () => res.end(JSON.stringify({ bytes, sha256: hash.digest("hex") })));
      },
    });
    const chunk = Buffer.alloc(1024 * 1024);
    const expected = createHash("sha256");
    async function* body() {
      for (let i = 0; i < 100; i++) {
        chunk.fill(i);
        expected.update(chunk);
        yield Buffer.from(chunk);
        // The rest only goes once the instance saw the start: a gateway that
        // buffered the whole body would never get there.
        if (i === 0) await gotFirst;
      }
    }
    const res = await hit(gw.url, host("upload"), { method: "POST", body: body() });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({
      bytes: 100 * 1024 * 1024,
      sha256: expected.digest("hex"),
    });
  });

  it("streams a slow chunked (SSE) response down as it is written", async () => {
    let release: () => void = () => {};
    const second = new Promise<void>((resolve) => {
      release = resolve;
    });
    await serve("sse", {
      handler: (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: one\n\n");
        // The second event only comes after the client got the first.
        void second.then(() => res.end("data: two\n\n"));
      },
    });
    const res = await request(`${gw.url}/events`, {
      headers: { host: host("sse") },
      dispatcher: client,
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/event-stream");
    const chunks: string[] = [];
    for await (const c of res.body) {
      chunks.push(String(c));
      if (chunks.join("").includes("one")) release();
    }
    expect(chunks.join("")).toBe("data: one\n\ndata: two\n\n");
  });
});

describe("h2c", () => {
  it("proxies to an instance that speaks cleartext HTTP/2", async () => {
    const server = createHttp2Server((req, res) => {
      res.end(`h2 ${req.httpVersion} ${req.headers[":authority"] ?? req.headers.host}`);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const port = (server.address() as AddressInfo).port;
      await scaler.route("default", "h2", [{ revision: "h2-00001", percent: 100 }]);
      await scaler.endpoint(
        "default",
        "h2-00001",
        { host: "127.0.0.1", port },
        { protocol: "h2c" },
      );
      await gw.resync();
      const res = await hit(gw.url, host("h2"));
      expect(res.status).toBe(200);
      expect(res.body).toBe("h2 2.0 h2.default.localhost");
    } finally {
      server.close();
    }
  });
});

describe("websockets", () => {
  it("passes a WebSocket upgrade through and echoes messages both ways", async () => {
    const echo = await startWebSocketEcho();
    backends.push(echo);
    await scaler.route("default", "ws", [{ revision: "ws-00001", percent: 100 }]);
    await scaler.endpoint("default", "ws-00001", echo);
    await until("ws routable", async () => (await hit(gw.url, host("ws"))).status !== 404);
    const replies = await wsRoundTrip(gw.url, host("ws"), ["hello", "skiff", "x".repeat(70_000)]);
    expect(replies).toEqual(["hello", "skiff", "x".repeat(70_000)]);
  });
});

describe("timeouts and failures", () => {
  it("answers 504 when no response starts within timeoutSeconds", async () => {
    await serve("slow", {
      timeoutSeconds: 1,
      handler: (_req, res) => {
        // The slow instance is what is under test.
        setTimeout(() => res.end("too late"), 3_000);
      },
    });
    const res = await hit(gw.url, host("slow"));
    expect(res.status).toBe(504);
    expect(res.body).toContain("did not start a response within 1s");
  });

  it("never cuts a response that started in time, however long it takes", async () => {
    await serve("long", {
      timeoutSeconds: 1,
      handler: (_req, res) => {
        res.writeHead(200);
        res.write("started ");
        // A response that takes longer than timeoutSeconds is what is under test.
        setTimeout(() => res.end("and finished"), 2_000);
      },
    });
    const res = await hit(gw.url, host("long"));
    expect(res.status).toBe(200);
    expect(res.body).toBe("started and finished");
  });

  it("answers 504 when the instance does not start answering within responseStartTimeoutSeconds", async () => {
    const b = await backend("rst", (_req, res) => {
      // The slow instance is what is under test.
      setTimeout(() => res.end("too late"), 2_500);
    });
    await scaler.route("default", "rst", [
      { revision: "rst-00001", percent: 100, timeoutSeconds: 10, responseStartTimeoutSeconds: 1 },
    ]);
    await scaler.endpoint("default", "rst-00001", b);
    await gw.resync();
    const res = await hit(gw.url, host("rst"));
    expect(res.status).toBe(504);
    expect(res.body).toContain("did not start a response within 1s of receiving the request");
  });

  it("cuts a started response that stays silent beyond idleTimeoutSeconds", async () => {
    const b = await backend("idle", (_req, res) => {
      res.writeHead(200);
      res.write("first ");
      // Then nothing for longer than the idle timeout.
      setTimeout(() => res.end("never seen"), 3_000);
    });
    await scaler.route("default", "idle", [
      { revision: "idle-00001", percent: 100, timeoutSeconds: 10, idleTimeoutSeconds: 1 },
    ]);
    await scaler.endpoint("default", "idle-00001", b);
    await gw.resync();
    const res = await request(`${gw.url}/`, {
      headers: { host: host("idle") },
      dispatcher: client,
    });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
  });

  it("retries on another instance when one refuses the connection", async () => {
    const good = await backend("good");
    const dead = await backend("dead");
    await dead.close();
    await scaler.route("default", "retry", [{ revision: "retry-00001", percent: 100 }]);
    await scaler.endpoint("default", "retry-00001", dead);
    await scaler.endpoint("default", "retry-00001", good);
    await until("retry routable", async () => (await hit(gw.url, host("retry"))).status === 200);
    for (let i = 0; i < 20; i++) {
      const res = await hit(gw.url, host("retry"), { method: "POST", body: `n=${i}` });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).name).toBe("good");
    }
  });

  it("holds a request while the only instance refuses, and serves it once a good one appears", async () => {
    const dead = await backend("dead2");
    await dead.close();
    await scaler.route("default", "refused", [{ revision: "refused-00001", percent: 100 }]);
    await scaler.endpoint("default", "refused-00001", dead);
    await until("refused known", () => gw.resync().then(() => true));
    const pending = hit(gw.url, host("refused"));
    await until(
      "the request held after the refusal",
      () => gw.queued("default", "refused-00001") === 1,
    );
    const good = await backend("good2");
    await scaler.endpoint("default", "refused-00001", good);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).name).toBe("good2");
  });

  it("answers 502 with a short reason when the instance breaks the connection without answering", async () => {
    await serve("broken", {
      handler: (req, _res) => {
        req.socket.destroy();
      },
    });
    const res = await hit(gw.url, host("broken"), { method: "POST", body: "x" });
    expect(res.status).toBe(502);
    expect(res.body).toMatch(/^bad gateway: instance broken-00001-i\d+ failed: /);
  });

  it("cuts the client connection (no error status) when a started response breaks", async () => {
    await serve("cut", {
      handler: (req, res) => {
        res.writeHead(200, { "content-length": "100" });
        res.write("partial");
        // A break after the response started is what is under test.
        setTimeout(() => req.socket.destroy(), 50);
      },
    });
    const res = await request(`${gw.url}/`, { headers: { host: host("cut") }, dispatcher: client });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
  });
});

describe("fleet changes", () => {
  it("stops using the endpoints of an agent whose record expired", async () => {
    const b = await backend("mortal");
    await scaler.agent("agent-mortal", 600);
    await scaler.route("default", "mortal", [
      { revision: "mortal-00001", percent: 100, timeoutSeconds: 1 },
    ]);
    await scaler.endpoint("default", "mortal-00001", b, { agentId: "agent-mortal" });
    await until("mortal routable", async () => (await hit(gw.url, host("mortal"))).status === 200);
    // No heartbeat: the record expires, no message is sent; the gateway's agent check notices.
    await until(
      "the agent's record expired",
      async () => (await scaler.redis.exists(scaler.fleet.keys.agent("agent-mortal"))) === 0,
    );
    await until(
      "the gateway dropped the endpoint",
      async () => (await hit(gw.url, host("mortal"))).status === 504,
    );
    const before = b.hits;
    const res = await hit(gw.url, host("mortal"));
    expect(res.status).toBe(504);
    expect(res.body).toContain("no instance of revision default/mortal-00001 became ready");
    expect(b.hits).toBe(before);
  });
});

describe("queueing", () => {
  it("answers 503 with a clear message beyond the queue depth, and serves the rest", async () => {
    const small = await startTestGateway(prefix, { queueDepth: 3 });
    try {
      await scaler.route("default", "full", [
        { revision: "full-00001", percent: 100, timeoutSeconds: 10 },
      ]);
      await small.resync();
      const held = [0, 1, 2].map(() => hit(small.url, host("full")));
      await until("three held", () => small.queued("default", "full-00001") === 3);
      const rejected = await hit(small.url, host("full"));
      expect(rejected.status).toBe(503);
      expect(rejected.headers["retry-after"]).toBe("1");
      expect(rejected.body).toContain("already has 3 requests waiting");
      const b = await backend("full");
      await scaler.endpoint("default", "full-00001", b);
      for (const res of await Promise.all(held)) expect(res.status).toBe(200);
    } finally {
      await small.close(1_000);
    }
  });
});

describe("global queue bound", () => {
  it("answers 503 naming maxQueued once the gateway holds that many requests across revisions", async () => {
    const small = await startTestGateway(prefix, { maxQueued: 3 });
    try {
      for (const svc of ["qa", "qb"]) {
        await scaler.route("default", svc, [
          { revision: `${svc}-00001`, percent: 100, timeoutSeconds: 10 },
        ]);
      }
      await small.resync();
      const held = [
        hit(small.url, host("qa")),
        hit(small.url, host("qa")),
        hit(small.url, host("qb")),
      ];
      await until(
        "three held over two revisions",
        () =>
          small.queued("default", "qa-00001") === 2 && small.queued("default", "qb-00001") === 1,
      );
      const rejected = await hit(small.url, host("qb"));
      expect(rejected.status).toBe(503);
      expect(rejected.body).toContain("maxQueued");
      const a = await backend("qa");
      const b = await backend("qb");
      await scaler.endpoint("default", "qa-00001", a);
      await scaler.endpoint("default", "qb-00001", b);
      for (const res of await Promise.all(held)) expect(res.status).toBe(200);
      // The budget is given back: new requests queue again.
      expect((await hit(small.url, host("qb"))).status).toBe(200);
    } finally {
      await small.close(1_000);
    }
  });
});

describe("queued requests quota per namespace", () => {
  it("answers 429 naming the quota once a namespace holds its queuedRequests, while another namespace still queues", async () => {
    const small = await startTestGateway(prefix, {
      namespaceQueued: { default: 2, namespaces: { roomy: 5 } },
    });
    try {
      for (const ns of ["greedy", "other", "roomy"]) {
        await scaler.route(ns, "burst", [
          { revision: "burst-00001", percent: 100, timeoutSeconds: 10 },
        ]);
      }
      await small.resync();
      const held = [
        hit(small.url, host("burst", "greedy")),
        hit(small.url, host("burst", "greedy")),
      ];
      await until("two held in greedy", () => small.queued("greedy", "burst-00001") === 2);
      const refused = await hit(small.url, host("burst", "greedy"));
      expect(refused.status).toBe(429);
      expect(refused.headers["retry-after"]).toBe("1");
      expect(refused.body).toContain("namespace greedy already has 2 requests waiting");
      expect(refused.body).toContain("quotas.namespaces.greedy.queuedRequests");
      // Other namespaces are not held back by greedy's burst; an override raises one's quota.
      const others = [
        hit(small.url, host("burst", "other")),
        ...Array.from({ length: 5 }, () => hit(small.url, host("burst", "roomy"))),
      ];
      await until(
        "other and roomy held",
        () =>
          small.queued("other", "burst-00001") === 1 && small.queued("roomy", "burst-00001") === 5,
      );
      expect((await hit(small.url, host("burst", "roomy"))).status).toBe(429);
      for (const ns of ["greedy", "other", "roomy"]) {
        await scaler.endpoint(ns, "burst-00001", await backend(`burst-${ns}`));
      }
      for (const res of await Promise.all([...held, ...others])) expect(res.status).toBe(200);
      // The quota is given back as requests leave the queue.
      expect((await hit(small.url, host("burst", "greedy"))).status).toBe(200);
    } finally {
      await small.close(1_000);
    }
  });
});

describe("scale from zero", () => {
  it("sends held requests out in arrival order once the first endpoint appears (containerConcurrency=1)", async () => {
    await scaler.route("default", "order", [
      { revision: "order-00001", percent: 100, containerConcurrency: 1, timeoutSeconds: 30 },
    ]);
    await gw.resync();
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      pending.push(hit(gw.url, host("order"), { headers: { "x-seq": String(i) } }));
      await until(`request ${i} held`, () => gw.queued("default", "order-00001") === i + 1);
    }
    const order: number[] = [];
    const b = await backend("order", (req, res) => {
      order.push(Number(req.headers["x-seq"]));
      req.resume();
      res.end("ok");
    });
    await scaler.endpoint("default", "order-00001", b, { containerConcurrency: 1 });
    await Promise.all(pending);
    expect(order).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(b.maxInflight).toBe(1);
  });
});

describe("counters", () => {
  it("publishes per-revision in-flight and request counts under its id, with a TTL", async () => {
    let finish: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    await serve("counted", {
      handler: (_req, res) => {
        void gate.then(() => res.end("done"));
      },
    });
    const held = [hit(gw.url, host("counted")), hit(gw.url, host("counted"))];
    const key = gatewayKeys(prefix).metrics(gw.id);
    const read = async () => {
      const raw = await scaler.redis.hget(key, "default/counted-00001");
      return raw ? (JSON.parse(raw) as RevisionCounters) : undefined;
    };
    await until("two in flight published", async () => (await read())?.inflight === 2);
    const during = (await read()) as RevisionCounters;
    expect(Object.values(during.instances)).toEqual([2]);
    expect(during.avgInflight).toBeGreaterThan(0);
    expect(await scaler.redis.pttl(key)).toBeGreaterThan(0);
    expect(await scaler.redis.zscore(gatewayKeys(prefix).gateways, gw.id)).not.toBeNull();
    finish();
    await Promise.all(held);
    await until("completion published", async () => (await read())?.inflight === 0);
    const after = (await read()) as RevisionCounters;
    expect(after.completed).toBe(2);
    expect(after.requests).toBe(after.completed);
    expect(after.concurrencyMs).toBeGreaterThan(during.concurrencyMs);
    expect(after.since).toBe(during.since);
  });
});

describe("admin port", () => {
  it("serves /metrics, /healthz and /readyz apart from user hosts", async () => {
    await serve("metrics");
    const user = await hit(gw.url, host("metrics"), { path: "/metrics" });
    expect(JSON.parse(user.body).name).toBe("metrics");
    const health = await request(`${gw.adminUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    const ready = await request(`${gw.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    await ready.body.dump();
    const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text();
    expect(metrics).toContain(
      'skiff_gateway_requests_total{code="200",namespace="default",service="metrics"',
    );
    expect(metrics).toContain("skiff_gateway_request_duration_seconds_bucket");
    expect(metrics).toContain("skiff_gateway_queue_depth");
    expect(metrics).toContain("skiff_gateway_upstream_errors_total");
  });

  it("rejects a malformed request line with 400 and keeps serving", async () => {
    const { port } = new URL(gw.url);
    const socket = netConnect(Number(port), "127.0.0.1");
    await once(socket, "connect");
    socket.write("NOT A REQUEST\r\n\r\n");
    const [data] = await once(socket, "data");
    expect(String(data)).toMatch(/^HTTP\/1.1 400/);
    socket.destroy();
    expect((await hit(gw.url, host("metrics"))).status).toBe(200);
  });
});
