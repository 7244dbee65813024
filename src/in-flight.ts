/**
 * One promise in flight per key: callers that ask for a key while its work
 * runs share that work (and its outcome) instead of starting it again; once it
 * settles, the next caller starts afresh (nothing is cached).
 */
export class InFlight<T> {
  readonly #running = new Map<string, Promise<T>>();

  /** The promise in flight for `key`, or `start()`'s, shared until it settles. */
  run(key: string, start: () => Promise<T>): Promise<T> {
    let running = this.#running.get(key);
    if (!running) {
      running = start().finally(() => this.#running.delete(key));
      this.#running.set(key, running);
    }
    return running;
  }
}
