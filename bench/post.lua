-- wrk script: POST one small chat completion per request, with the relay key
-- (BENCH_KEY) and model (BENCH_MODEL) from the environment; at the end print
-- one JSON line with the counts and latency percentiles (microseconds).
local key = os.getenv("BENCH_KEY") or ""
local model = os.getenv("BENCH_MODEL") or "bench-instant"

wrk.method = "POST"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are terse."},'
  .. '{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32}'
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,'
    .. '"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,'
    .. '"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
