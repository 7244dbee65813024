/**
 * An in-process Redis for a zero-install `skiff up`: `memory://NAME` URLs give
 * ioredis-compatible connections (ioredis-mock) sharing one keyspace and one
 * pub/sub bus per NAME inside this process. Every component keeps its Redis
 * code, Lua scripts included, so the in-process mode runs the same paths as
 * production; the store contract suite runs against it (test/src/store).
 *
 * What ioredis-mock lacks and Skiff needs is patched here, in one place:
 * integer replies inside Lua, the `cjson` library that real Redis gives Lua
 * scripts, and ioredis's `status` field.
 */
import { createHash } from "node:crypto";
import type { Redis, RedisOptions } from "ioredis";
import RedisMock from "ioredis-mock";
import { SkiffError } from "../errors.ts";

export const MEMORY_SCHEME = "memory://";

export function isMemoryRedisUrl(url: string): boolean {
  return url.startsWith(MEMORY_SCHEME);
}

/**
 * `cjson.encode` / `cjson.decode` for the scripts that use them, in plain Lua
 * (the mock's Lua engine, fengari, has no cjson). Encoding follows cjson: an
 * empty table is `{}`, a sequence is an array; JSON null decodes to nil.
 */
const CJSON_LUA = `
local cjson = {}
do
  local esc = { ['"'] = '\\\\"', ['\\\\'] = '\\\\\\\\', ['\\n'] = '\\\\n', ['\\r'] = '\\\\r', ['\\t'] = '\\\\t' }
  local function enc(v)
    local t = type(v)
    if t == "string" then
      return '"' .. (v:gsub('[%c"\\\\]', function(c) return esc[c] or string.format("\\\\u%04x", c:byte()) end)) .. '"'
    elseif t == "number" then
      if math.type(v) == "integer" then return tostring(v) end
      return string.format("%.14g", v)
    elseif t == "boolean" then return tostring(v)
    elseif t == "nil" then return "null"
    elseif t == "table" then
      local out = {}
      if #v > 0 then
        for i = 1, #v do out[i] = enc(v[i]) end
        return "[" .. table.concat(out, ",") .. "]"
      end
      for k, x in pairs(v) do out[#out + 1] = enc(tostring(k)) .. ":" .. enc(x) end
      return "{" .. table.concat(out, ",") .. "}"
    end
    error("cjson: cannot encode a " .. t)
  end
  local unesc = { b = "\\b", f = "\\f", n = "\\n", r = "\\r", t = "\\t" }
  local function ws(s, i) return s:find("[^ \\t\\r\\n]", i) or #s + 1 end
  local function str(s, i)
    if s:sub(i, i) ~= '"' then error("cjson: expected a string at " .. i) end
    local out, j = {}, i + 1
    while true do
      local k = s:find('["\\\\]', j)
      if not k then error("cjson: unterminated string") end
      out[#out + 1] = s:sub(j, k - 1)
      if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
      local e = s:sub(k + 1, k + 1)
      if e == "u" then
        out[#out + 1] = utf8.char(tonumber(s:sub(k + 2, k + 5), 16))
        j = k + 6
      else
        out[#out + 1] = unesc[e] or e
        j = k + 2
      end
    end
  end
  local dec
  local function seq(s, i, close, item)
    i = ws(s, i)
    if s:sub(i, i) == close then return i + 1 end
    while true do
      i = ws(s, item(i))
      local c = s:sub(i, i)
      if c == close then return i + 1 end
      if c ~= "," then error("cjson: expected ',' or '" .. close .. "' at " .. i) end
      i = ws(s, i + 1)
    end
  end
  dec = function(s, i)
    i = ws(s, i)
    local c = s:sub(i, i)
    if c == "{" then
      local t = {}
      return t, seq(s, i + 1, "}", function(j)
        local k
        k, j = str(s, j)
        j = ws(s, j)
        if s:sub(j, j) ~= ":" then error("cjson: expected ':' at " .. j) end
        t[k], j = dec(s, j + 1)
        return j
      end)
    elseif c == "[" then
      local t = {}
      return t, seq(s, i + 1, "]", function(j)
        t[#t + 1], j = dec(s, j)
        return j
      end)
    elseif c == '"' then return str(s, i)
    elseif s:sub(i, i + 3) == "true" then return true, i + 4
    elseif s:sub(i, i + 4) == "false" then return false, i + 5
    elseif s:sub(i, i + 3) == "null" then return nil, i + 4
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num then error("cjson: unexpected character at " .. i) end
    return tonumber(num), i + #num
  end
  cjson.encode = enc
  cjson.decode = function(s)
    local v, i = dec(s, 1)
    if ws(s, i) <= #s then error("cjson: trailing characters") end
    return v
  end
end
`;

