/**
 * What the configuration reference says about each setting, attached to its
 * zod schema (zod's global registry, via `.meta()`): so the schema that
 * validates a key also names its environment variable and flags and
 * documents it, and docs/configuration.md is generated from it.
 */
import { z } from "zod";

/** The commands that take configuration; each server component has its own. */
export const CONFIG_COMMANDS = ["api", "gateway", "agent", "scaler", "up"] as const;
export type ServerCommand = (typeof CONFIG_COMMANDS)[number];

export interface SettingMeta {
  /** One or two sentences for the reference and the flag's help. */
  description: string;
  /** The environment variable, when not the derived SKIFF_{PATH} (e.g. REDIS_URL); false: none. */
  env?: string | false;
  /** The flag per command, in commander syntax: "--port <port>", "--no-containers". */
  flags?: Partial<Record<ServerCommand, string>>;
  /** The default as the reference shows it, when the schema has none (a derived one). */
  defaultText?: string;
}

/** Attach the reference's metadata to a setting's schema (a copy: shared schemas stay bare). */
export function setting<S extends z.ZodType>(schema: S, meta: SettingMeta): S {
  return schema.meta(meta as unknown as z.GlobalMeta) as S;
}

export function metaOf(schema: z.ZodType): SettingMeta | undefined {
  const m = z.globalRegistry.get(schema) as Partial<SettingMeta> | undefined;
  return m?.description === undefined ? undefined : (m as SettingMeta);
}

/** The same flag on every server command (the keys every component reads). */
export function everyCommand(flag: string): Partial<Record<ServerCommand, string>> {
  return Object.fromEntries(CONFIG_COMMANDS.map((c) => [c, flag]));
}
