/**
 * Run an async pass at most once at a time; triggers that arrive while it
 * runs collapse into one more pass after it. Every trigger resolves once a
 * pass that started after it has finished, so "trigger and wait" always sees
 * fresh work done. The pass must not throw (catch and log inside).
 */
export class Coalescer {
  readonly #fn: () => Promise<void>;
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;

  constructor(fn: () => Promise<void>) {
    this.#fn = fn;
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  trigger(): Promise<void> {
    if (this.#queued) return this.#queued;
    if (!this.#running) {
      this.#running = this.#fn().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    this.#queued = this.#running.then(() => {
      this.#queued = undefined;
      return this.trigger();
    });
    return this.#queued;
  }

  /** Wait for whatever runs or is queued now. */
  async idle(): Promise<void> {
    while (this.#running || this.#queued) await (this.#queued ?? this.#running);
  }
}
