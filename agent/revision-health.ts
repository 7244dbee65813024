/**
 * The agent's side of revision status: what its instances show (ready,
 * crashed, image missing, worker stalled) goes onto the Revision through
 * src/control/revision-health.ts, one revision at a time, in order, and only
 * when it would say something new. Several agents may report on the same
 * revision; the store's transactions make that safe, and re-asserting a
 * still-true "ready" now and then repairs a status another agent left stale.
 * Status reflects the revision's instances as a whole: a failure seen here is
 * not written while another live agent has a ready instance of the revision
 * (a restarted agent finding its killed container must not mark a revision
 * unhealthy that serves from elsewhere); the instance's own report says it.
 */
import {
  type RevisionHealth,
  type RevisionHealthOutcome,
  reportRevisionHealth,
} from "../src/control/revision-health.ts";
import { type Logger, silentLogger } from "../src/logging.ts";
import type { Store } from "../src/store/store.ts";

/** What `readyElsewhere` needs of the fleet (src/fleet). */
export interface FleetView {
  readEndpoints(namespace: string, revision: string): Promise<Array<{ agentId: string }>>;
  getAgent(agentId: string): Promise<unknown>;
}

/**
 * How many ready instances of a revision other agents hold: their published
 * endpoints (published only while ready), counted only for agents whose
 * heartbeat record is alive (a dead agent's endpoints linger until pruned).
 */
export function readyOnOtherAgents(fleet: FleetView, selfId: string) {
  return async (namespace: string, revision: string): Promise<number> => {
    const others = (await fleet.readEndpoints(namespace, revision)).filter(
      (e) => e.agentId !== selfId,
    );
    const live = new Map<string, boolean>();
    let n = 0;
    for (const e of others) {
      let ok = live.get(e.agentId);
      if (ok === undefined) {
        ok = (await fleet.getAgent(e.agentId)) !== undefined;
        live.set(e.agentId, ok);
      }
      if (ok) n++;
    }
    return n;
  };
}

export interface HealthReporterOptions {
  store: Pick<Store, "transact">;
  domain: string;
  scheme: string;
  /** A failure on a serving revision is kept at least this long before ready clears it. */
  holdFailureMs: number;
  /** The same report is not repeated within this window (default 30 s). */
  reassertMs?: number;
  /**
   * Ready instances of the revision on other live agents (readyOnOtherAgents);
   * while any, a failure is not written. None: failures are always written.
   */
  readyElsewhere?: (namespace: string, revision: string) => Promise<number>;
  logger?: Logger;
}

interface Queue {
  namespace: string;
  revision: string;
  pending: RevisionHealth[];
  running: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  last: { signature: string; at: number } | undefined;
}

const MAX_PENDING = 8;
const RETRY_MS = 1_000;
const MAX_ATTEMPTS = 3;

export class RevisionHealthReporter {
  readonly #options: HealthReporterOptions;
  readonly #log: Logger;
  readonly #queues = new Map<string, Queue>();
  #closed = false;

  constructor(options: HealthReporterOptions) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
  }

  report(namespace: string, revision: string, health: RevisionHealth): void {
    if (this.#closed) return;
    const key = `${namespace}/${revision}`;
    let q = this.#queues.get(key);
    if (!q) {
      q = {
        namespace,
        revision,
        pending: [],
        running: undefined,
        timer: undefined,
        last: undefined,
      };
      this.#queues.set(key, q);
    }
    const tail = q.pending.at(-1);
    if (tail && tail.ready === health.ready) {
      q.pending[q.pending.length - 1] = health; // newer news of the same kind wins
    } else if (!health.ready && q.timer && q.pending[0]?.ready) {
      // A held "ready" is superseded by a newer failure: report that now.
      clearTimeout(q.timer);
      q.timer = undefined;
      q.pending[0] = health;
    } else {
      q.pending.push(health);
      if (q.pending.length > MAX_PENDING) q.pending.splice(0, q.pending.length - MAX_PENDING);
    }
    if (!q.running && !q.timer) this.#kick(q);
  }

  #kick(q: Queue): void {
    const running: Promise<void> = this.#run(q).finally(() => {
      if (q.running === running) q.running = undefined;
    });
    q.running = running;
  }

  /** Resolves when nothing is being written (held reports may still wait on their timer). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#queues.values()].map((q) => q.running).filter(Boolean);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  close(): void {
    this.#closed = true;
    for (const q of this.#queues.values()) {
      clearTimeout(q.timer);
      q.timer = undefined;
      q.pending = [];
    }
  }

  /** Whether another agent serves the revision (a failure here is then not the revision's). */
  async #readyElsewhere(q: Queue): Promise<boolean> {
    const check = this.#options.readyElsewhere;
    if (!check) return false;
    try {
      const ready = await check(q.namespace, q.revision);
      if (ready > 0) {
        this.#log.info(
          { revision: `${q.namespace}/${q.revision}`, readyElsewhere: ready },
          "failure not written on the revision: it has ready instances on other agents",
        );
      }
      return ready > 0;
    } catch (err) {
      // Cannot tell: write what was seen, as before.
      this.#log.warn(
        { err, revision: `${q.namespace}/${q.revision}` },
        "reading other agents' instances failed",
      );
      return false;
    }
  }

  async #run(q: Queue): Promise<void> {
    let attempts = 0;
    while (q.pending.length > 0 && !this.#closed) {
      const health = q.pending[0] as RevisionHealth;
      const signature = JSON.stringify(health);
      const reassert = this.#options.reassertMs ?? 30_000;
      if (q.last?.signature === signature && Date.now() - q.last.at < reassert) {
        q.pending.shift();
        continue;
      }
      if (!health.ready && (await this.#readyElsewhere(q))) {
        q.pending.shift();
        continue;
      }
      let outcome: RevisionHealthOutcome;
      try {
        outcome = await reportRevisionHealth(this.#options.store, q.namespace, q.revision, health, {
          domain: this.#options.domain,
          scheme: this.#options.scheme,
          holdFailureMs: this.#options.holdFailureMs,
        });
      } catch (err) {
        attempts++;
        this.#log.warn(
          { err, revision: `${q.namespace}/${q.revision}`, attempts },
          "writing revision status failed",
        );
        if (attempts >= MAX_ATTEMPTS) {
          q.pending.shift();
          attempts = 0;
        } else await new Promise((r) => setTimeout(r, RETRY_MS).unref());
        continue;
      }
      attempts = 0;
      if (outcome.outcome === "held") {
        q.timer = setTimeout(() => {
          q.timer = undefined;
          if (!q.running && !this.#closed) this.#kick(q);
        }, outcome.retryInMs + 5);
        q.timer.unref();
        return;
      }
      if (q.pending[0] === health) q.pending.shift();
      q.last = { signature, at: Date.now() };
      if (outcome.outcome === "changed") {
        this.#log.info(
          { revision: `${q.namespace}/${q.revision}`, health },
          "revision status updated",
        );
      }
    }
  }
}
