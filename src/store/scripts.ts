/**
 * The store's Lua scripts (src/redis/script.ts runs them). Each runs
 * atomically: that is what makes a commit all-or-nothing.
 */
import { luaScript } from "../redis/script.ts";

/**
 * A snapshot of one collection: its version and every member.
 * KEYS: idx, cv. ARGV: the members' object-key prefix ("{p}obj:{kind}:{ns}:").
 * Returns { cv or "", name1, rv1, json1, name2, ... }.
 */
export const LIST = luaScript(`
local out = { redis.call("GET", KEYS[2]) or "" }
for _, name in ipairs(redis.call("SMEMBERS", KEYS[1])) do
  local o = redis.call("HMGET", ARGV[1] .. name, "rv", "json")
  if o[1] then
    out[#out + 1] = name
    out[#out + 1] = o[1]
    out[#out + 1] = o[2]
  end
end
return out
`);

/**
 * Check every version the transaction read, then apply its writes and announce
 * them. Nothing is written when a check fails.
 *
 * KEYS[1] = rv counter; then per check: the key; per object op: obj, idx,
 * namespaces set, collection version, artifact, the namespace's artifact-bytes
 * counter; per artifact: its key and that counter.
 * ARGV[1] = events channel, ARGV[2..4] = #checks, #ops, #artifacts; then per
 * check: type ("o" object rv, "c" collection version: expected "" = absent;
 * "n" collection size, "b" namespace artifact bytes: expected = the most
 * allowed); per op: "p"|"d", kind, namespace, name, json ("" for deletes),
 * has-artifact ("1"|"0"); per artifact: content.
 * Returns { 0, conflicting key } or { 1, resourceVersion or "" }.
 */
export const COMMIT = luaScript(`
local nChecks, nOps, nArts = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local k, a = 2, 5
for _ = 1, nChecks do
  local t = ARGV[a]
  if t == "n" then
    -- A bound, not a version: the collection may change as long as it stays small enough.
    if redis.call("SCARD", KEYS[k]) > tonumber(ARGV[a + 1]) then return { 0, KEYS[k] } end
  elseif t == "b" then
    if tonumber(redis.call("GET", KEYS[k]) or "0") > tonumber(ARGV[a + 1]) then
      return { 0, KEYS[k] }
    end
  else
    local have
    if t == "o" then
      have = redis.call("HGET", KEYS[k], "rv")
    else
      have = redis.call("GET", KEYS[k])
    end
    if (have or "") ~= ARGV[a + 1] then
      return { 0, KEYS[k] }
    end
  end
  k, a = k + 1, a + 2
end

local rv = false
local function version()
  if not rv then rv = tostring(redis.call("INCR", KEYS[1])) end
  return rv
end

local events = {}
local function announce(change, kind, ns, name)
  events[#events + 1] = cjson.encode({
    type = change, kind = kind, namespace = ns, name = name, resourceVersion = rv,
  })
end

for _ = 1, nOps do
  local obj, idx, nsSet, cv, art, bytes =
    KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local op, kind, ns, name, json, hasArt =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  if op == "p" then
    local v = version()
    redis.call("HSET", obj, "rv", v, "json", json)
    if redis.call("SADD", idx, name) == 1 then
      redis.call("SADD", nsSet, ns)
      redis.call("SET", cv, v)
    end
    announce("put", kind, ns, name)
  else
    local existed = redis.call("DEL", obj) == 1
    local artLen = hasArt == "1" and redis.call("STRLEN", art) or 0
    local hadArt = hasArt == "1" and redis.call("DEL", art) == 1
    if hadArt and redis.call("EXISTS", bytes) == 1 then redis.call("DECRBY", bytes, artLen) end
    if existed then
      local v = version()
      redis.call("SREM", idx, name)
      redis.call("SET", cv, v)
      if redis.call("SCARD", idx) == 0 then redis.call("SREM", nsSet, ns) end
      announce("delete", kind, ns, name)
    elseif hadArt then
      version()
    end
  end
  k, a = k + 6, a + 6
end

for _ = 1, nArts do
  version()
  local old = redis.call("STRLEN", KEYS[k])
  redis.call("SET", KEYS[k], ARGV[a])
  -- The namespace's byte count is kept only once it exists: a count started
  -- here would miss the artifacts written before it (the first read builds it).
  if redis.call("EXISTS", KEYS[k + 1]) == 1 then
    redis.call("INCRBY", KEYS[k + 1], redis.call("STRLEN", KEYS[k]) - old)
  end
  k, a = k + 2, a + 1
end

for _, e in ipairs(events) do
  redis.call("PUBLISH", ARGV[1], e)
end
return { 1, rv or "" }
`);

/**
 * The bytes of every artifact in one namespace, building the count from the
 * artifacts themselves the first time (the commit script keeps it after).
 * KEYS: artifact-bytes counter, the revisions index of the namespace.
 * ARGV: the artifact key prefix ("{p}artifact:{ns}:"). Returns the count.
 */
export const ARTIFACT_BYTES = luaScript(`
local have = redis.call("GET", KEYS[1])
if have then return tonumber(have) end
local total = 0
for _, name in ipairs(redis.call("SMEMBERS", KEYS[2])) do
  total = total + redis.call("STRLEN", ARGV[1] .. name)
end
redis.call("SET", KEYS[1], total)
return total
`);
