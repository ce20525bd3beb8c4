#!/usr/bin/env bash
# Card-authorization benchmark: payd serve (release) on the embedded store, driven by wrk on
# the same machine. For each durability mode it measures, in one run and back to back:
#   (a) POST /transactions across 10,000 accounts,
#   (b) POST /transactions all on one hot account,
#   (c) GET /health on the same server (the ceiling of the HTTP stack),
# then prints the figures, the ratios, and payd's RSS after the run.
#
# usage: bench/auth.sh [duration_s=10] [connections=64]
# needs: wrk (apt-get install wrk), python3, curl
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
duration="${1:-10}"
connections="${2:-64}"
threads=2
port="${BENCH_PORT:-19999}"
export BENCH_DIR="$here"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -p payd-cli >&2)
payd="$root/target/release/payd"

run_wrk() { # script, extra env...
  local script="$1"; shift
  env "$@" wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$here/wrk/$script" \
    "http://127.0.0.1:$port" | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7, $8}'
}

printf '\n%s, %s cores, %s; wrk -t%s -c%s -d%ss on the same cores\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -m)" "$threads" "$connections" "$duration"
printf '%-9s %-22s %10s %9s %9s %9s %9s %7s %8s\n' mode scenario req/s p50_ms p90_ms p99_ms max_ms errors non2xx
for mode in strict relaxed; do
  data="$(mktemp -d)"
  "$payd" serve --listen "127.0.0.1:$port" --data-dir "$data" --durability "$mode" --log warn \
    >/dev/null 2>"$data.log" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  python3 "$here/seed.py" "127.0.0.1:$port" 10000 >/dev/null
  # A short warm-up so the first scenario does not pay for cold caches.
  wrk -t2 -c16 -d2s -s "$here/wrk/health.lua" "http://127.0.0.1:$port" >/dev/null
  declare -A rps
  for scenario in accounts_10000 hot_account health; do
    case "$scenario" in
      accounts_10000) line="$(run_wrk authorize.lua ACCOUNTS=10000)" ;;
      hot_account) line="$(run_wrk authorize.lua ACCOUNTS=1)" ;;
      health) line="$(run_wrk health.lua)" ;;
    esac
    read -r r p50 p90 p99 max errors non2xx <<<"$line"
    rps[$scenario]=$r
    awk -v m="$mode" -v s="$scenario" -v r="$r" -v a="$p50" -v b="$p90" -v c="$p99" -v d="$max" -v e="$errors" -v n="$non2xx" \
      'BEGIN { printf "%-9s %-22s %10d %9.2f %9.2f %9.2f %9.2f %7d %8d\n", m, s, r, a/1000, b/1000, c/1000, d/1000, e, n }'
  done
  rss_kb="$(ps -o rss= -p "$pid" | tr -d ' ')"
  codes="$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^payd_authorizations_total/ {printf "%s ", $0}')"
  awk -v m="$mode" -v a="${rps[accounts_10000]}" -v h="${rps[hot_account]}" -v c="${rps[health]}" -v rss="$rss_kb" \
    'BEGIN { printf "%-9s hot/accounts = %.0f%%, accounts/health = %.0f%%, RSS after run = %.1f MB\n", m, 100*h/a, 100*a/c, rss/1024 }'
  echo "$mode    decisions: $codes"
  kill -TERM "$pid"; wait "$pid" || true
  trap - EXIT
  rm -rf "$data" "$data.log"
done
