import { describe, expect, it } from "vitest";
import {
  GC_DISABLED,
  type GcInput,
  type GcRevision,
  type GcSettingsInput,
  gcSettingsSchema,
  selectRevisionsToDelete,
} from "../../scaler/gc.ts";

const HOUR = 3_600_000;
const NOW = Date.parse("2026-03-01T00:00:00Z");
const ago = (h: number) => new Date(NOW - h * HOUR).toISOString();

/** Revision `hello-0000{gen}`, created `createdH` hours ago, last routed `routedH` hours ago. */
function rev(
  gen: number,
  createdH: number,
  extra: { routedH?: number; noGc?: string } = {},
): GcRevision {
  const annotations: Record<string, string> = {};
  if (extra.routedH !== undefined) {
    annotations["serving.knative.dev/routingStateModified"] = ago(extra.routedH);
  }
  if (extra.noGc !== undefined) annotations["serving.knative.dev/no-gc"] = extra.noGc;
  return {
    metadata: {
      name: `hello-${String(gen).padStart(5, "0")}`,
      creationTimestamp: ago(createdH),
      labels: { "serving.knative.dev/configurationGeneration": String(gen) },
      annotations,
    },
  };
}

const name = (gen: number) => `hello-${String(gen).padStart(5, "0")}`;

function select(
  revisions: GcRevision[],
  settings: GcSettingsInput = {},
  extra: Partial<GcInput> = {},
): string[] {
  return selectRevisionsToDelete({
    revisions,
    routed: [],
    nowMs: NOW,
    settings: gcSettingsSchema.parse(settings),
    ...extra,
  });
}

/** `n` old revisions (created 100 h ago, unrouted), generations 1..n. */
const old = (n: number) => Array.from({ length: n }, (_, i) => rev(i + 1, 100 + n - i));

describe("revision GC (Knative defaults)", () => {
  it("keeps everything while there are at most 20 non-active revisions", () => {
    expect(select(old(20))).toEqual([]);
    expect(select(old(21), {}, { latestReadyRevisionName: name(21) })).toEqual([]);
  });

  it("deletes stale revisions oldest first, keeping 20 non-active ones", () => {
    expect(select(old(23))).toEqual([name(1), name(2), name(3)]);
  });

  it("never deletes the latest ready revision", () => {
    const s = { minNonActiveRevisions: 0 };
    expect(select(old(3), s, { latestReadyRevisionName: name(1) })).toEqual([name(2), name(3)]);
  });

  it("never deletes a routed revision", () => {
    const s = { minNonActiveRevisions: 0 };
    expect(select(old(3), s, { routed: [name(1), name(3)] })).toEqual([name(2)]);
  });

  it('never deletes a revision annotated serving.knative.dev/no-gc: "true"', () => {
    const revs = [
      rev(1, 100, { noGc: "true" }),
      rev(2, 100, { noGc: "True" }),
      rev(3, 100, { noGc: "false" }),
    ];
    expect(select(revs, { minNonActiveRevisions: 0 })).toEqual([name(3)]);
  });

  it("never deletes the latest created revision while it is not ready yet", () => {
    const s = { minNonActiveRevisions: 0 };
    expect(
      select(old(2), s, { latestCreatedRevisionName: name(2), latestReadyRevisionName: name(1) }),
    ).toEqual([]);
  });

  it("keeps a revision created less than 48 h ago", () => {
    const revs = [rev(1, 47), rev(2, 49)];
    expect(select(revs, { minNonActiveRevisions: 0 })).toEqual([name(2)]);
  });

  it("keeps a revision routed less than 15 h ago, by its routingStateModified annotation", () => {
    const revs = [rev(1, 100, { routedH: 14 }), rev(2, 100, { routedH: 16 })];
    expect(select(revs, { minNonActiveRevisions: 0 })).toEqual([name(2)]);
  });

  it("takes a caller-supplied last-routed time over the annotation", () => {
    const revs = [rev(1, 100, { routedH: 50 })];
    expect(
      select(revs, { minNonActiveRevisions: 0 }, { lastRoutedMs: { [name(1)]: NOW - HOUR } }),
    ).toEqual([]);
  });

  it("orders by last active time, not creation: the longest unrouted goes first", () => {
    const revs = [rev(1, 200, { routedH: 20 }), rev(2, 150, { routedH: 90 }), rev(3, 80)];
    expect(select(revs, { minNonActiveRevisions: 2, maxNonActiveRevisions: 5 })).toEqual([name(2)]);
  });

  it("deletes the oldest non-stale revisions beyond max-non-active-revisions", () => {
    // Six recent (not stale) revisions, min 2, max 3: the three oldest go.
    const revs = Array.from({ length: 6 }, (_, i) => rev(i + 1, 10 - i));
    expect(select(revs, { minNonActiveRevisions: 2, maxNonActiveRevisions: 3 })).toEqual([
      name(1),
      name(2),
      name(3),
    ]);
  });

  it("counts only non-stale revisions against max once the stale ones are gone", () => {
    const revs = [
      rev(1, 100),
      rev(2, 100),
      ...Array.from({ length: 4 }, (_, i) => rev(i + 3, 10 - i)),
    ];
    expect(select(revs, { minNonActiveRevisions: 1, maxNonActiveRevisions: 3 })).toEqual([
      name(1),
      name(2),
      name(3),
    ]);
  });

  it("does nothing when every rule is disabled", () => {
    const off = {
      minNonActiveRevisions: 0,
      maxNonActiveRevisions: "disabled",
      retainSinceCreateTime: "disabled",
      retainSinceLastActiveTime: "disabled",
    } as const;
    expect(select(old(30), off)).toEqual([]);
  });

  it("with both time rules disabled, only max applies", () => {
    const s = {
      minNonActiveRevisions: 0,
      maxNonActiveRevisions: 2,
      retainSinceCreateTime: GC_DISABLED,
      retainSinceLastActiveTime: GC_DISABLED,
    };
    expect(select(old(4), s)).toEqual([name(1), name(2)]);
  });
});

describe("GC settings", () => {
  it("default to Knative's config-gc values", () => {
    expect(gcSettingsSchema.parse({})).toEqual({
      retainSinceCreateTime: 48 * HOUR,
      retainSinceLastActiveTime: 15 * HOUR,
      minNonActiveRevisions: 20,
      maxNonActiveRevisions: 1000,
    });
  });

  it("accept Go durations and 'disabled'", () => {
    expect(
      gcSettingsSchema.parse({
        retainSinceCreateTime: "1h30m",
        retainSinceLastActiveTime: "disabled",
      }),
    ).toMatchObject({ retainSinceCreateTime: 90 * 60_000, retainSinceLastActiveTime: GC_DISABLED });
  });

  it("reject min above max and bad durations", () => {
    expect(() =>
      gcSettingsSchema.parse({ minNonActiveRevisions: 5, maxNonActiveRevisions: 4 }),
    ).toThrow(/minNonActiveRevisions/);
    expect(() => gcSettingsSchema.parse({ retainSinceCreateTime: "48" })).toThrow(/Go duration/);
  });
});
