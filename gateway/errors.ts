/** Why the gateway answers a request itself instead of an instance. */
import { SkiffError, UnavailableError } from "../src/errors.ts";

/** No response started within the revision's timeout: 504. */
export class GatewayTimeoutError extends SkiffError {
  constructor(message: string) {
    super("TIMEOUT", message);
    this.name = "GatewayTimeoutError";
  }
}

/** The revision's queue is full: 503. */
export class QueueFullError extends UnavailableError {
  constructor(message: string) {
    super(message);
    this.name = "QueueFullError";
  }
}

/** The client went away; nobody is left to answer (the one in src/errors.ts). */
export { ClientGoneError } from "../src/errors.ts";

/** The gateway is shutting down. */
export class ShuttingDownError extends UnavailableError {
  constructor() {
    super("the gateway is shutting down; retry");
    this.name = "ShuttingDownError";
  }
}

/** A chunked request body grew past the gateway's per-request limit: 413. */
export class BodyTooLargeError extends SkiffError {
  constructor(limit: number) {
    super(
      "TOO_LARGE",
      `payload too large: the request body is larger than this gateway's limit of ${limit} bytes (maxBodyBytes)`,
    );
    this.name = "BodyTooLargeError";
  }
}
