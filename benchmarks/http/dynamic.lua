-- wrk script for the suite's scenarios that post.lua cannot express. Options, after `--`:
--   <body-file>                 the JSON body to POST (required, first)
--   keys <file>                 one API key per line; request i sends key i mod n (each thread starts elsewhere)
--   large <file> <every>        every <every>-th request of a thread sends this body instead (e.g. 10 = 10 %)
--   expect <status>             count answers with this status ("matched") and any other ("other")
-- Prints WRK_JSON like post.lua, plus "expected":{"status","matched","other"} when `expect` is set.
-- Only what is asked for is turned on: without keys or large the request is static (as post.lua),
-- and without expect wrk does not parse answers for a Lua callback.

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local function slurp(path)
  local file = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local data = file:read("*a")
  file:close()
  return data
end

local small, large, every, keys
-- Globals: done() runs in the main Lua state and reads them from the threads.
expect_status = nil
local counter = 0
matched = 0
other = 0

function init(args)
  small = slurp(args[1])
  local i = 2
  while i <= #args do
    local opt = args[i]
    if opt == "keys" then
      keys = {}
      for line in io.lines(args[i + 1]) do
        if line ~= "" then table.insert(keys, line) end
      end
      assert(#keys > 0, "keys file is empty")
      i = i + 2
    elseif opt == "large" then
      large = slurp(args[i + 1])
      every = tonumber(args[i + 2])
      i = i + 3
    elseif opt == "expect" then
      expect_status = tonumber(args[i + 1])
      i = i + 2
    else
      error("dynamic.lua: unknown option " .. tostring(opt))
    end
  end
  wrk.method = "POST"
  wrk.body = small
  wrk.headers["Content-Type"] = "application/json"
  -- Threads start at different keys so they do not send the same key at the same moment.
  counter = ((tid or 1) - 1) * 7919
  if keys == nil and large == nil then request = nil end
  if expect_status == nil then response = nil end
end

function request()
  counter = counter + 1
  local body = small
  if large ~= nil and counter % every == 0 then body = large end
  if keys ~= nil then wrk.headers["Authorization"] = "Bearer " .. keys[counter % #keys + 1] end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == expect_status then matched = matched + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local e = summary.errors
  local expected = ""
  local status = threads[1] and threads[1]:get("expect_status")
  if status ~= nil then
    local m, o = 0, 0
    for _, thread in ipairs(threads) do
      m = m + (thread:get("matched") or 0)
      o = o + (thread:get("other") or 0)
    end
    expected = string.format(',"expected":{"status":%d,"matched":%d,"other":%d}', status, m, o)
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean, expected))
end
