#!/usr/bin/env python3
"""Creates accounts acc-0 .. acc-(N-1) with large balances over one keep-alive connection.

usage: seed.py HOST:PORT N
"""
import http.client
import json
import sys

host, port = sys.argv[1].rsplit(":", 1)
count = int(sys.argv[2])
connection = http.client.HTTPConnection(host, int(port))
for n in range(count):
    body = json.dumps({"id": f"acc-{n}",
                       "balances": {"FOOD": "100000000.00", "MEAL": "100000000.00", "CASH": "100000000.00"}})
    connection.request("POST", "/accounts", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 201:
        sys.exit(f"seeding acc-{n} failed: HTTP {response.status}")
print(f"seeded {count} accounts")
