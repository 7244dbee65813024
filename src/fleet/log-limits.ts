/** Bounds of `skiff logs` (src/fleet/logs.ts), zod-free so the CLI bundle can import them. */

/** Lines per instance a request may ask for (the tail; following adds new ones). */
export const MAX_TAIL_LINES = 1_000;
/** Longer lines are cut (a log line is not a transfer channel). */
export const MAX_LINE_CHARS = 8_192;
