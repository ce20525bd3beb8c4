"""Sends RATE transfers per second for DURATION seconds to a payd at HOST:PORT, one at a
time (each waits for its answer), between random accounts `acc-0` .. `acc-{ACCOUNTS-1}`
(as seed.py opens them). Prints `accepted_per_s p50_ms p99_ms errors` on one line.

usage: paced-transfers.py HOST:PORT ACCOUNTS RATE DURATION_S
"""

import http.client
import json
import random
import sys
import time

host, port = sys.argv[1].split(":")
accounts, rate, duration = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
connection = http.client.HTTPConnection(host, int(port), timeout=10)
latencies_ms, errors, accepted = [], 0, 0
start = time.monotonic()
n = 0
while True:
    due = start + n / rate
    if due - start >= duration:
        break
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    source = random.randrange(accounts)
    target = (source + random.randrange(1, accounts)) % accounts
    body = json.dumps({"id": f"paced-{int(start)}-{n}", "from": f"acc-{source}",
                       "to": f"acc-{target}", "amount": "0.01"})
    sent = time.monotonic()
    try:
        connection.request("POST", "/transfers", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status == 202:
            accepted += 1
        else:
            errors += 1
    except OSError:
        errors += 1
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    latencies_ms.append((time.monotonic() - sent) * 1000)
    n += 1
latencies_ms.sort()
pick = lambda p: latencies_ms[min(len(latencies_ms) - 1, int(p * len(latencies_ms)))]
elapsed = time.monotonic() - start
print(f"{accepted / elapsed:.0f} {pick(0.5):.2f} {pick(0.99):.2f} {errors}")
