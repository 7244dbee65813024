/** Services written straight into a store, as the deploy API writes them, for tests of what reads the store. */
import { prepareService } from "../../deploy/api/prepare.ts";
import { applyService } from "../../src/control/apply.ts";
import type { RedisStore } from "../../src/store/index.ts";
import type { Manifest } from "./fixtures.ts";

/**
 * Create (or, with mode "replace", replace) a Service in `default` the way the
 * deploy API does: prepare (a worker's bundle included) and apply in one
 * transaction, so its Revision exists. Returns the latest created revision's name.
 */
export async function deployService(
  store: RedisStore,
  body: Manifest,
  options: { mode?: "create" | "replace"; domain?: string } = {},
): Promise<string> {
  const mode = options.mode ?? "create";
  const { parsed, worker } = await prepareService(body, {
    namespace: "default",
    name: mode === "replace" ? (body.metadata?.name as string) : undefined,
    limits: { maxWorkerSourceBytes: 1 << 20 },
  });
  const { value } = await store.transact((tx) =>
    applyService(tx, parsed, {
      mode,
      domain: options.domain ?? "example.test",
      scheme: "http",
      worker,
    }),
  );
  return value.status.latestCreatedRevisionName as string;
}
