/**
 * The quota scripts. Each is a constant with its SHA-1 written out, run by EVALSHA and
 * loaded by EVAL only when Redis answers NOSCRIPT; a test recomputes the SHAs.
 *
 * Items are passed as KEYS[i] plus five ARGV fields each: kind (b = token bucket,
 * c = period counter, l = lease set), limit, rate per ms, cost (or delta), until.
 * Time for buckets and leases is Redis's own clock, so instances with skewed clocks agree.
 *
 * ADMIT and SETTLE take a batch: ARGV[1] is the number of requests, then per request n (its
 * item count), its lease id, the caller's clock and five fields per item; KEYS are the requests'
 * keys one after the other. Requests run in order, each exactly as if it were its own script
 * (a later one sees what an earlier one took). Each runs under pcall: one that fails (a key of
 * the wrong type) answers -2 and its message, and the others go on.
 *
 * They are written for Redis' single thread, where each redis.call and each Lua number
 * formatting costs whole µs (measured in benchmarks/micro/admission.ts):
 * - one MGET reads every bucket and counter (a lease set is no string: MGET reads it as nil);
 * - a bucket is ONE number, the ms at which it will be full again ("full"): it holds
 *   limit − max(0, full − now) × rate tokens, less than zero when a settlement charged more
 *   than it held. Taking c tokens sets full = now + (limit − left) / rate. One SET with PX
 *   writes it; a counter (the integer used so far) is one SET with PXAT;
 * - numbers are handed to redis.call as Lua numbers, which Redis formats in C at full
 *   precision (%.17g), never through string.format or tostring in Lua;
 * - replies are integers (Redis would truncate a Lua float): what is left, in thousandths
 *   (floored), and the wait in ms, -1 meaning never.
 */

export const ADMIT_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local o = 0
local k0 = 0
local a0 = 1
local function admit(n, lease, clientNow)
  local keys = {}
  for i = 1, n do keys[i] = KEYS[k0 + i] end
  local vals = redis.call('MGET', unpack(keys))
  local avail = {}
  local failed = 0
  local wait = 0
  for i = 1, n do
    local b = a0 + 3 + (i - 1) * 5
    local kind = ARGV[b + 1]
    local limit = tonumber(ARGV[b + 2])
    local rate = tonumber(ARGV[b + 3])
    local cost = tonumber(ARGV[b + 4])
    local untl = tonumber(ARGV[b + 5])
    if kind == 'b' then
      local full = tonumber(vals[i] or '0') or 0
      local a = limit
      if full > now then a = limit - (full - now) * rate end
      avail[i] = a
      if failed == 0 and cost > a then
        failed = i
        if cost > limit then wait = -1 else wait = math.ceil((cost - a) / rate) end
      end
    elseif kind == 'c' then
      local used = tonumber(vals[i] or '0') or 0
      avail[i] = limit - used
      if failed == 0 and (used + cost > limit or used >= limit) then
        failed = i
        if cost > limit or untl < 0 then wait = -1 else wait = math.max(0, untl - clientNow) end
      end
    else
      redis.call('ZREMRANGEBYSCORE', keys[i], '-inf', now)
      local held = redis.call('ZCARD', keys[i])
      avail[i] = limit - held
      if failed == 0 and held >= limit then
        failed = i
        local first = redis.call('ZRANGE', keys[i], 0, 0, 'WITHSCORES')
        if first[2] then wait = math.max(0, tonumber(first[2]) - now) else wait = -1 end
      end
    end
  end
  if failed > 0 then
    out[o + 1] = 0
    out[o + 2] = failed - 1
    out[o + 3] = wait
    for i = 1, n do out[o + 3 + i] = math.floor(avail[i] * 1000) end
    return
  end
  for i = 1, n do
    local b = a0 + 3 + (i - 1) * 5
    local kind = ARGV[b + 1]
    local limit = tonumber(ARGV[b + 2])
    local rate = tonumber(ARGV[b + 3])
    local cost = tonumber(ARGV[b + 4])
    local untl = tonumber(ARGV[b + 5])
    local left = avail[i] - cost
    if kind == 'b' then
      local ms = (limit - left) / rate
      redis.call('SET', keys[i], now + ms, 'PX', math.ceil(ms) + 1000)
    elseif kind == 'c' then
      if untl >= 0 then redis.call('SET', keys[i], limit - left, 'PXAT', untl + 86400000) else redis.call('SET', keys[i], limit - left) end
    else
      redis.call('ZADD', keys[i], now + untl, lease)
      redis.call('PEXPIRE', keys[i], untl + 1000)
    end
    out[o + 3 + i] = math.floor(left * 1000)
  end
  out[o + 1] = 1
  out[o + 2] = -1
  out[o + 3] = 0
end
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a0 + 1])
  local ok, err = pcall(admit, n, ARGV[a0 + 2], tonumber(ARGV[a0 + 3]))
  if not ok then
    for i = 1, n + 3 do out[o + i] = 0 end
    out[o + 1] = -2
    out[o + 2] = type(err) == 'table' and (err.err or 'script error') or tostring(err)
  end
  o = o + 3 + n
  k0 = k0 + n
  a0 = a0 + 3 + n * 5
end
return out`

export const ADMIT_SHA = '5542a6230ec7fbe4e3a3ddb02be2dcde45179241'

export const SETTLE_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k0 = 0
local a0 = 1
local function settle(n, lease)
  local keys = {}
  for i = 1, n do keys[i] = KEYS[k0 + i] end
  local vals = redis.call('MGET', unpack(keys))
  for i = 1, n do
    local b = a0 + 3 + (i - 1) * 5
    local kind = ARGV[b + 1]
    local limit = tonumber(ARGV[b + 2])
    local rate = tonumber(ARGV[b + 3])
    local delta = tonumber(ARGV[b + 4])
    local untl = tonumber(ARGV[b + 5])
    if kind == 'l' then
      redis.call('ZREM', keys[i], lease)
    elseif delta ~= 0 and kind == 'b' then
      local full = tonumber(vals[i] or '0') or 0
      local a = limit
      if full > now then a = limit - (full - now) * rate end
      local ms = (limit - math.min(limit, a - delta)) / rate
      redis.call('SET', keys[i], now + ms, 'PX', math.ceil(ms) + 1000)
    elseif delta ~= 0 then
      local used = math.max(0, (tonumber(vals[i] or '0') or 0) + delta)
      if untl >= 0 then redis.call('SET', keys[i], used, 'PXAT', untl + 86400000) else redis.call('SET', keys[i], used) end
    end
  end
end
local out = {}
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a0 + 1])
  if pcall(settle, n, ARGV[a0 + 2]) then out[r] = 1 else out[r] = 0 end
  k0 = k0 + n
  a0 = a0 + 3 + n * 5
end
return out`

export const SETTLE_SHA = '6a14326ed81519dca518b0306502431cc49ee1f0'

export const PEEK_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local vals = redis.call('MGET', unpack(KEYS))
local out = {}
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local rate = tonumber(ARGV[b + 3])
  local a
  if kind == 'b' then
    local full = tonumber(vals[i] or '0') or 0
    a = limit
    if full > now then a = limit - (full - now) * rate end
  elseif kind == 'c' then
    a = limit - (tonumber(vals[i] or '0') or 0)
  else
    a = limit - redis.call('ZCOUNT', KEYS[i], now, '+inf')
  end
  out[i] = math.floor(a * 1000)
end
return out`

export const PEEK_SHA = 'b17a8a6548b2bd206146d326d69f9956465f2a60'
