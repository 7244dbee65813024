/**
 * Redis ACL users for Skiff's roles, one per component kind, each with only
 * the keys (by prefix pattern), channels and commands its code uses. The
 * table below is the reference (docs/architecture.md, "Redis users"); the
 * shipped deploy/redis/users.acl is `generateAcl({ prefix: "skiff:" })`, and
 * `skiff redis-acl --prefix P` prints it for another prefix.
 *
 * How the lists were made: every key, channel and command in gateway/,
 * agent/, scaler/, deploy/api/, src/store, src/fleet, src/control and
 * src/cluster.ts, including those inside Lua scripts. Redis 7 checks each
 * `redis.call` of a script against the caller's ACL too, so the patterns
 * cover the keys scripts build from prefixes passed in ARGV (undeclared keys:
 * gateway/slots.ts's `{p}slot-waiters:*:gw:*`, gateway/paged-resync.ts's
 * scanned routing table, endpoint-revisions set and endpoint hashes,
 * src/fleet/scripts.ts's agent, endpoint and agent-endpoint keys,
 * src/store/scripts.ts LIST's objects).
 * test/security/redis-acl.test.ts runs every component under its user.
 *
 * Key access uses Redis 7 read/write key permissions (`%R~`, `%W~`, `%RW~`):
 * a gateway may read the routing table but no command of it can write there.
 * The cluster identity (`{p}cluster`) is created by whichever component starts
 * first: every role may HSETNX it (a selector), none may overwrite it.
 */
import { createHash } from "node:crypto";
import { ValidationError } from "../../src/errors.ts";

export const ACL_ROLES = ["gateway", "agent", "scaler", "api"] as const;
export type AclRole = (typeof ACL_ROLES)[number];

export interface KeyGrant {
  /** Pattern after the prefix, e.g. `routing:*`. */
  pattern: string;
  access: "R" | "W" | "RW";
  why: string;
}

export interface RoleGrant {
  role: AclRole;
  /** What the component does with Redis, in one line. */
  summary: string;
  keys: KeyGrant[];
  /** Pub/sub channels (after the prefix): subscribed to or published on. */
  channels: string[];
  commands: string[];
}

/**
 * Every connection: the handshake of ioredis (HELLO, AUTH, CLIENT SETNAME,
 * the ready check's INFO, SELECT of a db in the URL), liveness, transactions
 * and scripts (whose inner commands are checked one by one), subscriptions.
 */
const CONNECTION = [
  "hello",
  "auth",
  "client|setname",
  "client|getname",
  "client|id",
  "info",
  "select",
  "ping",
  "echo",
  "quit",
  "reset",
  "multi",
  "exec",
  "discard",
  "evalsha",
  "eval",
  "script|load",
  "script|exists",
  "time",
  "subscribe",
  "unsubscribe",
];

/** The deploy store (src/store): objects, indexes, versions, artifacts, the events channel. */
const STORE_KEYS = (access: "R" | "RW"): KeyGrant[] => [
  { pattern: "obj:*", access, why: "Knative objects (HASH rv, json)" },
  { pattern: "idx:*", access, why: "names of a collection" },
  { pattern: "ns:*", access, why: "namespaces holding a kind" },
  { pattern: "cv:*", access, why: "collection versions" },
  { pattern: "rv", access, why: "resourceVersion counter" },
  { pattern: "artifact-bytes:*", access, why: "bytes of a namespace's artifacts (quota)" },
];
const STORE_COMMANDS = [
  "get",
  "set",
  "del",
  "incr",
  "hget",
  "hmget",
  "hset",
  "smembers",
  "scard",
  "strlen",
];
const STORE_COMMANDS_WRITE = [...STORE_COMMANDS, "sadd", "srem", "publish", "incrby", "decrby"];

