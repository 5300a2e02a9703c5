/**
 * The quota scripts. Each is a constant with its SHA-1 written out, run by EVALSHA and
 * loaded by EVAL only when Redis answers NOSCRIPT; a test recomputes the SHAs.
 *
 * Items are a store key and five fields: kind (b = token bucket, c = period counter, l = lease
 * set), limit, rate per ms, until, cost (or delta).
 * Time for buckets and leases is Redis's own clock, so instances with skewed clocks agree.
 *
 * BATCH takes what one connection gathered in a turn of the event loop: settlements, then
 * admissions. KEYS name the reset epoch (see below), then the batch's keys (consecutive requests
 * of one API key share their entries; a key may still appear more than once, which the script
 * does not mind), and ARGV[1] is ONE
 * MessagePack array (pack.ts; read by Redis' bundled cmsgpack): the number of settlements, the
 * number of admissions, the admissions' deadline, then per request n (its item count), its lease id
 * ('' when it has no lease items), the caller's clock and six fields per item: kind, the index of its
 * key in KEYS, limit, rate, until, cost (or delta). In a settlement a counter, which has no use for
 * limit and rate there, carries instead the charge part of its delta (what it used beyond its
 * reservation, 0 for a refund) and the reset epoch of its admission (see below).
 * One argument instead of ~6 per item: every argument costs the client and Redis (a Lua string
 * each); cmsgpack hands numbers over as numbers, and reads binary doubles three times faster than
 * cjson parses text.
 * The deadline is in Redis' time (ms; -1: none): the sender gives up on the call at about that
 * moment (see RedisStore), so admissions the script reaches after it take nothing and answer -3.
 * A hung Redis that wakes up would otherwise take the reservations of requests already refused
 * (or admitted in process when failing open), which nobody would ever settle. Settlements still
 * run late: what a request used is real whenever it arrives.
 * One call for both kinds: the per-call work (the script call, TIME, one MGET, one SET per
 * changed key) is shared by the requests that end and those that begin, and a key both touch is
 * read and written once. Requests run in order, each exactly as if it were its own script (a
 * later one sees what an earlier one took). A request with leases runs under pcall (only lease
 * commands can fail, on a key of another type): an admission that fails answers -2 and its
 * message, a settlement 0, and the others go on.
 *
 * PEEK takes one request in plain ARGV fields: kind, limit, rate, cost (unused), until.
 *
 * They are written for Redis' single thread, where each redis.call and each Lua number
 * formatting costs whole µs (measured in benchmarks/micro/admission.ts):
 * - one MGET per batch reads every bucket and counter of all its requests (a lease set is no
 *   string: MGET reads it as nil); requests then read and update a table in Lua, and each key
 *   a batch changed is written once at the end, so a team budget that many requests of one
 *   batch share costs one SET, not one per request;
 * - a bucket is the ms at which it will be full again ("full") and the rate it was written with:
 *   it holds limit − max(0, full − now) × that rate tokens, less than zero when a settlement
 *   charged more than it held, so a changed limit keeps the tokens missing, not the time to
 *   refill them (raised from 1 to 1000 a minute after one request, a bucket holds 999, not 0).
 *   An admission that finds a bucket written at another rate writes it again at its own, refused
 *   or not: what it misses then comes back at the new rate (a lowered limit's debt is not forgiven
 *   at the old one, well before the Retry-After it was told).
 *   Taking c tokens sets full = now + (limit − left) / rate, at the current rate. One SET with PX
 *   writes it (a missing key is a full bucket, so it may expire any time after it is full), as
 *   full in whole ms in decimal, a NUL, then full and the rate as two little-endian doubles (one
 *   struct.pack). Lua 5.1's tonumber reads a string up to its first NUL: the version before this
 *   one reads the whole ms from it as from its own plain number (a bucket less than a ms fuller),
 *   and a plain number that version wrote has no rate here, and is read at the current one, as it
 *   always was. Measured (Redis' script time per admission of three buckets and a budget, 1,000
 *   API keys, 50 in flight, best of six runs): a sidecar key for the rate (a KEYS entry and an
 *   MGET slot each) took 18.6 µs where a plain number took 14.1; the rate packed after full in
 *   %.17g, 17.3 (Lua's formatting of a float); in whole ms (%d, an integer's), 14.4;
 * - a counter (the integer used so far) is one SET with PXAT. A reset takes a new epoch from a
 *   sequence, KEYS[1] (one per hash tag), and marks each counter it zeroes with it in a sidecar,
 *   `<key>:reset`. Admissions answer the epoch they ran in (one read of KEYS[1] per batch), and
 *   a settlement hands its admission's back: only when the sequence has moved since (a reset,
 *   of anything, while the request ran) is the counter's mark read, and where it is newer, only
 *   the charge part reaches the fresh count; the refund would take back what it never held. An
 *   older version neither reads nor writes either: during a rolling deploy its settlements refund
 *   into a reset count as they always did;
 * - numbers are handed to redis.call as Lua numbers, which Redis formats in C at full
 *   precision (%.17g), never through string.format or tostring in Lua (a bucket packs its own);
 * - replies are integers (Redis would truncate a Lua float): per admission its status, the item
 *   that refused, the wait in ms (-1 meaning never) and what is left of each item in thousandths
 *   (floored); then the reset epoch the admissions ran in, and Redis' clock when the script
 *   began, from which the sender learns how Redis' clock stands to its own.
 */

