-- Shared by every scenario: prints one machine-readable line at the end of a wrk run.
-- RESULT <requests/s> <p50 µs> <p90 µs> <p99 µs> <max µs> <socket errors> <non-2xx>
function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f %d %d %d %d %d %d\n",
    summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    errors, summary.errors.status))
end
