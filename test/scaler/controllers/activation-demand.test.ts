/** activationRequested: which gateway signs count as a revision's activation in a pass. Pure. */
import { describe, expect, it } from "vitest";
import { activationRequested } from "../../../scaler/controllers/activation-demand.ts";

const none = { ready: 0, signalled: false, keyed: false, queued: 0 };

describe("activationRequested", () => {
  it("a signal since the last pass is demand even when an instance is ready already (a resumed standby)", () => {
    expect(activationRequested({ ...none, signalled: true })).toBe(true);
    expect(activationRequested({ ...none, signalled: true, ready: 1 })).toBe(true);
  });

  it("an activation key or queued requests count only while nothing is ready", () => {
    expect(activationRequested({ ...none, keyed: true })).toBe(true);
    expect(activationRequested({ ...none, queued: 3 })).toBe(true);
    expect(activationRequested({ ...none, keyed: true, queued: 3, ready: 1 })).toBe(false);
  });

  it("no sign, no demand", () => {
    expect(activationRequested(none)).toBe(false);
  });
});
