/**
 * Waking a worker revision at zero on the agent that holds its isolate
 * standby, before the scaler's round trip. The gateway's activation signal is
 * also published on `{p}fleet:wake`; an agent holding a standby of the
 * revision claims the wake (`{p}fleet:wake:{ns}:{rev}` SET NX: "{agent}
 * {instance}") and starts that instance at once, held but not yet desired.
 * The scaler, placing the activation, settles the key the same way: it adopts
 * a claimed instance into the agent's desired set (placement still decides:
 * a draining or missing agent is passed over), or, finding no claim, marks
 * the key as its own so that no agent claims after it placed. Exactly one of
 * them decides, whoever comes first; an instance the scaler did not adopt
 * stops when its hold ends.
 */
import type { Redis } from "ioredis";
import { luaScript } from "../redis/script.ts";
import type { FleetKeys } from "./keys.ts";
import { ID_PATTERN } from "./schemas.ts";

/**
 * How long a claim (or the scaler's mark) stands, and how long an agent holds
 * a woken instance the scaler has not adopted. Shorter than the quickest
 * return to zero (a stable window of at least 6 s without requests), so one
 * activation's key never decides the next one.
 */
export const WAKE_TTL_MS = 5_000;

/** The value the scaler leaves when it placed the revision itself. */
const SCALER_MARK = "scaler";

export interface WakeClaim {
  agentId: string;
  instanceId: string;
}

/** An agent claims the wake of `ref`; false when somebody (agent or scaler) was first. */
export async function claimWake(
  redis: Redis,
  keys: FleetKeys,
  ref: { namespace: string; revision: string },
  claim: WakeClaim,
): Promise<boolean> {
  const set = await redis.set(
    keys.wake(ref.namespace, ref.revision),
    `${claim.agentId} ${claim.instanceId}`,
    "PX",
    WAKE_TTL_MS,
    "NX",
  );
  return set === "OK";
}

/** KEYS: the wake keys  ARGV: [mark, ttl ms]. Each key's claim, or false where the scaler marked it now. */
const SETTLE = luaScript(`
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v then
    out[i] = v
  else
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = false
  end
end
return out
`);

/**
 * The scaler's side: the agents' claims on `refs` ("{ns}/{rev}"), by ref;
 * every ref without one is marked, so no agent claims it after this.
 */
export async function settleWakes(
  redis: Redis,
  keys: FleetKeys,
  refs: readonly { ref: string; namespace: string; revision: string }[],
): Promise<Map<string, WakeClaim>> {
  const claims = new Map<string, WakeClaim>();
  if (refs.length === 0) return claims;
  const values = (await SETTLE.run(
    redis,
    refs.map((r) => keys.wake(r.namespace, r.revision)),
    [SCALER_MARK, String(WAKE_TTL_MS)],
  )) as (string | null)[];
  refs.forEach((r, i) => {
    const claim = parseClaim(values[i]);
    if (claim) claims.set(r.ref, claim);
  });
  return claims;
}

function parseClaim(value: string | null | undefined): WakeClaim | undefined {
  if (typeof value !== "string" || value === SCALER_MARK) return undefined;
  const [agentId, instanceId, ...rest] = value.split(" ");
  if (rest.length > 0 || !agentId || !instanceId) return undefined;
  if (!ID_PATTERN.test(agentId) || !ID_PATTERN.test(instanceId)) return undefined;
  return { agentId, instanceId };
}
