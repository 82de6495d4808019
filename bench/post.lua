-- wrk script: POST one small chat request per request, with the relay key
-- (BENCH_KEY) and model (BENCH_MODEL) from the environment; at the end print
-- one JSON line with the counts and latency percentiles (microseconds).
-- BENCH_FORMAT: "openai" (chat completions, Bearer; the default) or
-- "anthropic" (Messages API, x-api-key). BENCH_PROMPT_BYTES: pad the user
-- message with English text to that many bytes (0: the short default).
local key = os.getenv("BENCH_KEY") or ""
local model = os.getenv("BENCH_MODEL") or "bench-instant"
local format = os.getenv("BENCH_FORMAT") or "openai"
local size = tonumber(os.getenv("BENCH_PROMPT_BYTES") or "0")

local text = "Say hello in one short sentence."
if size > 0 then
  local words = "The quick brown fox jumps over the lazy dog while the keeper writes the weather into his log. "
  local parts = {}
  local total = 0
  while total < size do
    table.insert(parts, words)
    total = total + #words
  end
  text = string.sub(table.concat(parts), 1, size)
end

wrk.method = "POST"
if format == "anthropic" then
  wrk.body = '{"model":"' .. model .. '","max_tokens":32,"system":"You are terse.",'
    .. '"messages":[{"role":"user","content":"' .. text .. '"}]}'
  wrk.headers["anthropic-version"] = "2023-06-01"
  if key ~= "" then
    wrk.headers["x-api-key"] = key
  end
else
  wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are terse."},'
    .. '{"role":"user","content":"' .. text .. '"}],"max_tokens":32}'
  if key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,'
    .. '"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,'
    .. '"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
