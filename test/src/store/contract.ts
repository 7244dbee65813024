/**
 * The behaviour every Store implementation must show (see src/store/store.ts).
 * A test file calls describeStoreContract with a factory that returns a fresh,
 * empty, isolated store for each test.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConflictError } from "../../../src/errors.ts";
import type { Store, StoreEvent, Tx } from "../../../src/store/store.ts";
import { gate, revision, service } from "./fixtures.ts";

const NS = "default";

export function describeStoreContract(name: string, open: () => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    /** Wait for events until `last` arrives; return everything received before it. */
    async function eventsUntil(
      events: StoreEvent[],
      last: (e: StoreEvent) => boolean,
    ): Promise<StoreEvent[]> {
      await vi.waitFor(() => expect(events.some(last)).toBe(true), { timeout: 5000 });
      return events.slice(0, events.findIndex(last));
    }

    describe("reads and writes", () => {
      it("put then get round-trips the object with its assigned resourceVersion", async () => {
        const svc = service(NS, "hello", { labels: { app: "a" } });
        const { resourceVersion } = await store.transact(async (tx) => tx.put(svc));
        const got = await store.get("services", NS, "hello");
        expect(resourceVersion).not.toBe("");
        expect(got).toEqual({ ...svc, metadata: { ...svc.metadata, resourceVersion } });
      });

      it("get of an object that was never written returns undefined", async () => {
        expect(await store.get("services", NS, "nope")).toBeUndefined();
      });

      it("the same name under another kind or namespace is a different object", async () => {
        await store.transact(async (tx) => tx.put(service(NS, "x")));
        expect(await store.get("revisions", NS, "x")).toBeUndefined();
        expect(await store.get("services", "other", "x")).toBeUndefined();
      });

      it("list returns the objects of one namespace, sorted by name", async () => {
        await store.transact(async (tx) => {
          tx.put(service(NS, "b"));
          tx.put(service(NS, "a"));
          tx.put(service("other", "c"));
          tx.put(revision(NS, "a-00001"));
        });
        const names = (await store.list("services", NS)).map((s) => s.metadata.name);
        expect(names).toEqual(["a", "b"]);
      });

      it("list without a namespace returns the kind across all namespaces", async () => {
        await store.transact(async (tx) => {
          tx.put(service("ns-b", "one"));
          tx.put(service("ns-a", "two"));
          tx.put(revision("ns-c", "r-00001"));
        });
        const all = (await store.list("services")).map(
          (s) => `${s.metadata.namespace}/${s.metadata.name}`,
        );
        expect(all).toEqual(["ns-a/two", "ns-b/one"]);
      });

      it("list with a label selector returns only objects carrying every given label", async () => {
        const owner = "serving.knative.dev/service";
        await store.transact(async (tx) => {
          tx.put(revision(NS, "hello-00001", { labels: { [owner]: "hello", tier: "web" } }));
          tx.put(revision(NS, "hello-00002", { labels: { [owner]: "hello" } }));
          tx.put(revision(NS, "other-00001", { labels: { [owner]: "other", tier: "web" } }));
        });
        const byOwner = await store.list("revisions", NS, { labels: { [owner]: "hello" } });
        const both = await store.list("revisions", undefined, {
          labels: { [owner]: "hello", tier: "web" },
        });
        expect(byOwner.map((r) => r.metadata.name)).toEqual(["hello-00001", "hello-00002"]);
        expect(both.map((r) => r.metadata.name)).toEqual(["hello-00001"]);
      });

      it("every commit assigns a new resourceVersion, increasing as a decimal integer", async () => {
        const versions: string[] = [];
        for (let i = 0; i < 5; i++) {
          const { resourceVersion } = await store.transact(async (tx) =>
            tx.put(service(NS, "same")),
          );
          versions.push(resourceVersion);
          expect((await store.get("services", NS, "same"))?.metadata.resourceVersion).toBe(
            resourceVersion,
          );
        }
        const numbers = versions.map((v) => BigInt(v));
        expect(new Set(versions).size).toBe(5);
        for (let i = 1; i < numbers.length; i++) expect(numbers[i]! > numbers[i - 1]!).toBe(true);
      });

      it("all objects written by one commit share its resourceVersion", async () => {
        const { resourceVersion } = await store.transact(async (tx) => {
          tx.put(service(NS, "a"));
          tx.put(revision(NS, "a-00001"));
        });
        expect((await store.get("services", NS, "a"))?.metadata.resourceVersion).toBe(
          resourceVersion,
        );
        expect((await store.get("revisions", NS, "a-00001"))?.metadata.resourceVersion).toBe(
          resourceVersion,
        );
      });

      it("a commit sets metadata.resourceVersion on the objects passed to tx.put", async () => {
        const svc = service(NS, "hello");
        const { resourceVersion } = await store.transact(async (tx) => tx.put(svc));
        expect(svc.metadata.resourceVersion).toBe(resourceVersion);
      });

      it("a later put of the same object in one transaction replaces the earlier one", async () => {
        await store.transact(async (tx) => {
          tx.put(service(NS, "hello", { annotations: { v: "1" } }));
          tx.put(service(NS, "hello", { annotations: { v: "2" } }));
        });
        expect((await store.get("services", NS, "hello"))?.metadata.annotations).toEqual({
          v: "2",
        });
      });

      it("delete removes the object from get and list, and deletes its artifact", async () => {
        await store.transact(async (tx) => {
          tx.put(revision(NS, "hello-00001"));
          tx.put(revision(NS, "hello-00002"));
          tx.putArtifact(NS, "hello-00001", "bundle-1");
        });
        await store.transact(async (tx) => tx.delete("revisions", NS, "hello-00001"));
        expect(await store.get("revisions", NS, "hello-00001")).toBeUndefined();
        expect((await store.list("revisions", NS)).map((r) => r.metadata.name)).toEqual([
          "hello-00002",
        ]);
        expect((await store.list("revisions")).map((r) => r.metadata.name)).toEqual([
          "hello-00002",
        ]);
        expect(await store.getArtifact(NS, "hello-00001")).toBeUndefined();
      });

      it("deleting the last object of a namespace drops the namespace from cross-namespace lists", async () => {
        await store.transact(async (tx) => tx.put(service("gone", "only")));
        await store.transact(async (tx) => tx.delete("services", "gone", "only"));
        expect(await store.list("services")).toEqual([]);
        expect(await store.list("services", "gone")).toEqual([]);
      });

      it("deleting an object that does not exist writes nothing", async () => {
        const result = await store.transact(async (tx) => tx.delete("services", NS, "ghost"));
        expect(result.resourceVersion).toBe("");
      });

      it("putArtifact stores content that getArtifact returns; a missing artifact is undefined", async () => {
        const bundle = `export default { fetch() { return new Response("hi ✓"); } };\n`.repeat(100);
        await store.transact(async (tx) => tx.putArtifact(NS, "hello-00001", bundle));
        expect(await store.getArtifact(NS, "hello-00001")).toBe(bundle);
        expect(await store.getArtifact(NS, "hello-00002")).toBeUndefined();
      });

      it("a putArtifact staged before deleting its revision in the same transaction is dropped", async () => {
        await store.transact(async (tx) => {
          tx.put(revision(NS, "r-00001"));
          tx.putArtifact(NS, "r-00001", "old");
        });
        await store.transact(async (tx) => {
          tx.putArtifact(NS, "r-00001", "new");
          tx.delete("revisions", NS, "r-00001");
        });
        expect(await store.getArtifact(NS, "r-00001")).toBeUndefined();
      });

      it("ping resolves while the store is reachable", async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });

    describe("transactions", () => {
      it("a transaction reads its own staged writes (get and list)", async () => {
        await store.transact(async (tx) => tx.put(service(NS, "old")));
        const seen = await store.transact(async (tx) => {
          tx.put(service(NS, "new", { annotations: { staged: "yes" } }));
          tx.delete("services", NS, "old");
          return {
            got: await tx.get("services", NS, "new"),
            gone: await tx.get("services", NS, "old"),
            listed: (await tx.list("services", NS)).map((s) => s.metadata.name),
          };
        });
        expect(seen.value.got?.metadata.annotations).toEqual({ staged: "yes" });
        expect(seen.value.gone).toBeUndefined();
        expect(seen.value.listed).toEqual(["new"]);
      });

      it("a callback that throws writes nothing and its error propagates", async () => {
        const boom = new Error("boom");
        await expect(
          store.transact(async (tx) => {
            tx.put(service(NS, "a"));
            tx.putArtifact(NS, "a-00001", "x");
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(await store.get("services", NS, "a")).toBeUndefined();
        expect(await store.getArtifact(NS, "a-00001")).toBeUndefined();
      });

      it("dryRun runs the callback and returns its value but writes nothing", async () => {
        const svc = service(NS, "a");
        const result = await store.transact(
          async (tx) => {
            tx.put(svc);
            return "computed";
          },
          { dryRun: true },
        );
        expect(result).toEqual({ value: "computed", resourceVersion: "" });
        expect(await store.get("services", NS, "a")).toBeUndefined();
        expect(svc.metadata.resourceVersion).toBe("");
      });

      it("a transaction that only reads writes nothing and returns an empty resourceVersion", async () => {
        const result = await store.transact(async (tx) => (await tx.list("services", NS)).length);
        expect(result).toEqual({ value: 0, resourceVersion: "" });
      });

      /** Run `fn` once as the callback of a transaction, with `between` committed by another writer after it read; count the attempts. */
      async function raced(
        read: (tx: Tx) => Promise<unknown>,
        between: () => Promise<unknown>,
      ): Promise<number> {
        let attempts = 0;
        await store.transact(async (tx) => {
          attempts++;
          await read(tx);
          if (attempts === 1) await between();
          tx.put(service(NS, `writer-${attempts}`));
        });
        return attempts;
      }

      const setStatus = (name: string, message: string) =>
        store.transact(async (tx) => {
          const rev = (await tx.get("revisions", NS, name))!;
          rev.status = {
            ...rev.status,
            conditions: [
              {
                type: "Ready",
                status: "Unknown",
                message,
                lastTransitionTime: "2026-12-01T00:00:00Z",
              },
            ],
          };
          tx.put(rev);
        });

      it("a list depending on membership only is not disturbed by a member's change, but is by a new member", async () => {
        await store.transact(async (tx) => tx.put(revision(NS, "r1")));
        const list = (tx: Tx) => tx.list("revisions", NS, { depend: "membership" });
        expect(await raced(list, () => setStatus("r1", "changed"))).toBe(1);
        expect(
          await raced(list, () => store.transact(async (tx) => tx.put(revision(NS, "r2")))),
        ).toBe(2);
      });

      it("a list depending on nothing is a snapshot no other write disturbs", async () => {
        await store.transact(async (tx) => tx.put(revision(NS, "r1")));
        const list = (tx: Tx) => tx.list("revisions", NS, { depend: "none" });
        expect(await raced(list, () => setStatus("r1", "changed"))).toBe(1);
        expect(
          await raced(list, () => store.transact(async (tx) => tx.put(revision(NS, "r2")))),
        ).toBe(1);
      });

      it("a get depending on nothing is a snapshot its object's change does not disturb", async () => {
        await store.transact(async (tx) => tx.put(revision(NS, "r1")));
        const snapshot = (tx: Tx) => tx.get("revisions", NS, "r1", { depend: "none" });
        expect(await raced(snapshot, () => setStatus("r1", "changed"))).toBe(1);
        const dependent = (tx: Tx) => tx.get("revisions", NS, "r1");
        expect(await raced(dependent, () => setStatus("r1", "again"))).toBe(2);
      });

      it("names lists the committed names with this Tx's staged creates and deletes, and depends on nothing", async () => {
        await store.transact(async (tx) => {
          tx.put(revision(NS, "b"));
          tx.put(revision(NS, "a"));
        });
        await store.transact(async (tx) => {
          tx.put(revision(NS, "c"));
          tx.delete("revisions", NS, "b");
          expect(await tx.names("revisions", NS)).toEqual(["a", "c"]);
        });
        expect(await store.transact((tx) => tx.names("revisions", "elsewhere"))).toMatchObject({
          value: [],
        });
        const names = (tx: Tx) => tx.names("revisions", NS);
        expect(
          await raced(names, () => store.transact(async (tx) => tx.put(revision(NS, "d")))),
        ).toBe(1);
      });

      it("a default list is disturbed by a member's change (status included)", async () => {
        await store.transact(async (tx) => tx.put(revision(NS, "r1")));
        expect(
          await raced(
            (tx) => tx.list("revisions", NS),
            () => setStatus("r1", "x"),
          ),
        ).toBe(2);
      });

      /** A quota check as apply.ts does it: room for one more under `limit`, or throw. */
      async function quotaRace(
        measure: (tx: Tx, atMost: number) => Promise<number>,
        limit: number,
        between: () => Promise<unknown>,
      ): Promise<{ attempts: number; outcome: string }> {
        let attempts = 0;
        try {
          await store.transact(async (tx) => {
            attempts++;
            const used = await measure(tx, limit - 1);
            if (used + 1 > limit) throw new Error(`quota: ${used} used`);
            if (attempts === 1) await between();
            tx.put(service(NS, `writer-${attempts}`));
          });
          return { attempts, outcome: "committed" };
        } catch (err) {
          return { attempts, outcome: (err as Error).message };
        }
      }

      it("a bounded count is disturbed only when the collection outgrows the bound", async () => {
        await store.transact(async (tx) => tx.put(revision(NS, "r1")));
        const addRev = (name: string) => () =>
          store.transact(async (tx) => tx.put(revision(NS, name)));
        const count = (tx: Tx, atMost: number) => tx.count("revisions", NS, { atMost });
        // Limit 3, 1 used: another member (2) leaves room, the decision holds.
        expect(await quotaRace(count, 3, addRev("r2"))).toEqual({
          attempts: 1,
          outcome: "committed",
        });
        // 2 used: a third member fills the quota, the decision is taken again and refused.
        expect(await quotaRace(count, 3, addRev("r3"))).toEqual({
          attempts: 2,
          outcome: "quota: 3 used",
        });
      });

      it("artifactBytes counts artifacts written before it was first asked, then follows puts and deletes", async () => {
        await store.transact(async (tx) => {
          tx.put(revision(NS, "a"));
          tx.putArtifact(NS, "a", "x".repeat(100));
          tx.put(revision(NS, "b"));
          tx.putArtifact(NS, "b", "y".repeat(50));
        });
        const bytes = async () => (await store.transact((tx) => tx.artifactBytes(NS))).value;
        expect(await bytes()).toBe(150);
        await store.transact(async (tx) => {
          tx.put(revision(NS, "c"));
          tx.putArtifact(NS, "c", "z".repeat(7));
          tx.putArtifact(NS, "a", "x".repeat(10)); // replaced: 100 -> 10
        });
        expect(await bytes()).toBe(67);
        await store.transact(async (tx) => tx.delete("revisions", NS, "b"));
        expect(await bytes()).toBe(17);
        expect(await store.transact((tx) => tx.artifactBytes("other-ns"))).toMatchObject({
          value: 0,
        });
      });

      it("a bounded artifactBytes is disturbed only when the namespace's bytes pass the bound", async () => {
        await store.transact(async (tx) => {
          tx.put(revision(NS, "a"));
          tx.putArtifact(NS, "a", "x".repeat(10));
        });
        const addArt = (name: string, n: number) => () =>
          store.transact(async (tx) => {
            tx.put(revision(NS, name));
            tx.putArtifact(NS, name, "x".repeat(n));
          });
        const bytes = (tx: Tx, atMost: number) => tx.artifactBytes(NS, { atMost });
        // Limit 101 (room for 1 more byte): 10 -> 50 used leaves room.
        expect(await quotaRace(bytes, 101, addArt("b", 40))).toEqual({
          attempts: 1,
          outcome: "committed",
        });
        // 50 -> 110 used passes it: taken again and refused.
        expect(await quotaRace(bytes, 101, addArt("c", 60))).toEqual({
          attempts: 2,
          outcome: "quota: 110 used",
        });
      });

      it("a transaction whose read object is changed by another writer re-runs on fresh data", async () => {
        await store.transact(async (tx) => tx.put(service(NS, "hello")));
        let attempts = 0;
        await store.transact(async (tx) => {
          attempts++;
          const svc = (await tx.get("services", NS, "hello"))!;
          if (attempts === 1) {
            await store.transact(async (other) => {
              const fresh = (await other.get("services", NS, "hello"))!;
              fresh.metadata.annotations = { ...fresh.metadata.annotations, other: "1" };
              other.put(fresh);
            });
          }
          svc.metadata.annotations = { ...svc.metadata.annotations, mine: "1" };
          tx.put(svc);
        });
        expect(attempts).toBe(2);
        const final = await store.get("services", NS, "hello");
        expect(final?.metadata.annotations).toEqual({ other: "1", mine: "1" });
      });

      it("a transaction that read an object as absent re-runs when another writer creates it", async () => {
        let attempts = 0;
        const result = await store.transact(async (tx) => {
          attempts++;
          const existing = await tx.get("services", NS, "hello");
          if (attempts === 1)
            await store.transact(async (other) => other.put(service(NS, "hello")));
          if (existing) return "exists";
          tx.put(service(NS, "hello", { annotations: { by: "tx" } }));
          return "created";
        });
        expect({ attempts, value: result.value }).toEqual({ attempts: 2, value: "exists" });
        expect((await store.get("services", NS, "hello"))?.metadata.annotations).toBeUndefined();
      });

      it("20 parallel read-modify-write transactions on one object all land (no lost update)", async () => {
        await store.transact(async (tx) => tx.put(service(NS, "counter")));
        const increment = () =>
          store.transact(
            async (tx) => {
              const svc = (await tx.get("services", NS, "counter"))!;
              const n = Number(svc.metadata.annotations?.count ?? "0");
              svc.metadata.annotations = { count: String(n + 1) };
              tx.put(svc);
            },
            { maxAttempts: 100 },
          );
        const results = await Promise.all(Array.from({ length: 20 }, increment));
        const final = await store.get("services", NS, "counter");
        expect(final?.metadata.annotations?.count).toBe("20");
        expect(new Set(results.map((r) => r.resourceVersion)).size).toBe(20);
      });

      it("a list-based check is protected: two 'create if fewer than 1' transactions cannot both create", async () => {
        const bothListed = gate();
        let listed = 0;
        const createIfEmpty = (name: string) => {
          let first = true;
          return store.transact(async (tx) => {
            const existing = await tx.list("services", NS);
            if (first) {
              // Line both callbacks up so each has listed before either commits.
              first = false;
              if (++listed === 2) bothListed.open();
              await bothListed.opened;
            }
            if (existing.length >= 1) return false;
            tx.put(service(NS, name));
            return true;
          });
        };
        const results = await Promise.all([createIfEmpty("a"), createIfEmpty("b")]);
        expect(results.map((r) => r.value).sort()).toEqual([false, true]);
        expect(await store.list("services", NS)).toHaveLength(1);
      });

      it("a transaction re-runs when a member of a collection it listed changes", async () => {
        await store.transact(async (tx) => tx.put(revision(NS, "r-00001")));
        let attempts = 0;
        await store.transact(async (tx) => {
          attempts++;
          const revs = await tx.list("revisions", NS);
          if (attempts === 1) {
            await store.transact(async (other) => {
              const r = (await other.get("revisions", NS, "r-00001"))!;
              r.status = { desiredReplicas: 3 };
              other.put(r);
            });
          }
          const svc = service(NS, "summary", {
            annotations: { replicas: String(revs[0]?.status.desiredReplicas ?? 0) },
          });
          tx.put(svc);
        });
        expect(attempts).toBe(2);
        expect((await store.get("services", NS, "summary"))?.metadata.annotations).toEqual({
          replicas: "3",
        });
      });

      it("after maxAttempts lost races the store throws ConflictError (409) and writes nothing", async () => {
        await store.transact(async (tx) => tx.put(service(NS, "hot")));
        let attempts = 0;
        const attempt = store.transact(
          async (tx) => {
            attempts++;
            await tx.get("services", NS, "hot");
            // Another writer always gets in between the read and the commit.
            await store.transact(async (other) => other.put(service(NS, "hot")));
            tx.put(service(NS, "loser"));
          },
          { maxAttempts: 3 },
        );
        const err = await attempt.catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConflictError);
        expect(err).toMatchObject({ code: "CONFLICT", status: 409 });
        expect((err as Error).message).toMatch(/changed concurrently.*retry/);
        expect(attempts).toBe(3);
        expect(await store.get("services", NS, "loser")).toBeUndefined();
      });
    });

    describe("watch", () => {
      it("announces each written object once, with the commit's resourceVersion", async () => {
        await store.transact(async (tx) => tx.put(service(NS, "old")));
        const events: StoreEvent[] = [];
        await store.watch((e) => events.push(e));
        const { resourceVersion } = await store.transact(async (tx) => {
          tx.put(service(NS, "a"));
          tx.put(revision(NS, "a-00001"));
          tx.putArtifact(NS, "a-00001", "bundle");
          tx.delete("services", NS, "old");
          tx.delete("services", NS, "never-existed");
        });
        const sentinel = await store.transact(async (tx) => tx.put(service(NS, "sentinel")));
        const before = await eventsUntil(events, (e) => e.name === "sentinel");
        const byName = (a: StoreEvent, b: StoreEvent) => (a.name < b.name ? -1 : 1);
        expect(before.sort(byName)).toEqual([
          { type: "put", kind: "services", namespace: NS, name: "a", resourceVersion },
          { type: "put", kind: "revisions", namespace: NS, name: "a-00001", resourceVersion },
          { type: "delete", kind: "services", namespace: NS, name: "old", resourceVersion },
        ]);
        expect(events.find((e) => e.name === "sentinel")?.resourceVersion).toBe(
          sentinel.resourceVersion,
        );
      });

      it("announces nothing for a dry run or a failed callback", async () => {
        const events: StoreEvent[] = [];
        await store.watch((e) => events.push(e));
        await store.transact(async (tx) => tx.put(service(NS, "dry")), { dryRun: true });
        await store
          .transact(async (tx) => {
            tx.put(service(NS, "failed"));
            throw new Error("no");
          })
          .catch(() => {});
        await store.transact(async (tx) => tx.put(service(NS, "sentinel")));
        expect(await eventsUntil(events, (e) => e.name === "sentinel")).toEqual([]);
      });

      it("the function watch returns stops delivery to that handler only", async () => {
        const stopped: StoreEvent[] = [];
        const kept: StoreEvent[] = [];
        const unwatch = await store.watch((e) => stopped.push(e));
        await store.watch((e) => kept.push(e));
        await unwatch();
        await store.transact(async (tx) => tx.put(service(NS, "after")));
        await vi.waitFor(() => expect(kept.map((e) => e.name)).toEqual(["after"]), {
          timeout: 5000,
        });
        expect(stopped).toEqual([]);
      });
    });
  });
}
