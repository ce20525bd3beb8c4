#!/usr/bin/env bash
# Transfer and mixed-wallet benchmark: payd serve (release) on the embedded store, driven by
# wrk on the same machine. Per durability mode, in one run:
#   (a) POST /transfers across ACCOUNTS accounts for DURATION seconds: accepted/s and
#       latency (wrk), completed/s while accepting and the time to drain the backlog after
#       wrk stops (payd_transfers_settled_total from /metrics);
#   (b) a mixed workload (40% transfers, 30% card transactions, 20% holds, 10% reads);
#   (c) GET /health on the same server, the ceiling of the HTTP stack;
# then `payd audit` on the store.
#
# usage: bench/transfers.sh [duration_s=10] [connections=64] [modes="strict relaxed"]
# env: ACCOUNTS (10000), PAYD_EXTRA (extra `payd serve` flags, e.g. "--transfer-coalesce-ms 5")
# needs: wrk (apt-get install wrk), python3, curl
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
duration="${1:-10}"
connections="${2:-64}"
modes="${3:-strict relaxed}"
accounts="${ACCOUNTS:-10000}"
PAYD_EXTRA="${PAYD_EXTRA:-}"
threads=2
port="${BENCH_PORT:-19998}"
export BENCH_DIR="$here" ACCOUNTS="$accounts"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -p payd-cli >&2)
payd="$root/target/release/payd"
base="http://127.0.0.1:$port"

settled() { curl -s "$base/metrics" | awk '/^payd_transfers_settled_total / {print $2; found=1} END {if (!found) print 0}'; }
now_ms() { date +%s%3N; }

printf '\n%s, %s cores, %s; wrk -t%s -c%s -d%ss on the same cores, %s accounts\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -m)" "$threads" "$connections" "$duration" "$accounts"
for mode in $modes; do
  data="$(mktemp -d)"
  "$payd" serve --listen "127.0.0.1:$port" --data-dir "$data" --durability "$mode" --log warn $PAYD_EXTRA \
    >/dev/null 2>"$data.log" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf "$base/ready" >/dev/null && break; sleep 0.1; done
  python3 "$here/seed.py" "127.0.0.1:$port" "$accounts" >/dev/null
  wrk -t2 -c16 -d2s -s "$here/wrk/health.lua" "$base" >/dev/null

  # (a) transfers
  before="$(settled)"; start_ms="$(now_ms)"
  line="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$here/wrk/transfer.lua" "$base" \
    | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7, $8}')"
  stop_ms="$(now_ms)"; at_stop="$(settled)"
  read -r rps p50 p90 p99 max errors non2xx <<<"$line"
  accepted=$(( (rps * (stop_ms - start_ms)) / 1000 ))
  # Drain: until the settled counter stops growing for 300 ms.
  last="$at_stop"; drained_ms="$stop_ms"
  while :; do
    sleep 0.1; now="$(settled)"
    if [ "$now" = "$last" ]; then sleep 0.2; [ "$(settled)" = "$now" ] && break; fi
    last="$now"; drained_ms="$(now_ms)"
  done
  total=$(( last - before ))
  awk -v m="$mode" -v r="$rps" -v a="$p50" -v b="$p90" -v c="$p99" -v d="$max" -v e="$errors" -v n="$non2xx" \
      -v s=$(( at_stop - before )) -v w=$(( stop_ms - start_ms )) -v t="$total" -v dr=$(( drained_ms - stop_ms )) \
    'BEGIN {
       printf "%-8s transfers  accepted %6d/s  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms  errors %d  non-2xx %d\n", m, r, a/1000, b/1000, c/1000, d/1000, e, n
       printf "%-8s transfers  completed %6d/s while accepting; %d settled in all; backlog drained %d ms after wrk stopped\n", m, s*1000/w, t, dr
     }'

  # (b) mixed, (c) health
  for scenario in mixed health; do
    line="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$here/wrk/$scenario.lua" "$base" \
      | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7, $8}')"
    read -r rps p50 p90 p99 max errors non2xx <<<"$line"
    awk -v m="$mode" -v s="$scenario" -v r="$rps" -v a="$p50" -v b="$p90" -v c="$p99" -v d="$max" -v e="$errors" -v n="$non2xx" \
      'BEGIN { printf "%-8s %-10s %6d req/s  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms  errors %d  non-2xx %d\n", m, s, r, a/1000, b/1000, c/1000, d/1000, e, n }'
  done
  rss_kb="$(ps -o rss= -p "$pid" | tr -d ' ')"
  echo "$mode RSS after run: $(( rss_kb / 1024 )) MB"
  kill -TERM "$pid"; wait "$pid" || true
  trap - EXIT
  if "$payd" audit --data-dir "$data" >"$data.audit" 2>&1; then
    echo "$mode payd audit: $(tail -1 "$data.audit")"
  else
    echo "$mode payd audit FAILED:"; cat "$data.audit"
  fi
  rm -rf "$data" "$data.log" "$data.audit"
done
