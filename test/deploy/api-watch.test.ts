/**
 * `?watch=true` on the deploy API: events arrive from the store's change
 * notices, watches are authenticated and namespace-scoped exactly like GET,
 * and bounded (caps, timeout, revocation, shutdown).
 */
import { connect as connectTcp } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Service } from "../../src/model/types.ts";
import { createRedisStore, type RedisStore } from "../../src/store/index.ts";
import { BASE, createToken, serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { redisUrl, uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

const TOKENS = "/apis/skiff.dev/v1/tokens";

interface Event {
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  object: any;
}

/** An open watch: its events one at a time, and whether the stream has ended. */
interface Watch {
  status: number;
  contentType: string;
  next(timeoutMs?: number): Promise<Event>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

async function openWatch(api: TestApi, path: string, token = api.token): Promise<Watch> {
  const abort = new AbortController();
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(new URL(path, api.url), { headers, signal: abort.signal });
  const queue: Event[] = [];
  const waiters: ((e: Event) => void)[] = [];
  let endedResolve!: () => void;
  const ended = new Promise<void>((r) => {
    endedResolve = r;
  });
  if (res.status !== 200 || !res.body) {
    await res.text();
    endedResolve();
  } else {
    void (async () => {
      const decoder = new TextDecoder();
      let rest = "";
      try {
        for await (const chunk of res.body!) {
          rest += decoder.decode(chunk, { stream: true });
          let nl = rest.indexOf("\n");
          while (nl >= 0) {
            const event = JSON.parse(rest.slice(0, nl)) as Event;
            rest = rest.slice(nl + 1);
            const w = waiters.shift();
            if (w) w(event);
            else queue.push(event);
            nl = rest.indexOf("\n");
          }
        }
      } catch {
        // aborted by close()
      }
      endedResolve();
    })();
  }
  return {
    status: res.status,
    contentType: res.headers.get("content-type") ?? "",
    ended,
    close: () => abort.abort(),
    next(timeoutMs = 10_000) {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no watch event in time")), timeoutMs);
        waiters.push((e) => {
          clearTimeout(timer);
          resolve(e);
        });
      });
    },
  };
}

const prefix = uniquePrefix("watch");
let api: TestApi;
let store: RedisStore;
const secrets: Record<string, string> = {};

/** What the scaler does when a Service becomes ready (the test plays the scaler). */
async function markReady(namespace: string, name: string) {
  await store.transact(async (tx) => {
    const svc = (await tx.get("services", namespace, name)) as Service;
    svc.status.observedGeneration = svc.metadata.generation;
    svc.status.conditions = [
      { type: "Ready", status: "True", lastTransitionTime: new Date().toISOString() },
    ];
    tx.put(svc);
  });
}

beforeAll(async () => {
  api = await startTestApi({
    prefix,
    config: {
      api: {
        port: 0,
        token: "test-token-0123456789abcdef",
        watch: { maxPerToken: 3, reauthMs: 0 },
      },
    },
  });
  store = await createRedisStore({ url: redisUrl(), prefix });
  for (const [name, role, namespaces] of [
    ["a-view", "view", ["team-a"]],
    ["gone", "view", ["team-a"]],
  ] as const) {
    secrets[name] = await createToken(api, name, role, [...namespaces]);
  }
});
afterAll(async () => {
  await store?.close();
  await api?.close();
});

describe("watch", () => {
  it("a collection watch starts with the current objects, then streams each change", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("first"))).status).toBe(201);
    const w = await openWatch(api, `${api.ns("services")}?watch=true`);
    expect(w.status).toBe(200);
    expect(w.contentType).toMatch(/application\/json;stream=watch/);
    const added = await w.next();
    expect(added.type).toBe("ADDED");
    expect(added.object.metadata.name).toBe("first");

    expect((await api.call("POST", api.ns("services"), serviceBody("second"))).status).toBe(201);
    const second = await w.next();
    expect([second.type, second.object.metadata.name]).toEqual(["ADDED", "second"]);

    await markReady("default", "first");
    let ready: Event;
    do ready = await w.next();
    while (ready.object.metadata.name !== "first");
    expect(ready.type).toBe("MODIFIED");
    expect(ready.object.status.conditions).toContainEqual(
      expect.objectContaining({ type: "Ready", status: "True" }),
    );
    expect(Number(ready.object.metadata.resourceVersion)).toBeGreaterThan(
      Number(added.object.metadata.resourceVersion),
    );

    expect((await api.call("DELETE", api.ns("services", "second"))).status).toBe(200);
    let deleted: Event;
    do deleted = await w.next();
    while (deleted.type !== "DELETED");
    expect(deleted.object.metadata.name).toBe("second");
    w.close();
  });

  it("a single-object watch sees that object only", async () => {
    expect((await api.call("POST", api.ns("services"), serviceBody("solo"))).status).toBe(201);
    const w = await openWatch(api, `${api.ns("services", "solo")}?watch=true`);
    expect((await w.next()).object.metadata.name).toBe("solo");
    expect((await api.call("POST", api.ns("services"), serviceBody("other"))).status).toBe(201);
    await markReady("default", "solo");
    const e = await w.next();
    expect([e.type, e.object.metadata.name]).toEqual(["MODIFIED", "solo"]);
    w.close();
  });

  it("a labelSelector watch sees matching objects only", async () => {
    const labelled = serviceBody("labelled") as { metadata: Record<string, unknown> };
    labelled.metadata.labels = { team: "blue" };
    const w = await openWatch(api, `${api.ns("services")}?watch=true&labelSelector=team%3Dblue`);
    expect(w.status).toBe(200);
    expect((await api.call("POST", api.ns("services"), serviceBody("unlabelled"))).status).toBe(
      201,
    );
    expect((await api.call("POST", api.ns("services"), labelled)).status).toBe(201);
    const e = await w.next();
    expect([e.type, e.object.metadata.name]).toEqual(["ADDED", "labelled"]);
    w.close();
  });

  it("is authenticated and namespace-scoped exactly like GET", async () => {
    for (const ns of ["team-a", "team-b"]) {
      const r = await api.call("POST", api.ns("services", undefined, ns), serviceBody(`svc-${ns}`));
      expect(r.status).toBe(201);
    }
    const anonymous = await openWatch(api, `${api.ns("services")}?watch=true`, "");
    expect(anonymous.status).toBe(401);
    const outside = await openWatch(
      api,
      `${api.ns("services", undefined, "team-b")}?watch=true`,
      secrets["a-view"],
    );
    expect(outside.status).toBe(403);
    const outsideOne = await openWatch(
      api,
      `${api.ns("services", "svc-team-b", "team-b")}?watch=true`,
      secrets["a-view"],
    );
    expect(outsideOne.status).toBe(403);

    // Across namespaces: only the namespaces the token may read, now and later.
    const all = await openWatch(api, `${BASE}/services?watch=true`, secrets["a-view"]);
    expect(all.status).toBe(200);
    const first = await all.next();
    expect(first.object.metadata.namespace).toBe("team-a");
    await markReady("team-b", "svc-team-b");
    await markReady("team-a", "svc-team-a");
    const next = await all.next();
    expect([next.type, next.object.metadata.namespace]).toEqual(["MODIFIED", "team-a"]);
    all.close();
  });

  it("a revoked token's watch ends with an ERROR event", async () => {
    const w = await openWatch(
      api,
      `${api.ns("services", undefined, "team-a")}?watch=true`,
      secrets.gone,
    );
    expect(w.status).toBe(200);
    expect((await w.next()).type).toBe("ADDED");
    expect((await api.call("DELETE", `${TOKENS}/gone`)).status).toBe(200);
    await markReady("team-a", "svc-team-a"); // a change the revoked token must not see
    const e = await w.next();
    expect(e.type).toBe("ERROR");
    expect(e.object).toMatchObject({ kind: "Status", code: 401 });
    await w.ended;
  });

  it("caps open watches per token (429), and frees the slot when one ends", async () => {
    const path = `${api.ns("services", undefined, "team-a")}?watch=true`;
    const open = [];
    for (let i = 0; i < 3; i++) {
      const w = await openWatch(api, path, secrets["a-view"]);
      expect(w.status).toBe(200);
      open.push(w);
    }
    const refused = await openWatch(api, path, secrets["a-view"]);
    expect(refused.status).toBe(429);
    // Another token is not affected by this one's use.
    const admin = await openWatch(api, path);
    expect(admin.status).toBe(200);
    admin.close();
    open.pop()!.close();
    // The server sees the disconnect a moment later.
    const again = await waitFor(
      "the token's watch slot freed",
      async () => {
        const w = await openWatch(api, path, secrets["a-view"]);
        return w.status === 200 ? w : undefined;
      },
      5_000,
      20,
    );
    expect(again.status).toBe(200);
    again.close();
    for (const w of open) w.close();
  });

  it("ends at timeoutSeconds; refuses a resourceVersion it cannot replay and bad parameters", async () => {
    const w = await openWatch(api, `${api.ns("services")}?watch=true&timeoutSeconds=1`);
    expect(w.status).toBe(200);
    await w.ended;
    const old = await api.call("GET", `${api.ns("services")}?watch=true&resourceVersion=3`);
    expect(old.status).toBe(410);
    expect(old.json).toMatchObject({ kind: "Status", reason: "Expired" });
    expect((await api.call("GET", `${api.ns("services")}?watch=yes`)).status).toBe(400);
    const bad = await api.call("GET", `${api.ns("services")}?watch=true&timeoutSeconds=-1`);
    expect(bad.status).toBe(400);
  });

  it("an API with a global cap refuses past it; closing the API ends open watches", async () => {
    const small = await startTestApi({
      prefix: uniquePrefix("watch-cap"),
      config: { api: { port: 0, token: "test-token-0123456789abcdef", watch: { maxOpen: 1 } } },
    });
    const w = await openWatch(small, `${small.ns("services")}?watch=true`);
    expect(w.status).toBe(200);
    expect((await openWatch(small, `${small.ns("services")}?watch=true`)).status).toBe(429);
    await small.close();
    await w.ended;
  });

  it("cuts off a client that stops reading and frees its slot", async () => {
    const token = "test-token-0123456789abcdef";
    const slow = await startTestApi({
      prefix: uniquePrefix("watch-slow"),
      config: { api: { port: 0, token, watch: { maxPerToken: 1, maxQueuedBytes: 1024 } } },
    });
    try {
      const big = serviceBody("big") as { metadata: Record<string, unknown> };
      big.metadata.annotations = { "example.com/blob": "x".repeat(200_000) };
      expect((await slow.call("POST", slow.ns("services"), big)).status).toBe(201);
      const path = `${slow.ns("services")}?watch=true`;
      // A client that sends its request and then never reads a byte.
      const { port } = new URL(slow.url);
      const socket = connectTcp(Number(port), "127.0.0.1");
      socket.pause();
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`);
      socket.on("error", () => {});
      const taken = async () => {
        const w = await openWatch(slow, path);
        w.close();
        return w.status === 429;
      };
      await waitFor("the silent client's watch open", taken, 5_000, 20);
      expect(await taken()).toBe(true);
      // Each change queues ~200 KB for it: after the socket buffers fill, the API lets go.
      let freed = false;
      for (let i = 0; i < 300 && !freed; i++) {
        const r = await slow.call("PATCH", slow.ns("services", "big"), {
          metadata: { labels: { round: String(i) } },
        });
        expect(r.status, r.text).toBe(200);
        freed = !(await taken());
      }
      expect(freed).toBe(true);
      socket.destroy();
    } finally {
      await slow.close();
    }
  });
});
