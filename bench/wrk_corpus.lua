-- wrk script for bench/http.py: POST each event of a pre-generated corpus once.
--
-- The corpus (KLAREFI_WRK_CORPUS) has one event per line: "<signature header>\t<body>".
-- wrk thread k of n (KLAREFI_WRK_THREADS) sends lines k, k+n, k+2n, ... in order, so no
-- two requests carry the same event. A thread that runs out of lines repeats its last one
-- (counted as "exhausted": the harness then rejects the window) unless KLAREFI_WRK_WRAP=1
-- (redeliveries), which starts over. Status codes are counted per thread, and done()
-- prints one line "KLAREFI_WRK {json}" for the harness.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local corpus = os.getenv("KLAREFI_WRK_CORPUS")
  local stride = tonumber(os.getenv("KLAREFI_WRK_THREADS"))
  wrap = os.getenv("KLAREFI_WRK_WRAP") == "1"
  prepared = {}
  local line_number = 0
  for line in io.lines(corpus) do
    if line_number % stride == id then
      local tab = line:find("\t", 1, true)
      prepared[#prepared + 1] = wrk.format("POST", wrk.path, {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "Klarefi-Webhooks/1.0",
        ["X-Klarefi-Signature"] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
    line_number = line_number + 1
  end
  position = 0
  exhausted = 0
  statuses = {}
end

function request()
  position = position + 1
  if position > #prepared then
    if wrap then
      position = 1
    else
      exhausted = exhausted + 1
      position = #prepared
    end
  end
  return prepared[position]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  local exhausted_total = 0
  for _, thread in ipairs(threads) do
    local thread_statuses = thread:get("statuses")
    for status, count in pairs(thread_statuses) do
      counts[status] = (counts[status] or 0) + count
    end
    exhausted_total = exhausted_total + thread:get("exhausted")
  end
  local parts = {}
  for status, count in pairs(counts) do
    parts[#parts + 1] = string.format('"%s": %d', status, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'KLAREFI_WRK {"requests": %d, "duration_us": %d, "statuses": {%s}, "exhausted": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, table.concat(parts, ", "), exhausted_total,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
