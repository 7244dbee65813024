/** The upstream pools' isolate hand-over bookkeeping (clock injected; no connection is made). */
import { afterEach, describe, expect, it } from "vitest";
import { createUpstreamAgents, type UpstreamAgents } from "../../gateway/upstream-agents.ts";

let t = 0;
let agents: UpstreamAgents | undefined;
const make = () => {
  t = 1_000;
  agents = createUpstreamAgents(() => t);
  return agents;
};
afterEach(() => agents?.close());

const ORIGIN = "http://127.0.0.1:4100";

describe("upstream agents", () => {
  it("keeps requests on the kept-alive pool when no process is being replaced", () => {
    const a = make();
    const route = a.routeFor("http1", ORIGIN);
    expect(route.reset).toBe(false);
    expect(route.dispatcher).toBe(a.agentFor("http1"));
    expect(a.handingOver(ORIGIN)).toBe(false);
  });

  it("sends an origin's requests on one-use connections from a draining answer until its stop plus a margin", () => {
    const a = make();
    a.draining(ORIGIN, 3_000);
    const route = a.routeFor("http1", ORIGIN);
    expect(route.reset).toBe(true);
    expect(route.dispatcher).not.toBe(a.agentFor("http1"));
    expect(a.handingOver(ORIGIN)).toBe(true);
    // Another origin (another process) is untouched.
    expect(a.routeFor("http1", "http://127.0.0.1:4101").reset).toBe(false);
    t += 3_000 + 1_999;
    expect(a.routeFor("http1", ORIGIN).reset).toBe(true);
    t += 1;
    expect(a.routeFor("http1", ORIGIN).reset).toBe(false);
    expect(a.handingOver(ORIGIN)).toBe(false);
  });

  it("bounds what an answer can claim: at most a minute, never a negative or non-numeric time", () => {
    const a = make();
    a.draining(ORIGIN, Number("soon"));
    a.draining(ORIGIN, -5);
    expect(a.handingOver(ORIGIN)).toBe(false);
    a.draining(ORIGIN, 1e12);
    t += 62_000;
    expect(a.handingOver(ORIGIN)).toBe(false);
  });

  it("never moves h2c endpoints (containers) to one-use connections", () => {
    const a = make();
    a.draining(ORIGIN, 3_000);
    expect(a.routeFor("h2c", ORIGIN)).toEqual({ dispatcher: a.agentFor("h2c"), reset: false });
  });
});
