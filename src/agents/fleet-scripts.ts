// The fleet registry and command store in Redis: every state change is one Lua
// script, so two hosts changing one agent or one command never interleave.
//
// Keys (prefix = cluster.key_prefix):
//   {p}agent:{id}         hash: name, group, version, capabilities, routes (JSON), registered (1/0),
//                         registeredAt, token (sha256 hex of the current access token), tokenAt
//   {p}agents:ids         sorted set, all scores 0: every agent id, for cursor pages in id order
//   {p}agents:hb          sorted set: id -> last heartbeat (ms); states are ranges of it
//   {p}agent-stream:{id}  host id that holds the agent's SSE stream (expires with the token)
//   {p}cmd:{id}           hash: agent, type, target, createdAt, payload, signature, seq,
//                         deliveredAt?, acknowledgedAt?, result?
//   {p}cmds:{agent}       sorted set: seq -> command id (the last agents.max_commands_kept)
//   {p}cmd-seq            counter for seq (list cursors)

/**
 * Register (or write back) an agent. KEYS: doc, ids, hb. ARGV: id, heartbeatAt, maxAgents, name,
 * group, version, capabilities, routes, registered (1/0), registeredAt, token, tokenAt.
 * The token is replaced only by one issued later (a host writing back after an outage never
 * revokes a newer registration); registeredAt of a registered agent is kept.
 * Returns 0 when the id is new and the registry is full, else 1.
 */
export const REGISTER_LUA = `
local exists = redis.call('EXISTS', KEYS[1])
if exists == 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
local regAt = ARGV[10]
if exists == 1 and redis.call('HGET', KEYS[1], 'registered') == '1' then
  regAt = redis.call('HGET', KEYS[1], 'registeredAt') or regAt
end
local oldAt = tonumber(redis.call('HGET', KEYS[1], 'tokenAt') or '-1') or -1
if ARGV[9] == '1' or exists == 0 then
  redis.call('HSET', KEYS[1], 'name', ARGV[4], 'group', ARGV[5], 'version', ARGV[6], 'capabilities', ARGV[7],
    'routes', ARGV[8], 'registered', ARGV[9], 'registeredAt', regAt)
end
if ARGV[11] ~= '' and tonumber(ARGV[12]) >= oldAt then
  redis.call('HSET', KEYS[1], 'token', ARGV[11], 'tokenAt', ARGV[12])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 'GT', ARGV[2], ARGV[1])
return 1
`;

/**
 * Traffic on a node's TCP connection. KEYS: doc, ids, hb. ARGV: id, at, maxAgents, group ('' none).
 * A node seen only on TCP is listed (registered 0). Returns 0 when new and the registry is full.
 */
export const TOUCH_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
  local g = ARGV[4]
  if g == '' then g = 'default' end
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'group', g, 'version', '', 'capabilities', '[]', 'routes', '[]',
    'registered', '0', 'registeredAt', ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
elseif ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'registered') ~= '1' then
  redis.call('HSET', KEYS[1], 'group', ARGV[4])
end
redis.call('ZADD', KEYS[3], 'GT', ARGV[2], ARGV[1])
return 1
`;

/** KEYS: doc, hb. ARGV: id, now. 1, or 0 for an unknown agent. */
export const HEARTBEAT_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
return 1
`;

/**
 * KEYS: doc, ids, hb, cmds, stream. ARGV: id, command key prefix.
 * Removes the agent and its commands; returns {found (0/1), stream holder or ''}.
 */
export const DELETE_LUA = `
local found = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
for _, c in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do redis.call('DEL', ARGV[2] .. c) end
redis.call('DEL', KEYS[4])
local holder = redis.call('GET', KEYS[5]) or ''
redis.call('DEL', KEYS[5])
return {found, holder}
`;

/**
 * One page of ids in id order, optionally of one state. KEYS: ids, hb.
 * ARGV: after ('' = from the start), limit, status ('' = any), now, staleAfterMs, deadAfterMs, maxScan.
 * Returns {more (0/1), id...}. Walks the index in chunks, at most maxScan ids (the index holds at most
 * agents.max_agents; a larger one, written by something else, does not hold Redis for longer).
 */
export const PAGE_LUA = `
local limit = tonumber(ARGV[2])
local now, stale, dead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local out = {0}
local budget = tonumber(ARGV[7])
while budget > 0 do
  local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, 256)
  if #ids == 0 then return out end
  for _, id in ipairs(ids) do
    local ok = ARGV[3] == ''
    if not ok then
      local hb = tonumber(redis.call('ZSCORE', KEYS[2], id) or '0') or 0
      local quiet = now - hb
      local s = 'DEAD'
      if quiet < stale then s = 'LIVE' elseif quiet < stale + dead then s = 'STALE' end
      ok = s == ARGV[3]
    end
    if ok then
      if #out > limit then out[1] = 1 return out end
      out[#out + 1] = id
    end
  end
  budget = budget - #ids
  start = '(' .. ids[#ids]
end
return out
`;

/**
 * Stores a command once. KEYS: cmd, cmds (the agent's), seq. ARGV: id, agent, type, target, createdAt,
 * payload, signature, maxKept, command key prefix. Keeps the agent's last maxKept. Returns the seq.
 */
export const CREATE_COMMAND_LUA = `
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'agent', ARGV[2], 'type', ARGV[3], 'target', ARGV[4], 'createdAt', ARGV[5],
  'payload', ARGV[6], 'signature', ARGV[7], 'seq', seq)
redis.call('ZADD', KEYS[2], seq, ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[8])
if over > 0 then
  for _, c in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do redis.call('DEL', ARGV[9] .. c) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
return seq
`;

/**
 * PENDING -> DELIVERED, claimed before the event is written, so one command goes out once even when
 * two hosts try (a stream opening while the command is routed). KEYS: cmd. ARGV: agent, now, ttlMs.
 * 1 when claimed, 0 otherwise.
 */
export const CLAIM_LUA = `
local f = redis.call('HMGET', KEYS[1], 'agent', 'createdAt', 'deliveredAt', 'acknowledgedAt')
if not f[1] or f[1] ~= ARGV[1] or f[3] or f[4] then return 0 end
if tonumber(ARGV[2]) >= (tonumber(f[2]) or 0) + tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'deliveredAt', ARGV[2])
return 1
`;

/** Undo a claim whose event could not be written (the stream closed). KEYS: cmd. ARGV: deliveredAt. */
export const UNCLAIM_LUA = `
if redis.call('HGET', KEYS[1], 'deliveredAt') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'acknowledgedAt') == 0 then
  redis.call('HDEL', KEYS[1], 'deliveredAt')
  return 1
end
return 0
`;

/**
 * KEYS: cmd. ARGV: agent, now, ttlMs, result (JSON, '' for none).
 * Returns 'acknowledged', 'unknown', 'expired' or 'already'.
 */
export const ACK_LUA = `
local f = redis.call('HMGET', KEYS[1], 'agent', 'createdAt', 'acknowledgedAt')
if not f[1] or f[1] ~= ARGV[1] then return 'unknown' end
if f[3] then return 'already' end
if tonumber(ARGV[2]) >= (tonumber(f[2]) or 0) + tonumber(ARGV[3]) then return 'expired' end
redis.call('HSET', KEYS[1], 'acknowledgedAt', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[4]) end
return 'acknowledged'
`;

/** KEYS: stream. ARGV: host. Deletes the stream holder only if it is still this host. */
export const STREAM_CLOSED_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
