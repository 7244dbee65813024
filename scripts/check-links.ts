/**
 * Checks that the docs point at things that exist, offline:
 * - in every Markdown file: relative links (`[text](docs/x.md#section)`), and
 *   repo paths named in the text (`gateway/proxy.ts`, `test/e2e/`, a bare
 *   `redis-acl.test.ts`), with their #anchors checked against the headings;
 * - in source files: the pages a comment or a test name sends readers to
 *   (`docs/*.md`, the top-level `*.md`).
 * URLs are not fetched; a path outside the repo (`../shared/...`) or under a
 * generated folder (`.cache/`) is not checked.
 *
 *   npm run check:links          (scripts/test.sh runs it after tsc)
 *
 * Prints each broken reference as file:line and exits 1 when there is one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Not walked: installed, generated or machine-local. */
const SKIP_DIRS = new Set([".git", "node_modules", ".cache", "coverage", ".skiff", "results"]);
const SOURCE_EXT = /\.(ts|js|sh|json|yaml)$/;

function walk(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) walk(join(dir, entry.name), out);
    } else if (entry.isFile()) {
      out.push(relative(ROOT, join(dir, entry.name)).split(sep).join("/"));
    }
  }
  return out;
}

const files = walk(ROOT);
const markdown = files.filter((f) => f.endsWith(".md"));
const SELF = relative(ROOT, fileURLToPath(import.meta.url))
  .split(sep)
  .join("/");
/** This script is left out: its comments show made-up references. */
const sources = files.filter((f) => SOURCE_EXT.test(f) && f !== "package-lock.json" && f !== SELF);
const basenames = new Set(files.map((f) => basename(f)));
const topDirs = new Set(
  readdirSync(ROOT, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !SKIP_DIRS.has(e.name))
    .map((e) => e.name),
);

/** GitHub's heading ids: lower case, punctuation dropped, each space a hyphen, repeats numbered. */
function anchorsOf(file: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutFences(readFileSync(join(ROOT, file), "utf8"))) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line.text);
    if (!m) continue;
    const text = m[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/[*`]/g, "");
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

const anchorCache = new Map<string, Set<string>>();
function hasAnchor(file: string, anchor: string): boolean {
  let ids = anchorCache.get(file);
  if (!ids) {
    ids = anchorsOf(file);
    anchorCache.set(file, ids);
  }
  return ids.has(anchor.toLowerCase());
}

interface Line {
  n: number;
  text: string;
  fenced: boolean;
}

function* withoutFences(source: string, keepFenced = false): Generator<Line> {
  let fence: string | undefined;
  const lines = source.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    const open = /^\s*(```+|~~~+)/.exec(text);
    if (open) {
      if (fence === undefined) fence = open[1]!;
      else if (text.trim().startsWith(fence)) fence = undefined;
      continue;
    }
    if (fence === undefined || keepFenced) yield { n: i + 1, text, fenced: fence !== undefined };
  }
}

const problems: string[] = [];

/**
 * Checks `target` (a repo-relative or `from`-relative path, maybe with an
 * #anchor) and records a problem at `where` when it does not resolve.
 */
function check(where: string, from: string, target: string, relativeToFile: boolean): void {
  const hash = target.indexOf("#");
  const path = hash === -1 ? target : target.slice(0, hash);
  const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const abs =
    path === ""
      ? join(ROOT, from)
      : resolve(relativeToFile ? join(ROOT, dirname(from)) : ROOT, path);
  const rel = relative(ROOT, abs).split(sep).join("/");
  if (rel.startsWith("..")) return; // outside the repo
  if (rel.split("/").some((seg) => SKIP_DIRS.has(seg))) return; // generated
  if (!existsSync(abs)) {
    problems.push(`${where}: ${target} does not exist`);
    return;
  }
  if (anchor !== undefined && anchor !== "") {
    if (!rel.endsWith(".md") || statSync(abs).isDirectory()) {
      problems.push(`${where}: ${target} has an anchor but is not a Markdown page`);
    } else if (!hasAnchor(rel, anchor)) {
      problems.push(`${where}: ${target}: no heading #${anchor} in ${rel}`);
    }
  }
}

const URL_RE = /\b[a-z][a-z0-9+.-]*:\/\/\S+/gi;
const LINK_RE = /!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
/** a/b/c.ts, test/e2e/, docs/x.md#anchor; the first segment must be one of the repo's folders. */
const PATH_RE = /(?<![\w./~$@:{}<-])((?:\.\.?\/)*[\w@-][\w@.-]*\/[\w@./-]*(?:#[\w-]+)?)/g;
/** A bare file name in inline code: `redis-acl.test.ts`. */
const BARE_RE = /`([\w-]+(?:\.[\w-]+)*\.(?:ts|js|md))`/g;

for (const file of markdown) {
  const source = readFileSync(join(ROOT, file), "utf8");
  for (const { n, text, fenced } of withoutFences(source, true)) {
    const where = `${file}:${n}`;
    const plain = text.replace(URL_RE, " ");
    if (!fenced) {
      for (const m of plain.matchAll(LINK_RE)) {
        const target = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // mailto:, https: ...
        check(where, file, target, true);
      }
      for (const m of plain.matchAll(BARE_RE)) {
        if (!basenames.has(m[1]!)) problems.push(`${where}: no file named ${m[1]} in the repo`);
      }
    }
    const prose = fenced ? plain : plain.replace(LINK_RE, " ");
    for (const m of prose.matchAll(PATH_RE)) {
      let token = m[1]!.replace(/[.,:;]+$/, "");
      const next = prose[m.index! + m[1]!.length];
      // Patterns and placeholders (bench/RESULTS-*.md, {state}/x), not paths.
      if (next === "*" || next === "{" || next === "<" || next === "[") continue;
      if (token.startsWith("./")) token = token.slice(2);
      const first = token.split("/")[0]!;
      if (first === "..") check(where, file, token, true);
      else if (topDirs.has(first)) check(where, file, token, false);
    }
  }
}

/** A comment or test name sending readers to a page: docs/x.md(#a), README.md, ... */
const DOC_REF_RE = /(?<![\w./-])((?:docs\/[\w-]+|README|DEVELOPERS|BENCHMARKS)\.md(?:#[\w-]+)?)/g;
for (const file of sources) {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  lines.forEach((text, i) => {
    for (const m of text.matchAll(DOC_REF_RE)) check(`${file}:${i + 1}`, file, m[1]!, false);
  });
}

if (problems.length > 0) {
  process.stderr.write(`${problems.join("\n")}\n${problems.length} broken doc reference(s)\n`);
  process.exit(1);
}
console.log(`doc references ok (${markdown.length} Markdown files, ${sources.length} sources)`);
