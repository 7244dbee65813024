/**
 * Lua scripts of the fleet state, for the writes that must land together
 * (a record and its index, an endpoint and its announcement). Like the
 * store's scripts they build some key names from prefixes passed in ARGV, so
 * they target a single Redis (or a primary with replicas), not Redis Cluster.
 */
import { luaScript } from "../redis/script.ts";

/**
 * Withdraw every endpoint one agent published, using its index; publishes each
 * touched "{ns}/{rev}" once. An entry whose endpoint now belongs to another
 * agent (cannot happen with unique instance ids, but costs nothing) is kept.
 */
const WITHDRAW_AGENT_FN = `
local function withdraw_agent(agent, index, endpoints_prefix, refs_key, channel)
  local entries = redis.call("HGETALL", index)
  local touched = {}
  local n = 0
  for i = 1, #entries, 2 do
    local id, ref = entries[i], entries[i + 1]
    local slash = string.find(ref, "/", 1, true)
    if slash then
      local key = endpoints_prefix .. string.sub(ref, 1, slash - 1) .. ":" .. string.sub(ref, slash + 1)
      local cur = redis.call("HGET", key, id)
      if cur then
        local ok, ep = pcall(cjson.decode, cur)
        if not ok or type(ep) ~= "table" or ep.agentId == agent then
          redis.call("HDEL", key, id)
          if redis.call("HLEN", key) == 0 then redis.call("SREM", refs_key, ref) end
          touched[ref] = true
          n = n + 1
        end
      end
    end
  end
  redis.call("DEL", index)
  for ref in pairs(touched) do redis.call("PUBLISH", channel, ref) end
  return n
end
`;

/**
 * Register or refresh an agent. KEYS: agent record, agents zset, instances hash.
 * ARGV: record JSON, ttl ms, now ms, agent id, agents channel, announce ("1"/"0").
 * Returns 1 when the record existed (a refresh), 0 when it (re)joined; a join
 * or an announced change is published.
 */
export const HEARTBEAT = luaScript(`
local existed = redis.call("EXISTS", KEYS[1])
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[4])
redis.call("PEXPIRE", KEYS[3], ARGV[2])
if existed == 0 or ARGV[6] == "1" then redis.call("PUBLISH", ARGV[5], ARGV[4]) end
return existed
`);

/**
 * Leave the fleet: withdraw the agent's endpoints, drop its record, zset member
 * and instance reports. KEYS: agent record, agents zset, instances hash,
 * agent-endpoints index, endpoint-revisions. ARGV: agent id, endpoints key
 * prefix, endpoints channel, agents channel. Returns endpoints withdrawn.
 */
export const DEREGISTER = luaScript(`${WITHDRAW_AGENT_FN}
local n = withdraw_agent(ARGV[1], KEYS[4], ARGV[2], KEYS[5], ARGV[3])
redis.call("DEL", KEYS[1], KEYS[3])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("PUBLISH", ARGV[4], ARGV[1])
return n
`);

/**
 * Withdraw every endpoint of one agent (e.g. a restarted agent cleaning up
 * after its previous run). KEYS: agent-endpoints index, endpoint-revisions.
 * ARGV: agent id, endpoints key prefix, endpoints channel. Returns the count.
 */
export const WITHDRAW_AGENT = luaScript(`${WITHDRAW_AGENT_FN}
return withdraw_agent(ARGV[1], KEYS[1], ARGV[2], KEYS[2], ARGV[3])
`);

/**
 * Live agents, pruning the dead: a zset member whose record expired is
 * removed, its endpoints withdrawn and its reports dropped, and its departure
 * published. KEYS: agents zset, endpoint-revisions. ARGV: agent key prefix,
 * agent-endpoints prefix, endpoints key prefix, instances prefix, endpoints
 * channel, agents channel. Returns { live record JSON..., "", dead id... }.
 */
export const PRUNE = luaScript(`${WITHDRAW_AGENT_FN}
local live, dead = {}, {}
for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
  local rec = redis.call("GET", ARGV[1] .. id)
  if rec then
    live[#live + 1] = rec
  else
    redis.call("ZREM", KEYS[1], id)
    withdraw_agent(id, ARGV[2] .. id, ARGV[3], KEYS[2], ARGV[5])
    redis.call("DEL", ARGV[4] .. id)
    redis.call("PUBLISH", ARGV[6], id)
    dead[#dead + 1] = id
  end
end
live[#live + 1] = ""
for _, id in ipairs(dead) do live[#live + 1] = id end
return live
`);

/**
 * Publish one ready endpoint. KEYS: endpoints hash, endpoint-revisions,
 * agent-endpoints index. ARGV: instance id, endpoint JSON, "{ns}/{rev}",
 * endpoints channel. Returns 0 (and stays silent) when it was already there
 * unchanged, so a resync that republishes costs gateways nothing.
 */
export const PUBLISH_ENDPOINT = luaScript(`
redis.call("HSET", KEYS[3], ARGV[1], ARGV[3])
redis.call("SADD", KEYS[2], ARGV[3])
if redis.call("HGET", KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("PUBLISH", ARGV[4], ARGV[3])
return 1
`);

/**
 * Withdraw one endpoint. KEYS: endpoints hash, endpoint-revisions. ARGV:
 * instance id, "{ns}/{rev}", endpoints channel, agent-endpoints prefix, agent
 * id ("" when unknown: taken from the stored endpoint). Returns 1 if it was
 * there.
 */
export const WITHDRAW_ENDPOINT = luaScript(`
local cur = redis.call("HGET", KEYS[1], ARGV[1])
local agent = ARGV[5]
if cur and agent == "" then
  local ok, ep = pcall(cjson.decode, cur)
  if ok and type(ep) == "table" and type(ep.agentId) == "string" then agent = ep.agentId end
end
if agent ~= "" then redis.call("HDEL", ARGV[4] .. agent, ARGV[1]) end
if not cur then return 0 end
redis.call("HDEL", KEYS[1], ARGV[1])
if redis.call("HLEN", KEYS[1]) == 0 then redis.call("SREM", KEYS[2], ARGV[2]) end
redis.call("PUBLISH", ARGV[3], ARGV[2])
return 1
`);

/**
 * The one write of a desired set. KEYS: desired hash, and the leader lease
 * when the write is fenced. ARGV: lease value ("" unfenced), desired channel,
 * agent id, "1" to clear the set first, #ids to remove, ids..., then
 * field/json pairs to set. Returns 1, or -1 (nothing written) when the lease
 * does not hold our value: a deposed leader's write changes nothing.
 */
export const WRITE_DESIRED = luaScript(`
if #KEYS == 2 and redis.call("GET", KEYS[2]) ~= ARGV[1] then return -1 end
if ARGV[4] == "1" then redis.call("DEL", KEYS[1]) end
local n = tonumber(ARGV[5])
for i = 6, 5 + n do redis.call("HDEL", KEYS[1], ARGV[i]) end
for i = 6 + n, #ARGV, 2 do redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call("PUBLISH", ARGV[2], ARGV[3])
return 1
`);
