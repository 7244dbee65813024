/**
 * One pass of revision garbage collection: for every Configuration, the
 * revisions gc.ts selects (Knative's defaults) are deleted one transaction
 * each through src/control/delete.ts, which refuses a revision that is
 * routed or its configuration's latest. Revisions that published routing
 * tables still send traffic to (a Route waiting for a new target keeps its
 * old tables) count as routed too.
 */
import { deleteRevision, routedRevisions } from "../src/control/delete.ts";
import { controllerOf } from "../src/control/objects.ts";
import { ConflictError, NotFoundError } from "../src/errors.ts";
import type { Logger } from "../src/logging.ts";
import type { Configuration, Revision, Route } from "../src/model/types.ts";
import { Labels } from "../src/model/types.ts";
import type { Store } from "../src/store/store.ts";
import { type GcSettings, selectRevisionsToDelete } from "./gc.ts";

export interface GcPassInput {
  store: Pick<Store, "transact">;
  configurations: readonly Configuration[];
  revisions: readonly Revision[];
  routes: readonly Route[];
  /** "{ns}/{rev}" that published routing tables send traffic to. */
  published: ReadonlySet<string>;
  settings: GcSettings;
  nowMs: number;
  logger: Logger;
  /** Checked before each delete. */
  canWrite(): boolean;
}

function ownedBy(rev: Revision, config: Configuration): boolean {
  const owner = controllerOf(rev);
  return owner
    ? owner.kind === "Configuration" && owner.uid === config.metadata.uid
    : rev.metadata.labels?.[Labels.configuration] === config.metadata.name;
}

/** Returns the "{ns}/{rev}" deleted. */
export async function collectRevisions(input: GcPassInput): Promise<string[]> {
  const deleted: string[] = [];
  for (const config of input.configurations) {
    const ns = config.metadata.namespace;
    const mine = input.revisions.filter((r) => r.metadata.namespace === ns && ownedBy(r, config));
    if (mine.length === 0) continue;
    const routed = new Set<string>();
    for (const route of input.routes) {
      if (route.metadata.namespace !== ns) continue;
      for (const name of routedRevisions(route)) routed.add(name);
    }
    for (const r of mine) {
      if (input.published.has(`${ns}/${r.metadata.name}`)) routed.add(r.metadata.name);
    }
    const names = selectRevisionsToDelete({
      revisions: mine,
      latestReadyRevisionName: config.status.latestReadyRevisionName,
      latestCreatedRevisionName: config.status.latestCreatedRevisionName,
      routed,
      nowMs: input.nowMs,
      settings: input.settings,
    });
    for (const name of names) {
      if (!input.canWrite()) return deleted;
      try {
        await input.store.transact((tx) => deleteRevision(tx, ns, name));
        deleted.push(`${ns}/${name}`);
        input.logger.info({ revision: `${ns}/${name}` }, "revision garbage-collected");
      } catch (err) {
        // Routed or latest since we looked, or already gone: the next pass sees the new state.
        if (err instanceof ConflictError || err instanceof NotFoundError) continue;
        throw err;
      }
    }
  }
  return deleted;
}
