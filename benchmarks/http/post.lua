-- wrk script for the HTTP benchmarks: POSTs one fixed JSON body and, when done, prints a
-- machine-readable summary line (WRK_JSON ...) so the runner never scrapes wrk's text table.
-- Usage: wrk ... -s post.lua <url> -- <body-file>

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open body file " .. tostring(args[1]))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
