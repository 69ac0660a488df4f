// The node lease in Redis, as atomic Lua scripts. Two keys per node:
//   {prefix}lease:{node}  "host|fence", with a PX expiry: who feeds the node, under which fence
//   {prefix}fence:{node}  the last fence granted for the node (no expiry)
// Every change compares the whole "host|fence" value, so a host can only renew or
// release the grant it was given: a lease that expired and was granted again (to
// anyone, itself included) has a new fence and no longer matches.
//
// Fences are monotonic across Redis restarts and failovers although nothing is
// persisted: a grant's fence is max(last fence + 1, Redis's clock in ms, the caller's
// floor). A restarted Redis has lost the counter but its clock is past every fence
// granted before (they were at most the grant time, bar a few grants within one ms);
// the caller's floor (one above the highest fence that host has seen for the node)
// covers a Redis whose clock stepped back.

/** ARGV: host, lease_ms, floor. Reply: {1, host, fence} granted, or {0, holder, fence} held. */
export const ACQUIRE_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if not sep then return {0, cur, 0} end
  return {0, string.sub(cur, 1, sep - 1), tonumber(string.sub(cur, sep + 1)) or 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fence = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now, tonumber(ARGV[3]) or 0)
local f = string.format('%d', fence)
redis.call('SET', KEYS[2], f)
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. f, 'NX', 'PX', ARGV[2])
return {1, ARGV[1], fence}
`;

/**
 * Extends this host's grants, each only if it is still the node's lease (compare, then
 * PEXPIRE), many in one call. KEYS: the leases. ARGV: lease_ms, then each
 * lease's "host|fence". Reply: per lease 1 extended, 0 not ours.
 */
export const RENEW_MANY_LUA = `
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`;

/** Grants renewed per script call at most, so one call holds Redis only briefly. */
export const RENEW_BATCH_MAX = 256;

/** ARGV: "host|fence". Reply: 1 deleted, 0 not ours. */
export const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;

/** ARGV: "host|fence". Reply: ms the grant has left (> 0), or 0 when it is not ours. */
export const CHECK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return math.max(redis.call('PTTL', KEYS[1]), 1)
end
return 0
`;

/**
 * A guard for later scripts whose writes matter (resume points, track output): prepended
 * to a script whose KEYS[1] is the node's lease key and ARGV[1] the writer's "host|fence",
 * it aborts the script, writing nothing, unless that grant still holds.
 */
export const FENCE_GUARD_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
`;

/** The lease's value: the holder and its fence. Host ids never contain '|'. */
export function leaseValue(host: string, fence: number): string {
  return `${host}|${fence}`;
}
