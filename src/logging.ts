/** Structured logs (pino). One root logger per process; components take a child. */
import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  level?: string;
  component?: string;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.SKIFF_LOG_LEVEL ?? "info";
  const root = pino({ level, base: { pid: process.pid } });
  return options.component ? root.child({ component: options.component }) : root;
}

/** A logger that drops everything; for library use and tests that do not care. */
export const silentLogger: Logger = pino({ level: "silent" });
