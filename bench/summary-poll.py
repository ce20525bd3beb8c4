#!/usr/bin/env python3
"""Polls payd's GET /payments-summary every 100 ms over [now - 15 s, now - 2 s] and prints
its latency quantiles: more samples of the summary under load than the benchmark's one check
every 10 s. Run it beside a benchmark, e.g. for the 50 s outage scenario:

    python3 bench/summary-poll.py 44 & bash bench/gateway.sh strict payd-bench outage

usage: bench/summary-poll.py SECONDS [PORT]   (starts after 4 s; PORT 19998, gateway.sh's)
"""
import datetime
import http.client
import sys
import time

seconds = float(sys.argv[1])
port = int(sys.argv[2]) if len(sys.argv) > 2 else 19998


def iso(ms):
    at = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


time.sleep(4)
connection = http.client.HTTPConnection("127.0.0.1", port)
latencies, failed = [], 0
end = time.time() + seconds
while time.time() < end:
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    try:
        connection.request("GET", f"/payments-summary?from={iso(now_ms - 15000)}&to={iso(now_ms - 2000)}")
        response = connection.getresponse()
        response.read()
        if response.status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            failed += 1
    except OSError:
        failed += 1
        connection = http.client.HTTPConnection("127.0.0.1", port)
    time.sleep(0.1)
latencies.sort()
n = len(latencies)
if n == 0:
    sys.exit(f"no summary answered ({failed} failed)")
p50, p90, p99 = (latencies[min(n - 1, int(n * q))] * 1000 for q in (0.5, 0.9, 0.99))
print(f"summary poll n={n} failed={failed} p50={p50:.3f} p90={p90:.3f} p99={p99:.3f} "
      f"max={latencies[-1] * 1000:.3f} ms")