export const ROLE_GRANTS: readonly RoleGrant[] = [
  {
    role: "gateway",
    summary:
      "reads routing and endpoints; writes only its own request accounting (activation, slots, counters)",
    keys: [
      { pattern: "routing:hosts", access: "R", why: "host -> routing entry" },
      { pattern: "fleet:endpoints:*", access: "R", why: "ready instances of a revision" },
      { pattern: "fleet:endpoint-revisions", access: "R", why: "revisions with endpoints" },
      { pattern: "fleet:agent:*", access: "R", why: "agent liveness (PTTL)" },
      { pattern: "activate:*", access: "RW", why: "ask the scaler to activate (SET NX)" },
      { pattern: "slot-leases:*", access: "RW", why: "containerConcurrency hard-limit leases" },
      { pattern: "slot-waiters:*", access: "RW", why: "gateways waiting for a slot" },
      { pattern: "metrics:gw:*", access: "RW", why: "its request counters for the autoscaler" },
      { pattern: "metrics:gateways", access: "RW", why: "gateways that publish counters" },
      { pattern: "cluster", access: "R", why: "cluster id and gateway secret" },
    ],
    channels: ["routing", "fleet:endpoints", "fleet:agents", "fleet:wake", "activate", "slots"],
    commands: [
      "get",
      "set",
      "del",
      "exists",
      "pttl",
      "pexpire",
      "hget",
      "hgetall",
      "hmget",
      "hset",
      "hdel",
      "hscan",
      "sscan",
      "zadd",
      "zrem",
      "zcard",
      "zscore",
      "zremrangebyscore",
      "zrangebyscore",
      "publish",
    ],
  },
  {
    role: "agent",
    summary:
      "heartbeats, reads its desired instances and revisions, publishes endpoints and instance reports (the scaler derives status from them)",
    keys: [
      { pattern: "fleet:agent:*", access: "RW", why: "its record (PX = heartbeat TTL)" },
      { pattern: "fleet:agents", access: "RW", why: "live agents" },
      { pattern: "fleet:desired:*", access: "R", why: "instances the scaler wants" },
      { pattern: "fleet:instances:*", access: "RW", why: "its instance reports" },
      { pattern: "fleet:endpoints:*", access: "RW", why: "ready endpoints it publishes" },
      { pattern: "fleet:endpoint-revisions", access: "RW", why: "index of the above" },
      { pattern: "fleet:agent-endpoints:*", access: "RW", why: "its endpoint index" },
      {
        pattern: "fleet:wake:*",
        access: "RW",
        why: "claims the wake of its isolate standby (SET NX)",
      },
      ...STORE_KEYS("R"),
      { pattern: "artifact:*", access: "R", why: "worker bundles" },
      { pattern: "cluster", access: "R", why: "cluster id (agent id, labels) and secret" },
    ],
    channels: ["fleet:*", "events"],
    commands: [
      ...STORE_COMMANDS_WRITE,
      "exists",
      "pexpire",
      "hdel",
      "hlen",
      "hgetall",
      "zadd",
      "zrem",
      "zrange",
    ],
  },
  {
    role: "scaler",
    summary:
      "autoscaling, placement (desired sets), routing tables, agent pruning, revision GC, status",
    keys: [
      { pattern: "routing:*", access: "RW", why: "routing tables it publishes" },
      { pattern: "fleet:*", access: "RW", why: "desired sets; prunes dead agents' endpoints" },
      ...STORE_KEYS("RW"),
      { pattern: "artifact:*", access: "RW", why: "revision GC deletes bundles" },
      { pattern: "metrics:*", access: "RW", why: "gateways' counters (read, stale ones dropped)" },
      { pattern: "activate:*", access: "RW", why: "activation requests" },
      { pattern: "scaler:*", access: "RW", why: "leader lease and fencing token" },
      { pattern: "cluster", access: "R", why: "cluster id" },
    ],
    channels: ["routing", "fleet:*", "events", "activate"],
    commands: [
      ...STORE_COMMANDS_WRITE,
      "exists",
      "pexpire",
      "pttl",
      "hdel",
      "hlen",
      "hgetall",
      "zadd",
      "zrem",
      "zrange",
      "zrangebyscore",
      "scan",
    ],
  },
  {
    role: "api",
    summary:
      "the deploy store (Knative objects, worker bundles) and the API token hash; reads hosts, instances and request counters for the web console",
    keys: [
      ...STORE_KEYS("RW"),
      { pattern: "artifact:*", access: "RW", why: "worker bundles" },
      { pattern: "auth:*", access: "RW", why: "the API token's SHA-256" },
      { pattern: "namespaces", access: "RW", why: "namespaces made with kubectl create ns" },
      { pattern: "cluster", access: "R", why: "cluster id" },
      { pattern: "fleet:agents", access: "R", why: "the console's hosts" },
      { pattern: "fleet:agent:*", access: "R", why: "the console's hosts (records)" },
      { pattern: "fleet:instances:*", access: "R", why: "the console's instances per host" },
      { pattern: "metrics:gateways", access: "R", why: "the console's request rates" },
      { pattern: "metrics:gw:*", access: "R", why: "the console's request rates (counters)" },
    ],
    // skiff logs: requests to the agents, their answers on one channel per request.
    channels: ["events", "fleet:logs", "fleet:logs:*"],
    commands: [...STORE_COMMANDS_WRITE, "exists", "hgetall", "zrange", "hsetnx", "hexists"],
  },
];