/** Redis' own clock in ms: buckets and leases of every instance agree on it. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * BATCH begins with one MGET of the batch's keys (distinct already) into `val` (a missing or
 * non-numeric value reads as 0; a bucket's exact full where its value has one) and `rates` (a
 * bucket's rate, where its value has one); one MGET per 4,000 keys, as Lua cannot unpack more than
 * about 8,000 values at once (a call of many summed settlements can carry 16,384 keys). `todo`
 * and `order` collect the keys a request changed.
 */
const BATCH_READ = `local val, rates, todo, order = {}, {}, {}, {}
local nk = #KEYS
local byte, spack, sunpack = string.byte, struct.pack, struct.unpack
for from = 1, nk, 4000 do
  local to = math.min(nk, from + 3999)
  local got = redis.call('MGET', unpack(KEYS, from, to))
  for i = from, to do
    local v = got[i - from + 1]
    if v then
      local n = #v
      if n > 16 and byte(v, n - 16) == 0 then
        val[KEYS[i]], rates[KEYS[i]] = sunpack('<dd', v, n - 15)
      else
        val[KEYS[i]] = tonumber(v) or 0
      end
    else
      val[KEYS[i]] = 0
    end
  end
end`

/**
 * ...and ends with each changed key written once. todo[key] is 'b' for a bucket (with its rate),
 * or a counter's period end (a counter is kept a day past it; -1: no end). A bucket is kept two
 * minutes past its last write, a constant string (a per-key TTL is one more number for Redis to
 * format, about a tenth of an admission), unless it is further than that from full: in debt
 * after a settlement.
 */
const BATCH_WRITE = `local format = string.format
for i = 1, #order do
  local key = order[i]
  local w = todo[key]
  if w == 'b' then
    local ms = val[key] - now
    -- 's' is a string and its NUL: one call builds the value.
    local v = spack('<sdd', format('%d', val[key]), val[key], rates[key])
    if ms < 119000 then
      redis.call('SET', key, v, 'PX', '120000')
    else
      redis.call('SET', key, v, 'PX', math.ceil(ms) + 1000)
    end
  elseif w >= 0 then
    redis.call('SET', key, val[key], 'PXAT', w + 86400000)
  else
    redis.call('SET', key, val[key])
  end
end`

