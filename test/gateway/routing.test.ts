/**
 * Routing tables: the pure derivation from a Route (src/control/routing.ts),
 * the atomic writer against real Redis, and the gateway's host parsing and
 * weighted pick.
 */
import { afterAll, describe, expect, it } from "vitest";
import { compileRoute, normalizeHost, pickTarget } from "../../gateway/routes.ts";
import {
  parseRoutingEntry,
  publishRouting,
  removeRouting,
  routingKeys,
  routingTables,
} from "../../src/control/routing.ts";
import { connect, uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";
import { revisionObject, routeObject } from "./support.ts";

const revisions = [
  revisionObject("ns", { revision: "hello-00001", containerConcurrency: 0, timeoutSeconds: 300 }),
  revisionObject("ns", {
    revision: "hello-00002",
    containerConcurrency: 4,
    timeoutSeconds: 60,
    responseStartTimeoutSeconds: 10,
    idleTimeoutSeconds: 20,
  }),
];

describe("routingTables", () => {
  it("splits the service host by percent and gives each tag its own host at 100%", () => {
    const route = routeObject("ns", "hello", [
      { revisionName: "hello-00001", percent: 80, tag: "stable" },
      { revisionName: "hello-00002", percent: 20 },
      { revisionName: "hello-00002", percent: 0, tag: "canary" },
    ]);
    const tables = routingTables(route, revisions, "example.com");
    expect(tables).toEqual({
      namespace: "ns",
      route: "hello",
      hosts: {
        "hello.ns.example.com": {
          namespace: "ns",
          service: "hello",
          targets: [
            { revision: "hello-00001", percent: 80, containerConcurrency: 0, timeoutSeconds: 300 },
            {
              revision: "hello-00002",
              percent: 20,
              containerConcurrency: 4,
              timeoutSeconds: 60,
              responseStartTimeoutSeconds: 10,
              idleTimeoutSeconds: 20,
            },
          ],
        },
        "stable-hello.ns.example.com": {
          namespace: "ns",
          service: "hello",
          tag: "stable",
          targets: [
            { revision: "hello-00001", percent: 100, containerConcurrency: 0, timeoutSeconds: 300 },
          ],
        },
        "canary-hello.ns.example.com": {
          namespace: "ns",
          service: "hello",
          tag: "canary",
          targets: [
            {
              revision: "hello-00002",
              percent: 100,
              containerConcurrency: 4,
              timeoutSeconds: 60,
              responseStartTimeoutSeconds: 10,
              idleTimeoutSeconds: 20,
            },
          ],
        },
      },
    });
  });

  it("adds up two targets naming the same revision", () => {
    const route = routeObject("ns", "hello", [
      { revisionName: "hello-00001", percent: 30 },
      { revisionName: "hello-00001", percent: 70, tag: "all" },
    ]);
    const main = routingTables(route, revisions, "localhost").hosts["hello.ns.localhost"];
    expect(main?.targets.map((t) => [t.revision, t.percent])).toEqual([["hello-00001", 100]]);
  });

  it("routes only status targets with a revisionName, and no host when none is left", () => {
    const waiting = routeObject("ns", "hello", [{ configurationName: "hello", percent: 100 }]);
    expect(routingTables(waiting, revisions, "localhost").hosts).toEqual({});
    // spec-only traffic (no status yet) routes nowhere either
    const unresolved = { ...waiting, status: {} };
    expect(routingTables(unresolved, revisions, "localhost").hosts).toEqual({});
  });

  it("skips revisions it was not given", () => {
    const route = routeObject("ns", "hello", [
      { revisionName: "hello-00001", percent: 50 },
      { revisionName: "hello-00009", percent: 50, tag: "gone" },
    ]);
    const tables = routingTables(route, new Map([["hello-00001", revisions[0]!]]), "localhost");
    expect(Object.keys(tables.hosts)).toEqual(["hello.ns.localhost"]);
    expect(tables.hosts["hello.ns.localhost"]?.targets.map((t) => t.revision)).toEqual([
      "hello-00001",
    ]);
  });
});

describe("publishRouting", () => {
  const redis = connect();
  const prefix = uniquePrefix("routing");
  const keys = routingKeys(prefix);
  afterAll(() => redis.disconnect());

  const tablesOf = (traffic: Parameters<typeof routeObject>[2], name = "hello") =>
    routingTables(routeObject("ns", name, traffic), revisions, "localhost");

  it("writes a route's hosts, replaces them atomically and publishes only the changed ones", async () => {
    const sub = redis.duplicate();
    const messages: string[] = [];
    sub.on("message", (_channel: string, message: string) => messages.push(message));
    await sub.subscribe(keys.channel);
    try {
      const first = await publishRouting(
        redis,
        prefix,
        tablesOf([
          { revisionName: "hello-00001", percent: 100, tag: "old" },
          { revisionName: "hello-00002", percent: 0, tag: "canary" },
        ]),
      );
      expect(first.sort()).toEqual([
        "canary-hello.ns.localhost",
        "hello.ns.localhost",
        "old-hello.ns.localhost",
      ]);
      // Same tables again: nothing changes, nothing is published.
      expect(
        await publishRouting(
          redis,
          prefix,
          tablesOf([
            { revisionName: "hello-00001", percent: 100, tag: "old" },
            { revisionName: "hello-00002", percent: 0, tag: "canary" },
          ]),
        ),
      ).toEqual([]);
      // The "old" tag goes, the split changes, canary stays as it was.
      const second = await publishRouting(
        redis,
        prefix,
        tablesOf([
          { revisionName: "hello-00001", percent: 50 },
          { revisionName: "hello-00002", percent: 50, tag: "canary" },
        ]),
      );
      expect(second.sort()).toEqual(["hello.ns.localhost", "old-hello.ns.localhost"]);
      const all = await redis.hgetall(keys.hosts);
      expect(Object.keys(all).sort()).toEqual(["canary-hello.ns.localhost", "hello.ns.localhost"]);
      expect(parseRoutingEntry(all["hello.ns.localhost"] as string)?.targets).toHaveLength(2);
      expect(await redis.smembers(keys.routeHosts("ns", "hello"))).toHaveLength(2);
      await waitFor("five routing messages", () => messages.length === 5, 5_000, 5);
      expect(messages.sort()).toEqual([...first, ...second].sort());
    } finally {
      sub.disconnect();
    }
  });

  it("never removes a host another route has taken over", async () => {
    // Route "a-b" owns a-b.ns.localhost; then route "b" claims it as tag "a".
    await publishRouting(
      redis,
      prefix,
      routingTables(
        routeObject("ns", "a-b", [{ revisionName: "hello-00001", percent: 100 }]),
        revisions,
        "localhost",
      ),
    );
    await publishRouting(
      redis,
      prefix,
      tablesOf([{ revisionName: "hello-00002", percent: 100, tag: "a" }], "b"),
    );
    expect(
      parseRoutingEntry((await redis.hget(keys.hosts, "a-b.ns.localhost")) as string)?.service,
    ).toBe("b");
    expect(await removeRouting(redis, prefix, "ns", "a-b")).toEqual([]);
    expect(await redis.hexists(keys.hosts, "a-b.ns.localhost")).toBe(1);
    expect((await removeRouting(redis, prefix, "ns", "b")).sort()).toEqual([
      "a-b.ns.localhost",
      "b.ns.localhost",
    ]);
  });
});

describe("parseRoutingEntry", () => {
  it("rejects entries that are not JSON or miss fields", () => {
    expect(parseRoutingEntry("{")).toBeUndefined();
    expect(parseRoutingEntry(JSON.stringify({ namespace: "ns", targets: [] }))).toBeUndefined();
    expect(
      parseRoutingEntry(
        JSON.stringify({
          namespace: "ns",
          service: "s",
          targets: [{ revision: "r", percent: 100, containerConcurrency: -1, timeoutSeconds: 1 }],
        }),
      ),
    ).toBeUndefined();
  });
});

describe("host and pick", () => {
  it("normalizes Host: port, case and a trailing dot do not matter", () => {
    expect(normalizeHost("Hello.Default.LOCALHOST.:8080")).toBe("hello.default.localhost");
    expect(normalizeHost("hello.default.localhost")).toBe("hello.default.localhost");
    expect(normalizeHost("[::1]:8080")).toBe("[::1]");
    expect(normalizeHost(undefined)).toBeUndefined();
    expect(normalizeHost("")).toBeUndefined();
  });

  it("picks each target exactly over its share of [0, 1) and never one at 0%", () => {
    const route = compileRoute("h", {
      namespace: "ns",
      service: "s",
      targets: [
        { revision: "a", percent: 25, containerConcurrency: 0, timeoutSeconds: 1 },
        { revision: "zero", percent: 0, containerConcurrency: 0, timeoutSeconds: 1 },
        { revision: "b", percent: 75, containerConcurrency: 0, timeoutSeconds: 1 },
      ],
    });
    const at = (r: number) => pickTarget(route, () => r)?.revision;
    expect(at(0)).toBe("a");
    expect(at(0.2499)).toBe("a");
    expect(at(0.25)).toBe("b");
    expect(at(0.9999999)).toBe("b");
    // The grid over [0, 1) lands on each target in proportion, exactly.
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const rev = at(i / 1000) as string;
      counts[rev] = (counts[rev] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 250, b: 750 });
  });

  it("picks nothing when every target is at 0%", () => {
    const route = compileRoute("h", {
      namespace: "ns",
      service: "s",
      targets: [{ revision: "a", percent: 0, containerConcurrency: 0, timeoutSeconds: 1 }],
    });
    expect(pickTarget(route)).toBeUndefined();
  });
});
