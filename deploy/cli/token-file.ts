/**
 * Tokens from a file (--token-file, SKIFF_TOKEN_FILE), so that a secret never
 * has to appear on a command line (visible to every user in `ps`).
 */
import { readFileSync, statSync } from "node:fs";
import { BadRequestError } from "../../src/errors.ts";

/** A token file holds a token and nothing else; larger files are a mistake. */
const MAX_TOKEN_FILE_BYTES = 4096;

export function readTokenFile(path: string): string {
  let text: string;
  try {
    if (statSync(path).size > MAX_TOKEN_FILE_BYTES) {
      throw new BadRequestError(
        `token file ${path} is larger than ${MAX_TOKEN_FILE_BYTES} bytes; it must hold only the token`,
      );
    }
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof BadRequestError) throw err;
    throw new BadRequestError(
      `cannot read the token file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const token = text.trim();
  if (!token || /\s/.test(token)) {
    throw new BadRequestError(
      `token file ${path} must hold exactly one token (no spaces or extra lines)`,
    );
  }
  return token;
}

/**
 * The token given explicitly: --token > --token-file > SKIFF_TOKEN >
 * SKIFF_TOKEN_FILE; undefined when none is (callers then use saved settings).
 */
export function explicitToken(
  flags: { token?: string | undefined; tokenFile?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (flags.token) return flags.token;
  if (flags.tokenFile) return readTokenFile(flags.tokenFile);
  if (env.SKIFF_TOKEN) return env.SKIFF_TOKEN;
  if (env.SKIFF_TOKEN_FILE) return readTokenFile(env.SKIFF_TOKEN_FILE);
  return undefined;
}
