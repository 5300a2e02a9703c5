/**
 * The quota scripts. Each is a constant with its SHA-1 written out, run by EVALSHA and
 * loaded by EVAL only when Redis answers NOSCRIPT; a test recomputes the SHAs.
 *
 * Items are passed as KEYS[i] plus five ARGV fields each: kind (b = token bucket,
 * c = period counter, l = lease set), limit, rate per ms, cost (or delta), until.
 * Time for buckets and leases is Redis's own clock, so instances with skewed clocks agree.
 * Numbers go back as strings: Redis would truncate Lua floats to integers.
 */

export const ADMIT_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local lease = ARGV[2]
local clientNow = tonumber(ARGV[3])
local avail = {}
local failed = 0
local wait = '0'
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local rate = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local untl = tonumber(ARGV[b + 5])
  if kind == 'b' then
    local s = redis.call('HMGET', KEYS[i], 't', 'ts')
    local a = limit
    if s[1] then a = math.min(limit, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate) end
    avail[i] = a
    if failed == 0 and cost > a then
      failed = i
      if cost > limit then wait = 'never' else wait = tostring(math.ceil((cost - a) / rate)) end
    end
  elseif kind == 'c' then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    avail[i] = limit - used
    if failed == 0 and (used + cost > limit or used >= limit) then
      failed = i
      if cost > limit or untl < 0 then wait = 'never' else wait = tostring(math.max(0, untl - clientNow)) end
    end
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local held = redis.call('ZCARD', KEYS[i])
    avail[i] = limit - held
    if failed == 0 and held >= limit then
      failed = i
      local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
      if first[2] then wait = tostring(math.max(0, tonumber(first[2]) - now)) else wait = 'never' end
    end
  end
end
local out = {}
if failed > 0 then
  out[1] = 0
  out[2] = failed - 1
  out[3] = wait
  for i = 1, n do out[3 + i] = tostring(avail[i]) end
  return out
end
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local rate = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local untl = tonumber(ARGV[b + 5])
  local left = avail[i] - cost
  if kind == 'b' then
    redis.call('HSET', KEYS[i], 't', tostring(left), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((limit - left) / rate) + 1000)
  elseif kind == 'c' then
    redis.call('INCRBY', KEYS[i], cost)
    if untl >= 0 then redis.call('PEXPIREAT', KEYS[i], untl + 86400000) end
  else
    redis.call('ZADD', KEYS[i], now + untl, lease)
    redis.call('PEXPIRE', KEYS[i], untl + 1000)
  end
  avail[i] = left
end
out[1] = 1
out[2] = -1
out[3] = '0'
for i = 1, n do out[3 + i] = tostring(avail[i]) end
return out`

export const ADMIT_SHA = 'e7636ffe17796be4abbac9f00c39f5b413c5fa28'

export const SETTLE_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local lease = ARGV[2]
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local rate = tonumber(ARGV[b + 3])
  local delta = tonumber(ARGV[b + 4])
  local untl = tonumber(ARGV[b + 5])
  if kind == 'l' then
    redis.call('ZREM', KEYS[i], lease)
  elseif delta ~= 0 and kind == 'b' then
    local s = redis.call('HMGET', KEYS[i], 't', 'ts')
    local a = limit
    if s[1] then a = math.min(limit, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate) end
    local left = math.min(limit, a - delta)
    redis.call('HSET', KEYS[i], 't', tostring(left), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((limit - left) / rate) + 1000)
  elseif delta ~= 0 then
    local v = redis.call('INCRBY', KEYS[i], delta)
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
    if untl >= 0 and redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIREAT', KEYS[i], untl + 86400000) end
  end
end
return 1`

export const SETTLE_SHA = '4d49717a49802ff56cc5df4b68ba48d4e98b8aa1'

export const PEEK_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local rate = tonumber(ARGV[b + 3])
  if kind == 'b' then
    local s = redis.call('HMGET', KEYS[i], 't', 'ts')
    local a = limit
    if s[1] then a = math.min(limit, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate) end
    out[i] = tostring(a)
  elseif kind == 'c' then
    out[i] = tostring(limit - tonumber(redis.call('GET', KEYS[i]) or '0'))
  else
    out[i] = tostring(limit - redis.call('ZCOUNT', KEYS[i], now, '+inf'))
  end
end
return out`

export const PEEK_SHA = 'b76c01ad07ee3da447081bd874ba3d8d90511c4e'