export const BATCH_SCRIPT = `local KEYS, A, floor, ceil = KEYS, cmsgpack.unpack(ARGV[1]), math.floor, math.ceil
${NOW}
${BATCH_READ}
local out = {}
local o = 0
local a0 = 3
local late = A[3] >= 0 and now > A[3]
-- The last reset epoch taken (KEYS[1]; no keys: a call that only tells the time).
local epoch = nk > 0 and val[KEYS[1]] or 0
-- Shared by the admissions (each writes 1..n before it reads them): no tables per request.
local avail, after = {}, {}
-- What the bucket at key holds now: the tokens missing are counted at the rate it was written
-- with (none: the current one), so a changed limit keeps them, not the time to refill them.
local function held(key, limit, r)
  local full = val[key]
  if full <= now then return limit end
  return limit - (full - now) * (rates[key] or r)
end
-- The bucket at key now holds left at rate r: it is full again at the time this sets.
local function refill(key, limit, r, left)
  val[key] = now + (limit - left) / r
  rates[key] = r
  if not todo[key] then
    todo[key] = 'b'
    order[#order + 1] = key
  end
end
local function settle(n, lease)
  if lease ~= '' then
    for i = 1, n do
      local b = a0 + 3 + (i - 1) * 6
      if A[b + 1] == 'l' then redis.call('ZREM', KEYS[A[b + 2]], lease) end
    end
  end
  for i = 1, n do
    local b = a0 + 3 + (i - 1) * 6
    local kind = A[b + 1]
    local delta = A[b + 6]
    if kind == 'b' and delta ~= 0 then
      local key, limit, rate = KEYS[A[b + 2]], A[b + 3], A[b + 4]
      refill(key, limit, rate, math.min(limit, held(key, limit, rate) - delta))
    elseif kind == 'c' and delta ~= 0 then
      local key = KEYS[A[b + 2]]
      local since = A[b + 4]
      -- Reset since its admission: only the charge part counts against the fresh count.
      if epoch > since and (tonumber(redis.call('GET', key .. ':reset') or '0') or 0) > since then delta = A[b + 3] end
      if delta ~= 0 then
        val[key] = math.max(0, val[key] + delta)
        if not todo[key] then
          todo[key] = A[b + 5]
          order[#order + 1] = key
        end
      end
    end
  end
end
local function admit(n, lease, clientNow)
  local failed = 0
  local wait = 0
  -- Of the items without room, the one with the longest wait is told (-1, never, above all; a
  -- full lease set only where nothing else refuses): the request passes once all have room.
  local rank = -2
  local b = a0 + 3
  for i = 1, n do
    local kind = A[b + 1]
    local key = KEYS[A[b + 2]]
    local limit = A[b + 3]
    local cost = A[b + 6]
    local a
    if kind == 'b' then
      local rate = A[b + 4]
      a = held(key, limit, rate)
      -- Written at another rate (its limit changed): what it misses comes back at this one from
      -- now on, refused or not (a refusal writes nothing else, and the old rate would forgive it).
      local was = rates[key]
      if was and was ~= rate and val[key] > now then refill(key, limit, rate, a) end
      if cost > a then
        local w, r = -1, math.huge
        if cost <= limit then w = ceil((cost - a) / rate); r = w end
        if r > rank then failed = i; wait = w; rank = r end
      end
    elseif kind == 'c' then
      local used = val[key]
      a = limit - used
      if used + cost > limit or used >= limit then
        local untl = A[b + 5]
        local w, r = -1, math.huge
        if cost <= limit and untl >= 0 then w = math.max(0, untl - clientNow); r = w end
        if r > rank then failed = i; wait = w; rank = r end
      end
      after[i] = used + cost
    else
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local held = redis.call('ZCARD', key)
      a = limit - held
      if rank < -1 and held >= limit then
        failed = i
        rank = -1
        local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if first[2] then wait = math.max(0, tonumber(first[2]) - now) else wait = -1 end
      end
    end
    avail[i] = a
    b = b + 6
  end
  if failed > 0 then
    out[o + 1] = 0
    out[o + 2] = failed - 1
    out[o + 3] = wait
    for i = 1, n do out[o + 3 + i] = floor(avail[i] * 1000) end
    return
  end
  if lease ~= '' then
    b = a0 + 3
    for i = 1, n do
      if A[b + 1] == 'l' then
        local key = KEYS[A[b + 2]]
        local untl = A[b + 5]
        redis.call('ZADD', key, now + untl, lease)
        redis.call('PEXPIRE', key, untl + 1000)
      end
      b = b + 6
    end
  end
  b = a0 + 3
  for i = 1, n do
    local kind = A[b + 1]
    if kind == 'b' then
      refill(KEYS[A[b + 2]], A[b + 3], A[b + 4], avail[i] - A[b + 6])
    elseif kind == 'c' then
      local key = KEYS[A[b + 2]]
      val[key] = after[i]
      if not todo[key] then
        todo[key] = A[b + 5]
        order[#order + 1] = key
      end
    end
    out[o + 3 + i] = floor((avail[i] - A[b + 6]) * 1000)
    b = b + 6
  end
  out[o + 1] = 1
  out[o + 2] = -1
  out[o + 3] = 0
end
-- Only lease commands can fail (a key of another type); a request without leases needs no pcall.
for r = 1, A[1] do
  local n = A[a0 + 1]
  local lease = A[a0 + 2]
  if lease == '' then
    settle(n, lease)
    out[o + 1] = 1
  elseif pcall(settle, n, lease) then out[o + 1] = 1 else out[o + 1] = 0 end
  o = o + 1
  a0 = a0 + 3 + n * 6
end
for r = 1, A[2] do
  local n = A[a0 + 1]
  local lease = A[a0 + 2]
  local ok, err = true, nil
  if late then
    for i = 1, n + 3 do out[o + i] = 0 end
    out[o + 1] = -3
  elseif lease == '' then admit(n, lease, A[a0 + 3]) else ok, err = pcall(admit, n, lease, A[a0 + 3]) end
  if not ok then
    for i = 1, n + 3 do out[o + i] = 0 end
    out[o + 1] = -2
    out[o + 2] = type(err) == 'table' and (err.err or 'script error') or tostring(err)
  end
  o = o + 3 + n
  a0 = a0 + 3 + n * 6
end
${BATCH_WRITE}
out[o + 1] = epoch
out[o + 2] = now
return out`

