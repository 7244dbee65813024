/**
 * Revision garbage collection: which of a configuration's revisions to
 * delete. Pure; Knative's v2 collector (pkg/reconciler/gc/v2) with its
 * config-gc defaults.
 *
 * - Active revisions are never collected: the configuration's latest ready
 *   revision, any revision a route references, any annotated
 *   `serving.knative.dev/no-gc: "true"`, and (Skiff's stand-in for Knative's
 *   "pending" routing state) the latest created revision while it is not
 *   ready yet.
 * - Nothing happens while the configuration has at most
 *   min-non-active-revisions revisions in all, or non-active ones.
 * - Stale non-active revisions (created more than retain-since-create-time
 *   ago AND last active more than retain-since-last-active-time ago) are
 *   deleted oldest first, as long as min-non-active-revisions remain.
 * - If all stale ones went and more than max-non-active-revisions non-stale
 *   non-active ones remain, the oldest beyond that number go too.
 *
 * "Last active" is the `serving.knative.dev/routingStateModified` annotation
 * (the last time the revision was routed), a caller-supplied time, or else
 * the creation time. Ties order by configurationGeneration, then name.
 */
import {
  defaultGcSettings,
  GC_DISABLED,
  type GcSettings,
  type GcSettingsInput,
  gcSettingsSchema,
} from "../src/config/scaler.ts";
import { Annotations, Labels } from "../src/model/types.ts";

// The settings (Knative's config-gc and its defaults) are part of the configuration model.
export { defaultGcSettings, GC_DISABLED, type GcSettings, type GcSettingsInput, gcSettingsSchema };

/** The parts of a Revision GC looks at (a full Revision fits). */
export interface GcRevision {
  metadata: {
    name: string;
    creationTimestamp: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
}

export interface GcInput {
  /** All revisions of one configuration. */
  revisions: readonly GcRevision[];
  latestReadyRevisionName?: string;
  /** Protected while it is not the latest ready one (it may still become ready). */
  latestCreatedRevisionName?: string;
  /** Names of revisions any route references now. */
  routed: Iterable<string>;
  /** Last time a revision was routed (ms), where known better than its annotation. */
  lastRoutedMs?: Readonly<Record<string, number>>;
  nowMs: number;
  settings?: GcSettings;
}

interface Candidate {
  name: string;
  createdMs: number;
  lastActiveMs: number;
  generation: number;
}

function timeOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Names of the revisions to delete, in the order they should go. */
export function selectRevisionsToDelete(input: GcInput): string[] {
  const s = input.settings ?? defaultGcSettings;
  const min = s.minNonActiveRevisions;
  const max = s.maxNonActiveRevisions;
  const sinceCreate = s.retainSinceCreateTime;
  const sinceActive = s.retainSinceLastActiveTime;
  if (max === GC_DISABLED && sinceCreate === GC_DISABLED && sinceActive === GC_DISABLED) return [];
  if (input.revisions.length <= min) return [];

  const routed = new Set(input.routed);
  const isActive = (r: GcRevision) =>
    r.metadata.name === input.latestReadyRevisionName ||
    r.metadata.name === input.latestCreatedRevisionName ||
    routed.has(r.metadata.name) ||
    r.metadata.annotations?.[Annotations.noGc]?.toLowerCase() === "true";

  const nonActive: Candidate[] = [];
  for (const r of input.revisions) {
    if (isActive(r)) continue;
    // An unreadable creation time counts as "now": never stale, sorted last.
    const createdMs = timeOf(r.metadata.creationTimestamp) ?? input.nowMs;
    const lastActiveMs =
      input.lastRoutedMs?.[r.metadata.name] ??
      timeOf(r.metadata.annotations?.[Annotations.routingStateModified]) ??
      createdMs;
    const generation = Number(r.metadata.labels?.[Labels.configurationGeneration] ?? Number.NaN);
    nonActive.push({
      name: r.metadata.name,
      createdMs,
      lastActiveMs,
      generation: Number.isFinite(generation) ? generation : Number.MAX_SAFE_INTEGER,
    });
  }
  if (nonActive.length <= min) return [];

  // Oldest first.
  nonActive.sort(
    (a, b) =>
      a.lastActiveMs - b.lastActiveMs ||
      a.generation - b.generation ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );

  const isStale = (c: Candidate) => {
    if (sinceCreate === GC_DISABLED && sinceActive === GC_DISABLED) return false;
    if (sinceCreate !== GC_DISABLED && input.nowMs - c.createdMs < sinceCreate) return false;
    if (sinceActive !== GC_DISABLED && input.nowMs - c.lastActiveMs < sinceActive) return false;
    return true;
  };

  const stale = nonActive.filter(isStale);
  const fresh = nonActive.filter((c) => !isStale(c));
  const room = nonActive.length - min;
  if (stale.length >= room) return stale.slice(0, room).map((c) => c.name);

  const out = stale.map((c) => c.name);
  if (max !== GC_DISABLED && fresh.length > max) {
    out.push(...fresh.slice(0, fresh.length - max).map((c) => c.name));
  }
  return out;
}
