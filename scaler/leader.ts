/**
 * Leader election through a Redis lease, so several scaler processes can run
 * and exactly one acts.
 *
 * - Acquire: `SET key value NX PX lease` (value unique per acquisition); on
 *   success the same script INCRs `{key}:fence`, giving a fencing token that
 *   grows with every new leadership.
 * - Renew every `renewEveryMs`: compare-and-PEXPIRE (only while the value is
 *   still ours). A renewal that finds another value or none means the lease
 *   was lost: onDeposed("lost") at once.
 * - A leader that cannot renew (Redis unreachable, connection dead) deposes
 *   itself ("expired") when its lease may have run out: leaseMs (less a 10%
 *   margin for clock rate and timer lateness) after the last renewal that
 *   succeeded was *sent*, which is no later than Redis expires the key. So an
 *   old leader stops acting before a standby can acquire.
 * - Standbys retry the acquire every `retryEveryMs`, so one takes over within
 *   about leaseMs + retryEveryMs of the leader dying.
 * - stop() calls onDeposed("stopped") and waits for it, then (by default)
 *   releases with compare-and-DEL, so a standby takes over at once.
 *
 * Fencing: the Leadership carries the lease value and the fencing token. A
 * write that must never come from a deposed leader can check, in the same Lua
 * script, `redis.call("GET", leaseKey) == value` (or compare a stored token
 * with the fencing token) before writing.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { z } from "zod";
import { type Logger, silentLogger } from "../src/logging.ts";
import { luaScript } from "../src/redis/script.ts";

/** KEYS: lease, fence. ARGV: value, lease ms. Returns the new fencing token, or 0 when held. */
const ACQUIRE = luaScript(`
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return redis.call("INCR", KEYS[2])
end
return 0
`);

/** KEYS: lease. ARGV: value, lease ms. 1 when renewed, 0 when the lease is not ours. */
const RENEW = luaScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`);

/** KEYS: lease. ARGV: value. 1 when released, 0 when it was not ours. */
const RELEASE = luaScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
`);

export interface Leadership {
  /** The lease's value while we hold it: unique per acquisition. */
  value: string;
  /** From INCR `{key}:fence`: strictly greater for every later leadership of this key. */
  fencingToken: number;
  /** ms since epoch (local clock) when it was acquired. */
  acquiredAt: number;
}

/** lost: the key vanished or holds another value; expired: could not renew in time; stopped: stop(). */
export type DeposedReason = "lost" | "expired" | "stopped";

export const leaderElectionSettingsSchema = z
  .object({
    key: z.string().min(1),
    id: z.string().min(1),
    leaseMs: z.number().int().min(100).default(3_000),
    /** Default: a third of the lease, so two renewals may fail before it expires. */
    renewEveryMs: z.number().int().positive().optional(),
    /** How often a standby tries to acquire. Default: renewEveryMs. */
    retryEveryMs: z.number().int().positive().optional(),
  })
  .transform((o) => {
    const renewEveryMs = o.renewEveryMs ?? Math.max(1, Math.floor(o.leaseMs / 3));
    return { ...o, renewEveryMs, retryEveryMs: o.retryEveryMs ?? renewEveryMs };
  })
  .refine((o) => o.renewEveryMs < o.leaseMs, {
    path: ["renewEveryMs"],
    message: "must be shorter than leaseMs, or the lease expires between renewals",
  });

export interface LeaderElectionOptions extends z.input<typeof leaderElectionSettingsSchema> {
  /** A connection of its own is best: a blocked or dead shared one deposes the leader. */
  redis: Redis;
  onElected?: (leadership: Leadership) => void | Promise<void>;
  onDeposed?: (reason: DeposedReason) => void | Promise<void>;
  logger?: Logger;
}