/** The Redis user name of a role: `skiff-gateway`, ... */
export function aclUserName(role: AclRole, userPrefix = "skiff-"): string {
  return `${userPrefix}${role}`;
}

/** A prefix as a literal inside an ACL glob pattern. */
function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export interface AclOptions {
  /** The install's key prefix (default "skiff:"). */
  prefix?: string;
  /** Passwords per role: the user is `on` with the password's SHA-256; without one it is `off`. */
  passwords?: Partial<Record<AclRole | "admin", string>>;
  /** Redis user names are `{userPrefix}{role}` (default "skiff-"). */
  userPrefix?: string;
}

/**
 * The ACL file: `user default off` (nobody gets in without a user), one user
 * per role, and `{userPrefix}admin` with every right for the operator.
 */
export function generateAcl(options: AclOptions = {}): string {
  const prefix = options.prefix ?? "skiff:";
  if (!/^[^\s"']+$/.test(prefix)) {
    throw ValidationError.of([
      {
        field: "prefix",
        message: `must be a non-empty key prefix without spaces or quotes (got ${JSON.stringify(prefix)}), e.g. "skiff:"`,
      },
    ]);
  }
  const p = globLiteral(prefix);
  const userPrefix = options.userPrefix ?? "skiff-";
  const secret = (who: AclRole | "admin") => {
    const password = options.passwords?.[who];
    if (!password) return "off resetpass";
    return `on #${createHash("sha256").update(password).digest("hex")}`;
  };
  const lines = ["user default off resetpass resetkeys resetchannels -@all"];
  for (const grant of ROLE_GRANTS) {
    const keys = grant.keys.map((k) => `%${k.access}~${p}${k.pattern}`);
    const channels = grant.channels.map((c) => `&${p}${c}`);
    const commands = [...new Set([...CONNECTION, ...grant.commands])].map((c) => `+${c}`);
    // Whoever starts first creates the cluster identity; nobody may overwrite it.
    const createCluster = `(%RW~${p}cluster +hsetnx +hmget)`;
    lines.push(
      [
        "user",
        aclUserName(grant.role, userPrefix),
        secret(grant.role),
        "resetkeys",
        "resetchannels",
        "-@all",
        ...commands,
        ...keys,
        ...channels,
        createCluster,
      ].join(" "),
    );
  }
  lines.push(`user ${userPrefix}admin ${secret("admin")} ~* &* +@all`);
  return `${lines.join("\n")}\n`;
}
