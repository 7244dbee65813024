/**
 * /apis/skiff.dev/v1/tokens: create, list, read and revoke API tokens, for the
 * admin token only. The secret is in the creation's answer, nowhere else.
 */
import type { Hono } from "hono";
import type { Logger } from "../../src/logging.ts";
import {
  parseTokenBody,
  principalOf,
  requireAdmin,
  TOKEN_API_VERSION,
  TOKENS_PATH,
  tokenObject,
} from "./access.ts";
import { readObject } from "./body.ts";
import { respond } from "./respond.ts";
import { successStatus } from "./status.ts";
import type { TokenStore } from "./token.ts";

export function registerTokenRoutes(app: Hono, tokens: TokenStore, logger: Logger): void {
  app.get(TOKENS_PATH, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    const items = (await tokens.list()).map((r) => tokenObject(r));
    return respond(c, { apiVersion: TOKEN_API_VERSION, kind: "TokenList", metadata: {}, items });
  });
  app.post(TOKENS_PATH, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    const spec = parseTokenBody(await readObject(c));
    const { record, secret } = await tokens.create(spec);
    logger.info(
      { kind: "tokens", name: record.name, role: record.role, namespaces: record.namespaces },
      "token created",
    );
    return respond(c, tokenObject(record, secret), 201);
  });
  app.get(`${TOKENS_PATH}/:name`, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    return respond(c, tokenObject(await tokens.get(c.req.param("name"))));
  });
  app.delete(`${TOKENS_PATH}/:name`, async (c) => {
    requireAdmin(principalOf(c), "tokens");
    const name = c.req.param("name");
    await tokens.revoke(name);
    logger.info({ kind: "tokens", name }, "token revoked");
    return respond(
      c,
      successStatus(`token "${name}" revoked`, { name, group: "skiff.dev", kind: "tokens" }),
    );
  });
}
