/**
 * docs/configuration.md, generated from the configuration schema: every key
 * with its file path, environment variable, flags, default and description.
 * `npm run docs:config` writes it; a test fails when the committed copy differs.
 */
import { CONFIG_COMMANDS } from "./meta.ts";
import { configSchema, SETTINGS } from "./schema.ts";
import { defaultText, type Setting, sectionMeta, shapeOf } from "./walk.ts";

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
const code = (text: string) => `\`${text}\``;

function flagsCell(s: Setting): string {
  const flags = s.meta?.flags ?? {};
  const names = CONFIG_COMMANDS.flatMap((c) => (flags[c] ? [[c, flags[c]!.split(" ")[0]!]] : []));
  if (names.length === 0) return "";
  const distinct = new Set(names.map(([, f]) => f));
  if (names.length === CONFIG_COMMANDS.length && distinct.size === 1) {
    return `${code(names[0]![1]!)} (every command)`;
  }
  return names.map(([c, f]) => code(`skiff ${c} ${f}`)).join(", ");
}

function table(settings: readonly Setting[]): string[] {
  const rows = settings.map((s) => {
    const dflt = defaultText(s);
    return `| ${code(s.key)} | ${s.env ? code(s.env) : ""} | ${flagsCell(s)} | ${
      dflt === undefined
        ? ""
        : cell(dflt.startsWith("{") || /^[\w.:/-]+$/.test(dflt) ? code(dflt) : dflt)
    } | ${cell(s.meta?.description ?? "")} |`;
  });
  return [
    "| Key | Environment | Flags | Default | Description |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ];
}

export function configReference(): string {
  const shape = shapeOf(configSchema)!;
  const lines = [
    "# Configuration reference",
    "",
    "<!-- Generated from the schema in src/config/ by `npm run docs:config` (scripts/config-doc.ts); edit the schema, not this file. -->",
    "",
    "Every server command (`skiff api`, `skiff gateway`, `skiff agent`, `skiff scaler`,",
    "`skiff up`) reads the same configuration, each value from the first of:",
    "",
    "1. its flag (absent flags override nothing),",
    "2. its environment variable (empty means unset),",
    "3. the config file (`--config FILE` or `SKIFF_CONFIG`, YAML or JSON), at the key's dotted path,",
    "4. the default.",
    "",
    "A command reads the whole file and uses its own sections. Unknown keys and bad",
    "values are refused at start with the key, where the value came from and how to fix it.",
    "Environment values are text: numbers and booleans (`true`/`false`) as written,",
    "lists comma-separated, maps as `KEY=VALUE` items; durations take Go syntax (`60s`)",
    "or milliseconds.",
    "",
    "```yaml",
    "redisUrl: redis://127.0.0.1:6379",
    "agent:",
    "  port: 8091            # or SKIFF_AGENT_PORT=8091, or skiff agent --port 8091",
    "autoscaler:",
    "  stableWindow: 60s",
    "quotas:",
    "  namespaces:",
    "    big-team: { services: 500 }",
    "```",
    "",
  ];
  const top = SETTINGS.filter((s) => s.path.length === 1);
  lines.push("## Top level", "", ...table(top), "");
  for (const [key, schema] of Object.entries(shape)) {
    if (!shapeOf(schema)) continue;
    const meta = sectionMeta(schema);
    lines.push(`## \`${key}\``, "");
    if (meta) lines.push(meta.description, "");
    lines.push(...table(SETTINGS.filter((s) => s.path[0] === key)), "");
  }
  return `${lines.join("\n").trimEnd()}\n`;
}
