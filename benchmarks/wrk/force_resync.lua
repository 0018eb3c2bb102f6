-- wrk script: POST ForceResyncBatchTask with 10 internal keys and Basic auth.
--   BENCH_AUTH="Basic ..." wrk -t1 -c64 -d10s -s benchmarks/wrk/force_resync.lua \
--     http://127.0.0.1:8080/api/v1/Agents/ErpSync/ForceResyncBatchTask
-- At the end it prints one line "BENCH_JSON {...}" that the benchmark scripts parse.
wrk.method = "POST"
wrk.body = '{"ErpConnectionId":0,"InternalKeyIds":[1,2,3,4,5,6,7,8,9,10]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH") or "Basic dGplMDpUamUw"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"mean_us":%.1f,"p50_us":%d,' ..
    '"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
