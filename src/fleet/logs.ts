/**
 * Instance logs through the agents (`skiff logs`): the deploy API publishes a
 * LogRequest on `{p}fleet:logs`; every agent holding instances of the asked
 * revisions answers on `{p}fleet:logs:{id}` with batches of lines, then `end`
 * (or, when following, keeps sending until the request's deadline or until no
 * one listens on the reply channel any more: PUBLISH returning 0). Nothing is
 * stored: logs stay where the instances run.
 */
import { z } from "zod";
import { MAX_TAIL_LINES } from "./log-limits.ts";

export function logChannels(prefix: string) {
  return {
    requests: `${prefix}fleet:logs`,
    reply: (id: string) => `${prefix}fleet:logs:${id}`,
  };
}

export const logRequestSchema = z.object({
  id: z.string().regex(/^[a-zA-Z0-9-]{8,64}$/),
  namespace: z.string().min(1).max(63),
  revisions: z.array(z.string().min(1).max(253)).min(1).max(1_000),
  follow: z.boolean(),
  tailLines: z.number().int().min(0).max(MAX_TAIL_LINES),
  /** ms since epoch after which an agent stops sending. */
  untilMs: z.number().int().positive(),
});
export type LogRequest = z.infer<typeof logRequestSchema>;

export interface LogLine {
  agent: string;
  instance: string;
  revision: string;
  stream: "stdout" | "stderr";
  /** RFC 3339 time the runtime stamped it with, when it did. */
  time?: string;
  text: string;
}

export const logReplySchema = z.union([
  z.object({
    agent: z.string(),
    lines: z.array(
      z.object({
        agent: z.string(),
        instance: z.string(),
        revision: z.string(),
        stream: z.enum(["stdout", "stderr"]),
        time: z.string().optional(),
        text: z.string(),
      }),
    ),
  }),
  z.object({ agent: z.string(), end: z.literal(true), instances: z.number().int().min(0) }),
]);
export type LogReply = z.infer<typeof logReplySchema>;
