#!/usr/bin/env bash
# What Redis buys card authorization replays: `payd api` on PostgreSQL with and without
# --redis-url --decision-cache, both on one database, driven in turn by wrk with
# REPLAYS transaction ids (the same id always with the same body: after the first round
# every request is a replay), interleaved A, B, A, B; then the same with fresh ids (what
# the cache costs a first decision); then `payd audit`.
#
# usage: bench/replays.sh [duration_s=10] [connections=64] [replays=1000]
# env: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres),
#      BENCH_REDIS_URL (default redis://127.0.0.1:6379)
# needs: wrk, psql, python3, curl, a running Redis
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
duration="${1:-10}"; connections="${2:-64}"; replays="${3:-1000}"
server="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
export BENCH_DIR="$here"
(cd "$root" && cargo build --release --locked -p payd-cli >&2)
payd="$root/target/release/payd"
db="payd_bench_$$"; url="${server%/*}/$db"; work="$(mktemp -d)"; pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$server" -qc "CREATE DATABASE $db" >/dev/null
start_api() { # port instance flags...
  local port="$1" instance="$2"; shift 2
  "$payd" api --listen "127.0.0.1:$port" --database-url "$url" --instance-id "$instance" --log warn "$@" \
    >/dev/null 2>"$work/$instance.log" & pids+=($!)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && return 0; sleep 0.1; done
  echo "payd api $instance did not start:" >&2; cat "$work/$instance.log" >&2; exit 1
}
start_api 19981 without
start_api 19982 with --redis-url "$redis" --redis-prefix "payd-bench-$$:" --decision-cache
python3 "$here/seed.py" 127.0.0.1:19981 10000 >/dev/null
# The first round: every id decided once (through the store) and, on B, cached.
for port in 19981 19982; do
  REPLAYS="$replays" ACCOUNTS=10000 wrk -t1 -c8 -d2s -s "$here/wrk/authorize.lua" "http://127.0.0.1:$port" >/dev/null
done
printf '\n%s, %s cores; wrk -c%s -d%ss, %s ids replayed; PostgreSQL %s, Redis %s\n' \
  "$(date -u +%FT%RZ)" "$(nproc)" "$connections" "$duration" "$replays" \
  "$(psql "$server" -Atc 'SHOW server_version')" "$(redis-server --version | awk '{print $3}')"
printf '%-28s %9s %8s %8s %8s\n' "run" "req/s" "p50 ms" "p99 ms" "non2xx"
# Replays, then what the cache costs a fresh id (a miss and a write on every request).
for run in replays:1 replays:2 fresh:1 fresh:2; do
  n="$replays"; [ "${run%%:*}" = fresh ] && n=0
  for side in without:19981 with:19982; do
    out="$(REPLAYS="$n" ACCOUNTS=10000 wrk -t2 -c"$connections" -d"${duration}s" --latency \
      -s "$here/wrk/authorize.lua" "http://127.0.0.1:${side#*:}")"
    echo "$out" | awk -v s="${run%%:*}, ${side%%:*} Redis, ${run#*:}" '/^RESULT/ {printf "%-28s %9d %8.2f %8.2f %8d\n", s, $2, $3/1000, $5/1000, $8}'
  done
done
echo "decision cache on B: $(curl -s http://127.0.0.1:19982/metrics | grep '^payd_decision_cache_total' | tr '\n' ' ')"
"$payd" audit --database-url "$url" | tail -1
