/**
 * Redis keys and pub/sub channels of the fleet state (see docs/architecture.md).
 * `{p}` is the install's prefix (default "skiff:").
 *
 *   {p}fleet:agent:{id}                STRING  AgentRecord JSON, PX = heartbeat TTL
 *   {p}fleet:agents                    ZSET    agent id -> last heartbeat (ms); members whose
 *                                              record expired are dead and get pruned
 *   {p}fleet:desired:{agentId}         HASH    instance id -> DesiredInstance JSON (scaler writes)
 *   {p}fleet:instances:{agentId}       HASH    instance id -> InstanceStatus JSON (agent writes;
 *                                              PEXPIREd with each heartbeat, so it dies with the agent)
 *   {p}fleet:endpoints:{ns}:{rev}      HASH    instance id -> Endpoint JSON (agent writes, ready only)
 *   {p}fleet:endpoint-revisions        SET     "{ns}/{rev}" that have (or had) endpoints, for resync
 *   {p}fleet:agent-endpoints:{agentId} HASH    instance id -> "{ns}/{rev}": the endpoints an agent
 *                                              published (no TTL), so that its own resync, its
 *                                              deregistration and the pruning of a dead agent
 *                                              find them without scanning every revision
 *   {p}fleet:wake:{ns}:{rev}           STRING  "{agentId} {instanceId}" (an agent claimed the wake
 *                                              of its standby, SET NX) or "scaler" (the scaler
 *                                              placed it first); PX 5 s (src/fleet/wake.ts)
 *
 *   channel {p}fleet:desired           agent id whose desired set changed
 *   channel {p}fleet:endpoints         "{ns}/{rev}" whose endpoints changed
 *   channel {p}fleet:instances         agent id whose instance reports changed
 *   channel {p}fleet:agents            agent id that joined, left or changed
 *   channel {p}fleet:wake              "{ns}/{rev}" asked for at zero (a gateway publishes it
 *                                      with its activation signal, gateway/activation.ts)
 */
import { randomBytes } from "node:crypto";

export interface FleetKeys {
  agent(id: string): string;
  agents: string;
  desired(agentId: string): string;
  instances(agentId: string): string;
  endpoints(namespace: string, revision: string): string;
  endpointRevisions: string;
  /** Added with the agent: index of one agent's published endpoints. */
  agentEndpoints(agentId: string): string;
  /** Who woke a revision at zero (src/fleet/wake.ts). */
  wake(namespace: string, revision: string): string;
  channels: {
    desired: string;
    endpoints: string;
    instances: string;
    agents: string;
    wake: string;
  };
}

export function fleetKeys(prefix: string): FleetKeys {
  const p = `${prefix}fleet:`;
  return {
    agent: (id) => `${p}agent:${id}`,
    agents: `${p}agents`,
    desired: (agentId) => `${p}desired:${agentId}`,
    instances: (agentId) => `${p}instances:${agentId}`,
    endpoints: (ns, rev) => `${p}endpoints:${ns}:${rev}`,
    endpointRevisions: `${p}endpoint-revisions`,
    agentEndpoints: (agentId) => `${p}agent-endpoints:${agentId}`,
    wake: (ns, rev) => `${p}wake:${ns}:${rev}`,
    channels: {
      desired: `${p}desired`,
      endpoints: `${p}endpoints`,
      instances: `${p}instances`,
      agents: `${p}agents`,
      wake: `${p}wake`,
    },
  };
}

/** A new instance of `revision`: its name plus 8 random hex digits, unique across the fleet. */
export function newInstanceId(revision: string): string {
  return `${revision}-${randomBytes(4).toString("hex")}`;
}

/** "{ns}/{rev}": how a revision is named in channels and sets. */
export function revisionRef(namespace: string, revision: string): string {
  return `${namespace}/${revision}`;
}

export function parseRevisionRef(ref: string): { namespace: string; revision: string } | undefined {
  const i = ref.indexOf("/");
  if (i <= 0 || i === ref.length - 1) return undefined;
  return { namespace: ref.slice(0, i), revision: ref.slice(i + 1) };
}
