/**
 * `GET /apis/skiff.dev/v1/namespaces/{ns}/services/{name}/logs`
 * (`?revision=R&follow=true&tailLines=N`): the output of the service's
 * instances, asked of the agents holding them (src/fleet/logs.ts), streamed as
 * NDJSON, one LogLine per line. A token reads the logs of its namespaces only
 * (verb get on services/log). Bounded: tailLines at most MAX_TAIL_LINES per
 * instance, a follow ends after MAX_FOLLOW_MS, at most MAX_STREAMS at once.
 */
import { randomUUID } from "node:crypto";
import type { Hono } from "hono";
import type { Redis } from "ioredis";
import { BadRequestError, NotFoundError, TooManyRequestsError } from "../../src/errors.ts";
import { fleetKeys } from "../../src/fleet/keys.ts";
import { MAX_TAIL_LINES } from "../../src/fleet/log-limits.ts";
import {
  type LogReply,
  type LogRequest,
  logChannels,
  logReplySchema,
} from "../../src/fleet/logs.ts";
import type { Logger } from "../../src/logging.ts";
import { Labels } from "../../src/model/types.ts";
import { RedisSubscriber } from "../../src/redis/subscriber.ts";
import type { Store } from "../../src/store/store.ts";
import { authorize, principalOf } from "./access.ts";

export interface LogRouteDeps {
  store: Store;
  redis: Redis;
  prefix: string;
  logger: Logger;
  /** Aborted when the API stops: open streams end, the subscriber closes. */
  shutdown?: AbortSignal | undefined;
}

const MAX_FOLLOW_MS = 60 * 60_000;
const MAX_STREAMS = 64;
/** Without follow: how long to wait for the agents that got the request to finish. */
const ANSWER_TIMEOUT_MS = 10_000;

export function registerLogRoutes(app: Hono, deps: LogRouteDeps): void {
  const subscriber = new RedisSubscriber({ redis: deps.redis, name: "logs", logger: deps.logger });
  const channels = logChannels(deps.prefix);
  let open = 0;
  const ends = new Set<() => void>();
  deps.shutdown?.addEventListener("abort", () => {
    for (const end of [...ends]) end();
    void subscriber.close();
  });

  app.get("/apis/skiff.dev/v1/namespaces/:namespace/services/:name/logs", async (c) => {
    const { namespace, name } = c.req.param();
    authorize(principalOf(c), "get", "services/log", namespace, "skiff.dev");
    const follow = c.req.query("follow") === "true";
    const tailText = c.req.query("tailLines");
    const tailLines = tailText === undefined ? 100 : Number(tailText);
    if (!Number.isInteger(tailLines) || tailLines < 0 || tailLines > MAX_TAIL_LINES) {
      throw new BadRequestError(`tailLines must be an integer from 0 to ${MAX_TAIL_LINES}`);
    }
    if (!(await deps.store.get("services", namespace, name))) {
      throw new NotFoundError(`services "${name}" not found`, { kind: "services", name });
    }
    const wanted = c.req.query("revision");
    const revisions = (
      await deps.store.list("revisions", namespace, { labels: { [Labels.service]: name } })
    ).map((r) => r.metadata.name);
    if (wanted !== undefined && !revisions.includes(wanted)) {
      throw new NotFoundError(`revision "${wanted}" of service "${name}" not found`, {
        kind: "revisions",
        name: wanted,
      });
    }
    if (open >= MAX_STREAMS) {
      throw new TooManyRequestsError(`too many log streams open (${MAX_STREAMS}); try again later`);
    }
    const request: LogRequest = {
      id: randomUUID(),
      namespace,
      revisions: wanted ? [wanted] : revisions,
      follow,
      tailLines,
      untilMs: Date.now() + (follow ? MAX_FOLLOW_MS : ANSWER_TIMEOUT_MS),
    };
    if (request.revisions.length === 0)
      return c.body("", 200, { "content-type": "application/x-ndjson" });

    open += 1;
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let unsubscribe: (() => Promise<void>) | undefined;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      open -= 1;
      ends.delete(finish);
      clearTimeout(timer);
      void unsubscribe?.();
      try {
        controller.close();
      } catch {}
    };
    const stream = new ReadableStream<Uint8Array>({
      start(ctrl) {
        controller = ctrl;
      },
      cancel: finish,
    });
    ends.add(finish);
    let expected = Number.POSITIVE_INFINITY;
    let ended = 0;
    const onReply = (message: string) => {
      if (done) return;
      let reply: LogReply;
      try {
        reply = logReplySchema.parse(JSON.parse(message));
      } catch {
        return;
      }
      if ("end" in reply) {
        ended += 1;
        if (ended >= expected) finish();
        return;
      }
      controller.enqueue(encoder.encode(reply.lines.map((l) => `${JSON.stringify(l)}\n`).join("")));
    };
    try {
      unsubscribe = await subscriber.subscribe(channels.reply(request.id), onReply);
      // Each agent answers only when it holds instances; the others stay silent.
      const listeners = await deps.redis.publish(channels.requests, JSON.stringify(request));
      if (listeners === 0) finish();
      timer = setTimeout(finish, request.untilMs - Date.now());
      if (!follow) {
        // Silent agents never end: wait for the answers that come, within the timeout.
        expected = await answeringAgents(deps, request);
        if (ended >= expected) finish();
      }
    } catch (err) {
      finish();
      throw err;
    }
    return c.body(stream, 200, { "content-type": "application/x-ndjson" });
  });
}

/** How many live agents report instances of the request's revisions (they answer). */
async function answeringAgents(deps: LogRouteDeps, request: LogRequest): Promise<number> {
  const keys = fleetKeys(deps.prefix);
  const agents = await deps.redis.zrange(keys.agents, "0", "-1");
  const wanted = new Set(request.revisions);
  let n = 0;
  for (const agent of agents) {
    const reports = await deps.redis.hgetall(keys.instances(agent));
    const holds = Object.values(reports).some((raw) => {
      try {
        const r = JSON.parse(raw) as { namespace?: string; revision?: string; runtime?: string };
        // Containers and isolates both answer (agent/log-relay.ts).
        return r.namespace === request.namespace && wanted.has(r.revision ?? "");
      } catch {
        return false;
      }
    });
    if (holds) n += 1;
  }
  return n;
}
