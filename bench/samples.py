#!/usr/bin/env python3
"""Where the tail of a gateway run is, from its per-payment samples.

usage: bench/samples.py FILE [THRESHOLD_MS]
FILE is what `BENCH_SAMPLES=FILE bench/gateway.sh ...` wrote: a line per payment, "sent_ms
latency_us accepted". Prints how many payments took over the threshold (2 ms by default) and
how those slow payments group: a payment is in the same group as the previous slow one when it
was sent at most 20 ms after it. A group of one is a lone slow request among fast neighbours;
a big group whose requests all end at the same instant is a stall of everything.
"""
import sys

path = sys.argv[1]
threshold_us = float(sys.argv[2]) * 1000 if len(sys.argv) > 2 else 2000
rows = [tuple(map(int, line.split())) for line in open(path)]
slow = [(sent_ms, latency_us) for sent_ms, latency_us, _ in rows if latency_us > threshold_us]

groups, current = [], []
for sent_ms, latency_us in slow:
    if current and sent_ms - current[-1][0] > 20:
        groups.append(current)
        current = []
    current.append((sent_ms, latency_us))
if current:
    groups.append(current)

sizes = {}
for group in groups:
    sizes[len(group)] = sizes.get(len(group), 0) + 1
print(f"{path}: {len(slow)} of {len(rows)} payments over {threshold_us / 1000:g} ms "
      f"(the p99 allows {len(rows) // 100})")
print("groups by size (size: count): " + ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items())))
for group in groups:
    if len(group) >= 5:
        ends_ms = [sent + latency / 1000 for sent, latency in group]
        print(f"  at {group[0][0] / 1000:7.2f} s: {len(group):3d} slow, worst "
              f"{max(latency for _, latency in group) / 1000:6.1f} ms, ending within "
              f"{max(ends_ms) - min(ends_ms):5.1f} ms of each other")