export interface LeaderElection {
  readonly isLeader: boolean;
  readonly leadership: Leadership | undefined;
  /**
   * Stop contending. A leader first gets onDeposed("stopped") (awaited), then
   * releases the lease unless `release: false` (which simulates a crash: the
   * lease runs out on its own).
   */
  stop(options?: { release?: boolean }): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export function startLeaderElection(options: LeaderElectionOptions): LeaderElection {
  const { redis, onElected, onDeposed } = options;
  const s = leaderElectionSettingsSchema.parse(options);
  const log = (options.logger ?? silentLogger).child({ lease: s.key, candidate: s.id });
  const fenceKey = `${s.key}:fence`;
  const margin = Math.max(1, Math.floor(s.leaseMs / 10));

  let stopped = false;
  let leadership: Leadership | undefined;
  let loopTimer: NodeJS.Timeout | undefined;
  let deadlineTimer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> = Promise.resolve();

  /** Run a callback; its failure is logged, never thrown into the loop. */
  const safely = (fn: () => unknown): Promise<void> =>
    Promise.resolve()
      .then(fn)
      .then(
        () => {},
        (err: unknown) => log.error({ err }, "leader election callback failed"),
      );

  const depose = (reason: DeposedReason): Promise<void> => {
    if (leadership === undefined) return Promise.resolve();
    log.warn({ reason, fencingToken: leadership.fencingToken }, "no longer the leader");
    leadership = undefined;
    clearTimeout(deadlineTimer);
    return onDeposed ? safely(() => onDeposed(reason)) : Promise.resolve();
  };

  /** The lease may run out at Redis `leaseMs` after `sentAt`; stop acting before that. */
  const armDeadline = (sentAt: number) => {
    clearTimeout(deadlineTimer);
    const ms = sentAt + s.leaseMs - margin - Date.now();
    deadlineTimer = setTimeout(() => void depose("expired"), Math.max(0, ms));
  };

  const acquire = async () => {
    const value = `${s.id}:${randomUUID()}`;
    const sentAt = Date.now();
    const token = Number(
      await withTimeout(
        ACQUIRE.run(redis, [s.key, fenceKey], [value, String(s.leaseMs)]),
        s.leaseMs,
        "lease acquire",
      ),
    );
    if (token <= 0) return;
    if (stopped) {
      // Lost a race with stop(): give the lease back (best effort).
      await RELEASE.run(redis, [s.key], [value]).catch(() => {});
      return;
    }
    leadership = { value, fencingToken: token, acquiredAt: sentAt };
    armDeadline(sentAt);
    log.info({ fencingToken: token }, "elected leader");
    const elected = leadership;
    if (onElected) void safely(() => onElected(elected));
  };

  const renew = async (held: Leadership) => {
    const sentAt = Date.now();
    const ok = Number(
      await withTimeout(
        RENEW.run(redis, [s.key], [held.value, String(s.leaseMs)]),
        s.leaseMs,
        "lease renew",
      ),
    );
    if (leadership !== held) return; // deposed meanwhile (deadline or stop)
    if (ok === 1) armDeadline(sentAt);
    else await depose("lost");
  };

  const tick = async () => {
    if (stopped) return;
    const held = leadership;
    try {
      if (held === undefined) await acquire();
      else await renew(held);
    } catch (err) {
      // Unreachable Redis: a leader keeps trying until its deadline deposes it.
      log.warn({ err }, held ? "lease renewal failed" : "lease acquire failed");
    }
    if (!stopped) schedule(leadership ? s.renewEveryMs : s.retryEveryMs);
  };

  const schedule = (ms: number) => {
    loopTimer = setTimeout(() => {
      inflight = tick();
    }, ms);
  };

  schedule(0);

  return {
    get isLeader() {
      return leadership !== undefined;
    },
    get leadership() {
      return leadership;
    },
    async stop({ release = true } = {}) {
      if (stopped) return;
      stopped = true;
      clearTimeout(loopTimer);
      await inflight;
      const held = leadership;
      await depose("stopped");
      if (held && release) {
        try {
          await withTimeout(RELEASE.run(redis, [s.key], [held.value]), s.leaseMs, "lease release");
          log.info("lease released");
        } catch (err) {
          log.warn({ err }, "lease release failed; it expires on its own");
        }
      }
    },
  };
}
