/**
 * Telling the scaler at once that a revision at zero has a request waiting.
 * One signal per revision however many gateways and requests: the first
 * gateway to SET NX `{p}activate:{ns}:{rev}` publishes "{ns}/{rev}" on
 * `{p}activate`; everybody else's SET fails and sends nothing. The key
 * expires after `ttlMs`; requests still waiting then signal again (a reminder
 * in case the scaler missed the first). When the revision's first endpoint
 * appears, the gateways that held requests delete the key, so the next time
 * it is at zero the signal goes out at once. The same ref goes out on
 * `{p}fleet:wake` for the agents: one holding the revision's isolate standby
 * starts it without waiting for the scaler (src/fleet/wake.ts).
 */
import type { Redis } from "ioredis";
import { fleetKeys } from "../src/fleet/keys.ts";
import type { Logger } from "../src/logging.ts";
import { luaScript } from "../src/redis/script.ts";
import { type GatewayKeys, gatewayKeys } from "../src/traffic/keys.ts";

/** KEYS: [activate key]  ARGV: [gateway id, ttl ms, channel, ref, wake channel] */
const ACTIVATE = luaScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  redis.call('PUBLISH', ARGV[5], ARGV[4])
  return 1
end
return 0
`);

export interface ActivatorOptions {
  redis: Redis;
  prefix: string;
  gatewayId: string;
  ttlMs: number;
  logger: Logger;
}

export class Activator {
  readonly #redis: Redis;
  readonly #keys: GatewayKeys;
  readonly #wakeChannel: string;
  readonly #gw: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  /** When this gateway last tried, by "{ns}/{rev}": it needs not try again within the TTL. */
  readonly #tried = new Map<string, number>();

  constructor(options: ActivatorOptions) {
    this.#redis = options.redis;
    this.#keys = gatewayKeys(options.prefix);
    this.#wakeChannel = fleetKeys(options.prefix).channels.wake;
    this.#gw = options.gatewayId;
    this.#ttlMs = options.ttlMs;
    this.#log = options.logger;
  }

  /** Ask for the revision to be scaled up, unless somebody did within the TTL. */
  signal(namespace: string, revision: string): void {
    const ref = `${namespace}/${revision}`;
    const now = performance.now();
    const last = this.#tried.get(ref);
    if (last !== undefined && now - last < this.#ttlMs) return;
    this.#tried.set(ref, now);
    ACTIVATE.run(
      this.#redis,
      [this.#keys.activate(namespace, revision)],
      [this.#gw, String(this.#ttlMs), this.#keys.activateChannel, ref, this.#wakeChannel],
    ).then(
      (won) => {
        if (won === 1) this.#log.info({ revision: ref }, "asked the scaler to activate revision");
      },
      (err: unknown) => {
        // Try again with the next request or reminder.
        this.#tried.delete(ref);
        this.#log.warn({ err, revision: ref }, "sending the activation signal failed");
      },
    );
  }

  /** The revision has an endpoint again: the next time it is at zero, signal at once. */
  activated(namespace: string, revision: string): void {
    const ref = `${namespace}/${revision}`;
    if (!this.#tried.delete(ref)) return;
    this.#redis.del(this.#keys.activate(namespace, revision)).catch((err: unknown) => {
      this.#log.warn({ err, revision: ref }, "clearing the activation signal failed");
    });
  }
}