/**
 * Redis hands Lua scripts integers as integers and arrays as tables with nil
 * entries as `false`. The mock's bridge hands over every JS number as a float
 * (`tostring(redis.call("INCR", k))` would give "1.0") and arrays as JS
 * proxies whose missing entries are a truthy JS null. Convert replies back.
 * (One difference stays: the mock hands an empty string reply over as nil.)
 */
const REPLIES_LUA = `
do
  local call, pcall_ = redis.call, redis.pcall
  -- A nested array (SSCAN's members) comes over as a plain JS array: indexed from 0.
  local function conv(v, nested)
    local t = type(v)
    if t == "number" then return math.tointeger(v) or v end
    if t ~= "userdata" then return v end
    local out, base = {}, nested and 1 or 0
    for i = 1, #v do
      local x = v[i - base]
      if x == nil or (type(x) == "userdata" and tostring(x) == "null") then
        out[i] = false
      else
        out[i] = conv(x, true)
      end
    end
    return out
  end
  redis.call = function(...) return conv(call(...)) end
  redis.pcall = function(...) return conv(pcall_(...)) end
end
`;

/**
 * The mock turns a script's reply into a JS array only when the table was
 * built by a constructor (it relies on key order); a table grown with
 * `t[#t + 1] = x` comes back as an opaque proxy. Rebuild every reply table with
 * a constructor, and map `false` to nil as Redis does.
 */
const RESULT_LUA = `
local function skiff_reply(v)
  if v == false then return nil end
  if type(v) ~= "table" then return v end
  local n, out = #v, {}
  for i = 1, n do
    local x = v[i]
    if type(x) == "table" then out[i] = skiff_reply(x) else out[i] = x end
  end
  return { table.unpack(out, 1, n) }
end
`;

/** The script run with the fixes above: its body becomes a function whose reply is rebuilt. */
function withPrelude(script: unknown): unknown {
  if (typeof script !== "string") return script;
  const cjson = script.includes("cjson") ? CJSON_LUA : "";
  return `${REPLIES_LUA}${cjson}${RESULT_LUA}return skiff_reply((function()\n${script}\nend)())`;
}

/** The mock's own fields that the adapter uses. */
interface Mock {
  connected: boolean;
  context: { modifiedKeyEvents: { setMaxListeners(n: number): void } };
  eval(...args: unknown[]): Promise<unknown>;
  evalsha(...args: unknown[]): Promise<unknown>;
  script(...args: unknown[]): Promise<unknown>;
  duplicate(override?: object): Mock;
}

type ReplyTransformer = (result: unknown, context?: unknown) => unknown;

/**
 * ioredis 6's reply transformers (e.g. for ZRANGE) need the reply context that
 * ioredis passes and the mock does not; give them the RESP2 default when it is
 * missing. Real connections always pass one, so they are unaffected.
 */
{
  const reply = (
    RedisMock as unknown as {
      Command: { transformers: { reply: Record<string, ReplyTransformer> } };
    }
  ).Command.transformers.reply;
  const resp2 = { protocol: 2, replyMapping: "legacy" };
  for (const [name, transform] of Object.entries(reply)) {
    reply[name] = (result, context) => transform(result, context ?? resp2);
  }
}

/** SCRIPT LOAD / EVALSHA for the mock (it has no SCRIPT and caches per connection). */
const scripts = new Map<string, string>();

function remember(source: string): string {
  const sha = createHash("sha1").update(source).digest("hex");
  scripts.set(sha, source);
  return sha;
}

/** Give a mock connection what Skiff's code expects of an ioredis one. */
function adapt(mock: Mock): Redis {
  const evalScript = mock.eval.bind(mock);
  mock.eval = (script: unknown, ...rest: unknown[]) => {
    if (typeof script === "string") remember(script);
    // A nil reply is null from ioredis, undefined from the mock.
    return evalScript(withPrelude(script), ...rest).then((reply) => reply ?? null);
  };
  mock.evalsha = async (sha: unknown, ...rest: unknown[]) => {
    const source = scripts.get(String(sha).toLowerCase());
    // Redis's own error reply, word for word: callers (ioredis) recognise it by its text.
    if (source === undefined) throw new Error("NOSCRIPT No matching script. Please use EVAL.");
    return mock.eval(source, ...rest);
  };
  mock.script = async (sub: unknown, ...args: unknown[]) => {
    switch (String(sub).toUpperCase()) {
      case "LOAD":
        return remember(String(args[0]));
      case "EXISTS":
        return args.map((sha) => (scripts.has(String(sha).toLowerCase()) ? 1 : 0));
      case "FLUSH":
        scripts.clear();
        return "OK";
      default:
        // A Redis error reply, as redis-server words it; no Skiff code calls another subcommand.
        throw new Error(
          `ERR unknown subcommand '${String(sub)}' for SCRIPT in the in-process store`,
        );
    }
  };
  Object.defineProperty(mock, "status", {
    get: () => (mock.connected ? "ready" : "end"),
  });
  // Every connection listens on its keyspace's emitter; a process has dozens.
  mock.context.modifiedKeyEvents.setMaxListeners(0);
  const duplicate = mock.duplicate.bind(mock);
  mock.duplicate = (override?: object) => adapt(duplicate(override)) as unknown as Mock;
  return mock as unknown as Redis;
}

