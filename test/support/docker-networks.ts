/**
 * Tests that kill an agent (as a crash would) leave its install's bridge
 * behind: only a live agent of that cluster removes it. Docker's default
 * address pools hold about 30 bridges, so the run removes, at its end, the
 * Skiff bridges that it created (absent when it started) and that nothing
 * uses any more. Bridges that existed before the run are never touched.
 */
import Docker from "dockerode";

const MANAGED = { label: ["skiff.managed=true"] };

export async function skiffNetworks(docker = new Docker()): Promise<Set<string> | undefined> {
  try {
    return new Set((await docker.listNetworks({ filters: MANAGED })).map((n) => n.Id));
  } catch {
    return undefined; // No Docker engine: nothing to clean up.
  }
}

export async function removeNewIdleNetworks(
  before: Set<string>,
  docker = new Docker(),
): Promise<void> {
  for (const n of await docker.listNetworks({ filters: MANAGED })) {
    if (before.has(n.Id)) continue;
    const net = docker.getNetwork(n.Id);
    const detail = await net.inspect().catch(() => undefined);
    if (!detail || Object.keys(detail.Containers ?? {}).length > 0) continue;
    await net.remove().catch(() => {}); // In use meanwhile, or gone: leave it.
  }
}
