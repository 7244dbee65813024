/** Which revisions routes reference (Knative's routingState), from the cache alone. */
import { describe, expect, it } from "vitest";
import { routingStates } from "../../../scaler/controllers/routing-states.ts";
import type { Configuration, Route } from "../../../src/model/types.ts";

type Target = { revisionName?: string; configurationName?: string; percent: number };

function route(name: string, spec: Target[], status: Target[] = []): Route {
  return {
    metadata: { namespace: "default", name },
    spec: { traffic: spec },
    status: { traffic: status },
  } as unknown as Route;
}

function configuration(name: string, latestCreatedRevisionName?: string): Configuration {
  return {
    metadata: { namespace: "default", name },
    status: latestCreatedRevisionName ? { latestCreatedRevisionName } : {},
  } as unknown as Configuration;
}

function cache(routes: Route[], configurations: Configuration[]) {
  return {
    routes: new Map(routes.map((r) => [`default/${r.metadata.name}`, r])),
    configurations: new Map(configurations.map((c) => [`default/${c.metadata.name}`, c])),
  };
}

describe("routingStates", () => {
  it("published and resolved revisions are active; a configuration's latest not yet resolved is pending", () => {
    const states = routingStates(
      new Set(["default/pub-00001"]),
      cache(
        [
          route(
            "a",
            [{ configurationName: "a", percent: 100 }],
            [{ revisionName: "a-00001", percent: 100 }],
          ),
          route("b", [{ configurationName: "b", percent: 100 }]),
        ],
        [configuration("a", "a-00002"), configuration("b", "b-00001")],
      ),
    );
    expect(Object.fromEntries(states)).toEqual({
      "default/pub-00001": "active",
      "default/a-00001": "active",
      "default/a-00002": "pending",
      "default/b-00001": "pending",
    });
  });

  it("a revision both resolved and latest stays active; a pinned target or a configuration without a revision adds nothing", () => {
    const states = routingStates(
      new Set(),
      cache(
        [
          route(
            "a",
            [{ configurationName: "a", percent: 100 }],
            [{ revisionName: "a-00001", percent: 100 }],
          ),
          route("p", [{ revisionName: "p-00001", percent: 100 }]),
          route("n", [{ configurationName: "n", percent: 100 }]),
        ],
        [configuration("a", "a-00001"), configuration("n")],
      ),
    );
    expect(Object.fromEntries(states)).toEqual({ "default/a-00001": "active" });
  });
});
