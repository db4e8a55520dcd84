-- wrk script for benchmarks/ingest.py: POSTs one signed GitHub `issues` delivery over and
-- over, each with its own X-GitHub-Delivery (the app drops repeated delivery ids), counts
-- the status codes it gets back and prints one machine-readable summary line at the end.
--
-- wrk -t2 -c64 -d10s -s benchmarks/webhook.lua http://127.0.0.1:PORT/api/github/webhooks \
--     -- BODY_FILE "sha256=<hex hmac of the body>" RUN_NONCE(8 hex digits)

local threads = {}
local thread_count = 0

-- Runs in the main Lua state, once per wrk thread, before the threads start.
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

-- Everything below up to done() runs in each thread's own Lua state.
local prefix, suffix, nonce
local counter = 0
statuses = {}

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local signature = args[2]
  nonce = args[3]
  -- The request is built once; only the delivery id changes per request.
  prefix = "POST " .. wrk.path .. " HTTP/1.1\r\n"
    .. "Host: " .. wrk.headers["Host"] .. "\r\n"
    .. "User-Agent: GitHub-Hookshot/benchmark\r\n"
    .. "Content-Type: application/json\r\n"
    .. "X-GitHub-Event: issues\r\n"
    .. "X-GitHub-Hook-ID: 1\r\n"
    .. "X-GitHub-Hook-Installation-Target-Type: integration\r\n"
    .. "X-GitHub-Hook-Installation-Target-ID: 1\r\n"
    .. "X-Hub-Signature-256: " .. signature .. "\r\n"
    .. "Content-Length: " .. #body .. "\r\n"
    .. "X-GitHub-Delivery: "
  suffix = "\r\n\r\n" .. body
end

function request()
  counter = counter + 1
  -- uuid-shaped: run nonce, wrk thread id, per-thread counter -> unique within and across runs
  return prefix .. string.format("%s-%04x-4000-8000-%012x", nonce, tid, counter) .. suffix
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Back in the main Lua state.
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for code, n in pairs(s) do
        merged[code] = (merged[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,'
      .. '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f,'
      .. '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},'
      .. '"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
