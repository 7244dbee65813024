/** The answer's format: YAML when the client asks for it (Accept), JSON otherwise. */
import type { Context } from "hono";
import { stringify as toYaml } from "yaml";

export function respond(c: Context, body: unknown, status: 200 | 201 = 200): Response {
  const accept = c.req.header("accept") ?? "";
  if (/\b(application|text)\/(x-)?yaml\b/.test(accept)) {
    c.header("Content-Type", "application/yaml; charset=utf-8");
    return c.body(toYaml(body), status);
  }
  return c.json(body, status);
}
