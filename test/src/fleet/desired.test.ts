/** The one desired-set writer (src/fleet/desired.ts), fenced and not, against the run's Redis. */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, test } from "vitest";
import { NotLeaderError, ValidationError } from "../../../src/errors.ts";
import { DesiredWriter, writeDesired } from "../../../src/fleet/desired.ts";
import type { DesiredInstance } from "../../../src/fleet/types.ts";
import { fleetOn, uniquePrefix } from "../../support/redis.ts";

const prefix = uniquePrefix("desired");
const leaseKey = `${prefix}scaler:leader`;
const { fleet, redis: raw, close } = fleetOn(prefix);
afterAll(close);

const uid = () => randomBytes(3).toString("hex");
const desired = (id: string): DesiredInstance => ({
  id,
  namespace: "default",
  revision: "hello-00001",
  runtime: "container",
});
const ids = async (agent: string) => (await fleet.readDesired(agent)).map((d) => d.id).sort();

function writer(lease: () => string | undefined): DesiredWriter {
  return new DesiredWriter({ redis: raw, prefix, leaseKey, leaseValue: lease });
}

describe("fenced writes (the scaler's)", () => {
  test("while the lease holds our value, adds and removes land and are announced once", async () => {
    const agent = `a-${uid()}`;
    const value = `v-${uid()}`;
    await raw.set(leaseKey, value);
    const messages: string[] = [];
    const off = await fleet.subscribe("desired", (m) => messages.push(m));
    const w = writer(() => value);
    await w.write(agent, { add: [desired("i1"), desired("i2")] });
    await w.write(agent, { add: [desired("i3")], remove: ["i1"] });
    expect(await ids(agent)).toEqual(["i2", "i3"]);
    await w.write(agent, { clear: true });
    expect(await ids(agent)).toEqual([]);
    await expect.poll(() => messages.filter((m) => m === agent).length).toBe(3);
    await off();
  });

  test("a write after another scaler took the lease is refused with NotLeaderError and changes nothing", async () => {
    const agent = `a-${uid()}`;
    await raw.set(leaseKey, "ours");
    const w = writer(() => "ours");
    await w.write(agent, { add: [desired("i1")] });
    await raw.set(leaseKey, "theirs");
    const err = await w.write(agent, { clear: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotLeaderError);
    expect((err as NotLeaderError).code).toBe("NOT_LEADER");
    expect(await ids(agent)).toEqual(["i1"]);
  });

  test("a writer that knows it no longer leads writes nothing", async () => {
    const agent = `a-${uid()}`;
    const err = await writer(() => undefined)
      .write(agent, { add: [desired("i1")] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotLeaderError);
    expect(await ids(agent)).toEqual([]);
  });

  test("agentsWithDesired finds every agent that has a desired set", async () => {
    const a = `a-${uid()}`;
    const b = `b-${uid()}`;
    await fleet.putDesired(a, [desired("i1")]);
    await fleet.putDesired(b, [desired("i2")]);
    const found = await writer(() => "x").agentsWithDesired();
    expect(found).toEqual(expect.arrayContaining([a, b]));
  });
});

describe("the writer itself", () => {
  test("an invalid instance is refused with its index named, and nothing is written", async () => {
    const agent = `a-${uid()}`;
    const err = await writeDesired(fleet, agent, {
      add: [desired("ok"), { ...desired("bad"), namespace: "a/b" }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).causes[0]?.field).toBe("[1].namespace");
    expect(await ids(agent)).toEqual([]);
  });

  test("an agent id that cannot be a key segment is refused", async () => {
    const err = await writeDesired(fleet, "bad id", { add: [desired("i1")] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).causes[0]?.field).toBe("id");
  });
});
