/**
 * Hands out serving ports on the agent's data address. Instances run with host
 * networking, so two instances must never share a port: a port is taken while
 * an instance holds it, and checked free on the address (bind + close) before
 * it is handed out, which skips ports other processes on the host listen on.
 */
import { createServer } from "node:net";
import { UnavailableError } from "../../src/errors.ts";

export interface PortRange {
  min: number;
  max: number;
}

export class PortAllocator {
  readonly address: string;
  readonly range: PortRange;
  readonly #taken = new Set<number>();
  #cursor: number;

  constructor(address: string, range: PortRange) {
    this.address = address;
    this.range = range;
    // Start somewhere random so that two agents (or test files) sharing a host
    // and a range rarely race for the same port.
    this.#cursor = range.min + Math.floor(Math.random() * (range.max - range.min + 1));
  }

  /** A free port, now reserved until release(). */
  async allocate(): Promise<number> {
    const size = this.range.max - this.range.min + 1;
    for (let i = 0; i < size; i++) {
      const port = this.#next();
      if (this.#taken.has(port)) continue;
      this.#taken.add(port); // reserve before the async check so concurrent calls skip it
      if (await isFree(this.address, port)) return port;
      this.#taken.delete(port);
    }
    throw new UnavailableError(
      `no free port on ${this.address} in ${this.range.min}-${this.range.max}; ` +
        "stop some instances or widen the agent's port range",
    );
  }

  /** Mark a port as held (an adopted instance already listens on it). */
  reserve(port: number): void {
    this.#taken.add(port);
  }

  release(port: number): void {
    this.#taken.delete(port);
  }

  get inUse(): number {
    return this.#taken.size;
  }

  #next(): number {
    const port = this.#cursor;
    this.#cursor = port >= this.range.max ? this.range.min : port + 1;
    return port;
  }
}

/** True when nothing listens on address:port (we can bind it). */
export function isFree(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ host: address, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