/** A connection to the in-process Redis named by a `memory://NAME` URL. */
export function connectMemoryRedis(url: string, options: RedisOptions = {}): Redis {
  const name = url.slice(MEMORY_SCHEME.length).replace(/\/+$/, "") || "default";
  // The mock keys its shared keyspaces by host:port/db.
  const mock = new RedisMock({
    host: `skiff-memory-${name}`,
    port: 1,
    keyPrefix: options.keyPrefix ?? "",
    lazyConnect: options.lazyConnect ?? false,
  });
  return adapt(mock as unknown as Mock);
}

type SnapshotEntry = [key: string, type: string, value: string | string[]];

/** The mock's keyspace, shared by every connection to one name (its internals, pinned by tests). */
interface MockContext {
  data: { keys(): string[]; get(key: string): unknown };
  expires: { has(key: string): boolean };
  modifiedKeyEvents: {
    on(event: "modified", listener: (key: string) => void): void;
    off(event: "modified", listener: (key: string) => void): void;
  };
}

const contextOf = (redis: Redis) => (redis as unknown as { context: MockContext }).context;

/**
 * A JSON copy of the durable keys (those without a TTL: heartbeats, leases and
 * counters are rebuilt by the processes that own them), taken synchronously
 * from the keyspace, so it is consistent: no script or command runs meanwhile.
 * Reading the mock's data directly costs milliseconds where a Lua script
 * over the same keys would block for a second on a few megabytes.
 */
export function snapshotMemoryRedis(redis: Redis): string {
  const { data, expires } = contextOf(redis);
  const entries: SnapshotEntry[] = [];
  for (const key of data.keys().sort()) {
    if (expires.has(key)) continue;
    const v = data.get(key);
    if (typeof v === "string" || Buffer.isBuffer(v)) entries.push([key, "string", String(v)]);
    else if (v instanceof Set) {
      if (v.size > 0) entries.push([key, "set", [...v].map(String).sort()]);
    } else if (v instanceof Map) {
      // Sorted sets: member -> { score, value }; stored as member, score pairs.
      const pairs: string[] = [];
      for (const [member, { score }] of v as Map<string, { score: number }>) {
        pairs.push(String(member), String(score));
      }
      if (pairs.length > 0) entries.push([key, "zset", pairs]);
    } else if (Array.isArray(v)) {
      if (v.length > 0) entries.push([key, "list", v.map(String)]);
    } else if (v !== null && typeof v === "object") {
      const pairs = Object.entries(v).flatMap(([field, value]) => [field, String(value)]);
      if (pairs.length > 0) entries.push([key, "hash", pairs]);
    }
    // A collection emptied by removal stays as an empty key in the mock; Redis drops it.
  }
  return JSON.stringify({ version: 1, keys: entries });
}

/**
 * Call `listener` after each change of a durable key (one without a TTL),
 * e.g. to save a snapshot only when there is something new. Returns a stop.
 */
export function onDurableChange(redis: Redis, listener: (key: string) => void): () => void {
  const { expires, modifiedKeyEvents } = contextOf(redis);
  // A command sets a key's TTL after writing it: look once the command is done.
  const onModified = (key: string) => queueMicrotask(() => expires.has(key) || listener(key));
  modifiedKeyEvents.on("modified", onModified);
  return () => modifiedKeyEvents.off("modified", onModified);
}

/** Write a snapshot back (into an empty keyspace, before anything else uses it). */
export async function restoreMemoryRedis(redis: Redis, json: string): Promise<number> {
  const parsed = JSON.parse(json) as { version?: number; keys?: SnapshotEntry[] };
  if (parsed.version !== 1 || !Array.isArray(parsed.keys)) {
    throw new SkiffError("INVALID", "not a Skiff in-process store snapshot (version 1)");
  }
  let restored = 0;
  for (const [key, type, value] of parsed.keys) {
    const items = Array.isArray(value) ? value.map(String) : [String(value)];
    if (Array.isArray(value) && items.length === 0) continue;
    restored++;
    if (type === "string") await redis.set(key, String(value));
    else if (type === "hash") await redis.hset(key, ...items);
    else if (type === "set") await redis.sadd(key, ...items);
    else if (type === "list") await redis.rpush(key, ...items);
    else if (type === "zset") {
      // Stored as member, score pairs; ZADD takes score, member.
      const pairs: string[] = [];
      for (let i = 0; i + 1 < items.length; i += 2) pairs.push(items[i + 1]!, items[i]!);
      await redis.zadd(key, ...pairs);
    } else
      throw new SkiffError(
        "INVALID",
        `snapshot key ${key} has an unknown type ${type} (one of string, hash, set, list, zset)`,
      );
  }
  return restored;
}
