/**
 * The grace during which an agent without a heartbeat record is presumed
 * alive, not dead: `agentGraceMs` (one heartbeat TTL) plus one reconnect
 * backoff step (1.1 s) from the scale controller starting (a leader change)
 * or its Redis connection coming back (a restart's AOF restores heartbeat
 * keys already expired). Meanwhile a pass holds the fleet as it is (no
 * prune, no desired-set change) until every agent is back or the grace has
 * passed; otherwise a healthy agent that heartbeats a few ms after the new
 * leader's first pass would be pruned and all its instances stopped.
 */
import type { Logger } from "../../src/logging.ts";
import { MAX_RECONNECT_DELAY_MS } from "../../src/redis/connect.ts";

export interface AgentGraceOptions {
  agentGraceMs: number;
  logger: Logger;
  /** Called just after a grace ends (a pass then prunes whoever is still missing). */
  onEnd: () => void;
  now?: () => number;
}

export class AgentGrace {
  readonly #o: AgentGraceOptions;
  readonly #now: () => number;
  /** Until then an agent without a heartbeat record is presumed alive, not dead. */
  #until = 0;
  #reason = "";
  #logged = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: AgentGraceOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Hold off declaring agents dead for one heartbeat TTL from now. */
  begin(reason: string): void {
    // Agents may reconnect up to one backoff step after we did, then heartbeat within their TTL.
    const grace = this.#o.agentGraceMs + MAX_RECONNECT_DELAY_MS;
    this.#until = this.#now() + grace;
    this.#reason = reason;
    this.#logged = false;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#o.onEnd(), grace + 1);
    this.#timer.unref();
  }

  /** Agents without a record may be declared dead (pruned). */
  ended(): boolean {
    return this.#now() >= this.#until;
  }

  /** A pass found agents missing within the grace: said once per grace. */
  holding(missing: readonly string[]): void {
    if (this.#logged) return;
    this.#logged = true;
    this.#o.logger.warn(
      {
        missing,
        reason: this.#reason,
        waitMs: Math.max(0, this.#until - this.#now()),
      },
      "agents without a heartbeat record are presumed alive for one heartbeat TTL; holding the fleet as it is",
    );
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}