export const BATCH_SHA = 'd974c1091650bcda482f26cd586468df593f6cba'

export const PEEK_SCRIPT = `${NOW}
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
    local v = vals[i] or '0'
    local full = tonumber(v) or 0
    a = limit
    if full > now then
      -- Counted at the rate it was written with, after a NUL at its end with the exact full (see BATCH).
      local was = rate
      if #v > 16 and string.byte(v, #v - 16) == 0 then full, was = struct.unpack('<dd', v, #v - 15) end
      a = limit - (full - now) * was
    end
  elseif kind == 'c' then
    a = limit - (tonumber(vals[i] or '0') or 0)
  else
    a = limit - redis.call('ZCOUNT', KEYS[i], now, '+inf')
  end
  out[i] = math.floor(a * 1000)
end
return out`

export const PEEK_SHA = '802ed8eb8215470b5a052f2f64bdb1522156107f'

/**
 * RENEW pushes back the expiry of leases still held: KEYS are lease sets, ARGV pairs of the lease
 * id and its `until` (ms), one pair a key. Only a lease the set still holds unexpired is renewed:
 * one a settlement removed, or that expired (its slot may be another request's by now), stays
 * gone. The set lives past its latest lease, as when the lease was taken. Answers how many were
 * renewed.
 */
export const RENEW_SCRIPT = `${NOW}
local renewed = 0
for i = 1, #KEYS do
  local untl = tonumber(ARGV[2 * i])
  local held = tonumber(redis.call('ZSCORE', KEYS[i], ARGV[2 * i - 1]) or '0') or 0
  if held > now then
    redis.call('ZADD', KEYS[i], 'XX', now + untl, ARGV[2 * i - 1])
    redis.call('PEXPIRE', KEYS[i], untl + 1000)
    renewed = renewed + 1
  end
end
return renewed`

export const RENEW_SHA = 'e3246236af3997e7fa91bbfa7a104e0bfe951ee2'

/**
 * RESET is an operator's reset of one subject's items: KEYS[1] is the sequence reset epochs come
 * from (one key per hash tag), then the keys to reset, each with its ARGV: -2 deletes it (a bucket,
 * a counter, a lease set), anything else marks it with the new epoch (a counter's reset mark),
 * kept until that ms (PXAT) or, at -1, for good (a total budget's).
 * Answers the new epoch.
 */
export const RESET_SCRIPT = `local epoch = redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
  local w = tonumber(ARGV[i - 1])
  if w == -2 then
    redis.call('DEL', KEYS[i])
  elseif w < 0 then
    redis.call('SET', KEYS[i], epoch)
  else
    redis.call('SET', KEYS[i], epoch, 'PXAT', w)
  end
end
return epoch`

export const RESET_SHA = 'd82656b0bee3ce7c668725886a64173851d03bd2'
