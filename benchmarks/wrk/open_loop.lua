-- wrk script: the same POST as force_resync.lua, offered OPEN-LOOP at a constant rate.
--   BENCH_RATE=1500 BENCH_AUTH="Basic ..." wrk -t1 -c256 -d10s -s benchmarks/wrk/open_loop.lua URL
--
-- wrk is closed-loop: a connection sends its next request as soon as the answer arrives. Here
-- every request has a due time on one global schedule (start + i / BENCH_RATE), as in wrk2: a
-- connection that becomes free claims the next slot and waits until it is due (wrk's delay()).
-- With enough connections the schedule never waits for an answer, so a stalled server is
-- charged for every request it should have answered meanwhile (no coordinated omission).
--
-- wrk times each request from its actual send. A send is late only when every connection was
-- busy or waiting (or wrk itself was starved of CPU); lateness is measured here and reported
-- ("late_*"), so a run where sends fell behind the schedule is visible, not hidden.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } erpsync_timespec;
int clock_gettime(int clk_id, erpsync_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("erpsync_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

wrk.method = "POST"
wrk.body = '{"ErpConnectionId":0,"InternalKeyIds":[1,2,3,4,5,6,7,8,9,10]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH") or "Basic dGplMDpUamUw"

local rate = tonumber(os.getenv("BENCH_RATE") or "")
if not rate or rate <= 0 then
  error("set BENCH_RATE to the offered rate in requests per second")
end
local interval_us = 1000000 / rate

-- Per wrk thread (run it with -t1: one schedule).
local start_us = nil
slots = 0           -- slots claimed (requests scheduled)
late = 0            -- sends more than 1 ms behind their due time
late_us = {}        -- lateness of each late send, for percentiles

delay = function()
  local now = now_us()
  if start_us == nil then
    start_us = now
  end
  local due = start_us + slots * interval_us
  slots = slots + 1
  local wait = due - now
  if wait < -1000 then
    late = late + 1
    late_us[late] = -wait
  end
  if wait <= 0 then
    return 0
  end
  return math.floor(wait / 1000) -- wrk's timers have millisecond resolution
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

local function percentile(sorted, q)
  if #sorted == 0 then
    return 0
  end
  local i = math.max(1, math.min(#sorted, math.floor(q / 100 * #sorted + 0.5)))
  return sorted[i]
end

done = function(summary, latency, requests)
  local claimed, late_total, lateness = 0, 0, {}
  for _, thread in ipairs(threads) do
    claimed = claimed + thread:get("slots")
    late_total = late_total + thread:get("late")
    for _, v in ipairs(thread:get("late_us")) do
      table.insert(lateness, v)
    end
  end
  table.sort(lateness)
  local e = summary.errors
  -- Lateness percentiles over every send: the late ones are the top of that distribution.
  local function late_pct(q)
    local rank = math.floor(q / 100 * claimed + 0.5)
    local on_time = claimed - #lateness
    if rank <= on_time then
      return 0
    end
    return lateness[math.min(#lateness, rank - on_time)]
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"mean_us":%.1f,"p50_us":%d,' ..
    '"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"offered_rate":%.1f,"scheduled":%d,' ..
    '"late_sends":%d,"late_p99_us":%d,"late_max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, rate, claimed, late_total, late_pct(99),
    lateness[#lateness] or 0))
end
