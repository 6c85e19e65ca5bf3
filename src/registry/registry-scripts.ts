/**
 * The Lua scripts of the cluster registry. Each takes the key base (`<prefix>{<prefix>reg}:`) and
 * builds the names of per-instance keys from it; they all share the base's hash tag, so on Redis
 * Cluster every key a script touches is in the slot of the key it declares.
 *
 * Anything may sit in Redis (another version, a stray script): a member that is not an instance
 * id is left to the caller (it checks and removes them), a value of the wrong type is replaced,
 * a count that is not an integer is reset rather than failing the whole batch.
 */

/** Keys per instance id, relative to the base. */
export const INSTANCE_KEYS = ['hb:', 'ids:', 'n:', 'u:'] as const

// A field of a count hash moved by a delta; at 0 or below (or not a number) the field goes.
const ADJUST = `
local function adjust (key, field, d)
  local ok, v = pcall(redis.call, 'HINCRBY', key, field, d)
  if not ok then
    redis.call('HDEL', key, field)
    if d > 0 then redis.call('HSET', key, field, d) end
  elseif v <= 0 then
    redis.call('HDEL', key, field)
  end
end
local function fix (key, want)
  local t = redis.call('TYPE', key).ok
  if t ~= want and t ~= 'none' then redis.call('DEL', key) end
end
`

/**
 * One batch of opens and closes of this instance. KEYS: ids:<me>, n:<me>, u:<me>.
 * ARGV: nAdd, nRemove, ...added ids, ...removed ids, nCounts, ...(field, delta) of n:<me>, then
 * ...(user, delta) of u:<me> up to the end.
 */
export const APPLY = ADJUST + `
fix(KEYS[1], 'set'); fix(KEYS[2], 'hash'); fix(KEYS[3], 'hash')
local a, r = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 3
if a > 0 then redis.call('SADD', KEYS[1], unpack(ARGV, i, i + a - 1)) end
i = i + a
if r > 0 then redis.call('SREM', KEYS[1], unpack(ARGV, i, i + r - 1)) end
i = i + r
local nc = tonumber(ARGV[i]); i = i + 1
for _ = 1, nc do adjust(KEYS[2], ARGV[i], tonumber(ARGV[i + 1])); i = i + 2 end
while i < #ARGV do adjust(KEYS[3], ARGV[i], tonumber(ARGV[i + 1])); i = i + 2 end
return a + r`

/**
 * The live instances and one count of each. KEYS: instances. ARGV: base, hash ('n' or 'u'), field.
 * Returns a flat array: id, heartbeat age in ms (from the key's remaining TTL; ARGV[4] is the
 * TTL it is written with), count, for every member whose heartbeat key exists.
 */
export const COUNTS = `
local out = {}
local ttl = tonumber(ARGV[4])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local left = redis.call('PTTL', ARGV[1] .. 'hb:' .. id)
  if left > 0 then
    local ok, c = pcall(redis.call, 'HGET', ARGV[1] .. ARGV[2] .. ':' .. id, ARGV[3])
    if not ok or not c then c = '0' end
    out[#out + 1] = id
    out[#out + 1] = ttl - left
    out[#out + 1] = c
  end
end
return out`

/** Every live instance's count hash (total and per route). KEYS: instances. ARGV: base. Flat: id, [field, value, ...]. */
export const TOTALS = `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'hb:' .. id) == 1 then
    local ok, h = pcall(redis.call, 'HGETALL', ARGV[1] .. 'n:' .. id)
    out[#out + 1] = id
    out[#out + 1] = ok and h or {}
  end
end
return out`

/** The live instance whose id set holds a connection id, or false. KEYS: instances. ARGV: base, connection id. */
export const OWNER = `
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local ok, m = pcall(redis.call, 'SISMEMBER', ARGV[1] .. 'ids:' .. id, ARGV[2])
  if ok and m == 1 and redis.call('EXISTS', ARGV[1] .. 'hb:' .. id) == 1 then return id end
end
return false`

/** Members of the instances set whose heartbeat key is gone. KEYS: instances. ARGV: base. */
export const DEAD = `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'hb:' .. id) == 0 then out[#out + 1] = id end
end
return out`

/**
 * One step of reaping a dead instance. KEYS: instances. ARGV: base, dead id, batch size.
 * Gives back up to a batch of its concurrent-connection shares (conc:inst:<dead>, a hash key ->
 * count, subtracted from conc:<key>), removing each share as it goes, so that two survivors
 * reaping at once never subtract one twice. When no share is left it unlinks the instance's
 * registry keys (freed in the background, however many connections they held) and forgets it.
 * Returns -1 when the instance has a heartbeat again, 1 while shares are left, 0 when done.
 * A share that is not a positive integer is dropped without subtracting.
 */
export const REAP_STEP = `
local base, dead = ARGV[1], ARGV[2]
if redis.call('EXISTS', base .. 'hb:' .. dead) == 1 then return -1 end
local shares = base .. 'conc:inst:' .. dead
if redis.call('TYPE', shares).ok == 'hash' then
  local r = redis.call('HSCAN', shares, '0', 'COUNT', ARGV[3])
  local h = r[2]
  for i = 1, #h, 2 do
    local d = tonumber(h[i + 1])
    if d and d > 0 and d == math.floor(d) then
      local k = base .. 'conc:' .. h[i]
      local n = redis.pcall('DECRBY', k, d)
      if type(n) == 'number' and n <= 0 then redis.call('DEL', k) end
    end
    redis.call('HDEL', shares, h[i])
  end
  if redis.call('EXISTS', shares) == 1 then return 1 end
else
  redis.call('DEL', shares)
end
redis.call('UNLINK', base .. 'ids:' .. dead, base .. 'n:' .. dead, base .. 'u:' .. dead)
redis.call('SREM', KEYS[1], dead)
return 0`
