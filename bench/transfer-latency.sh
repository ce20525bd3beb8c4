#!/usr/bin/env bash
# Transfer settling latency in the scale-out shape: `payd api` takes POST /transfers, one
# `payd worker` settles them, on one PostgreSQL database; once with the workers polling
# PostgreSQL (`--transfer-poll-ms`, 250 by default), once with RabbitMQ carrying each
# accepted transfer's message to the worker, once through the design notes' pipeline
# (`--transfer-pipeline locks`: Redis account locks with fencing tokens, then a second
# queue). The three are interleaved round after round, each on a fresh database, everything
# on the same cores.
#
# Per run: accepted/s and the API's latency (wrk), then, from the database, acceptance →
# settlement per transfer (transfers.updated_at_ms - created_at_ms, both written by payd at
# commit time on this machine's clock): p50, p90, p99, max.
#
# usage: bench/transfer-latency.sh [duration_s=10] [connections=4] [rounds=2]
#   connections=0: instead of wrk, one client sending RATE transfers/s (default 20), paced,
#   each waiting for its answer: the light load where a poll shows.
# env: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres),
#      AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/payd-bench-1; the vhost must exist:
#      rabbitmqctl add_vhost payd-bench-1 && rabbitmqctl set_permissions -p payd-bench-1 guest '.*' '.*' '.*'),
#      REDIS_URL (default redis://127.0.0.1:6379; each run uses keys of its own), ACCOUNTS (1000)
# needs: wrk, psql, python3, curl, a RabbitMQ, a Redis
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
duration="${1:-10}"
connections="${2:-4}"
rounds="${3:-2}"
server="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
amqp="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/payd-bench-1}"
redis="${REDIS_URL:-redis://127.0.0.1:6379}"
accounts="${ACCOUNTS:-1000}"
api_port="${BENCH_PORT:-19995}"; worker_port=$((api_port + 1))
export BENCH_DIR="$here" ACCOUNTS="$accounts"

for tool in wrk psql; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install wrk postgresql-client)" >&2; exit 1; }
done
(cd "$root" && cargo build --release --locked -p payd-cli >&2)
payd="$root/target/release/payd"
work="$(mktemp -d)"
pids=()
db=""
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$db" ] && psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

await_ready() { # port log
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null && return 0; sleep 0.1; done
  echo "payd on :$1 did not become ready:" >&2; cat "$2" >&2; exit 1
}

run() { # mode (0 polling, 1 RabbitMQ, 2 RabbitMQ + Redis locks) run_number
  db="payd_tlat_$$_$2"
  local url="${server%/*}/$db" flags=() worker_flags=() label="polling PostgreSQL"
  psql "$server" -qc "CREATE DATABASE $db" >/dev/null
  if [ "$1" -ge 1 ]; then flags=(--amqp-url "$amqp"); label="RabbitMQ"; fi
  if [ "$1" = 2 ]; then
    worker_flags=(--redis-url "$redis" --redis-prefix "payd-bench-$$-$2:" --transfer-pipeline locks)
    label="RabbitMQ+Redis locks"
  fi
  "$payd" api --listen "127.0.0.1:$api_port" --database-url "$url" --instance-id api --log warn "${flags[@]}" \
    >/dev/null 2>"$work/api.log" &
  pids+=($!)
  await_ready "$api_port" "$work/api.log"
  "$payd" worker --listen "127.0.0.1:$worker_port" --database-url "$url" --instance-id worker --log warn \
    "${flags[@]}" "${worker_flags[@]}" >/dev/null 2>"$work/worker.log" &
  pids+=($!)
  await_ready "$worker_port" "$work/worker.log"
  python3 "$here/seed.py" "127.0.0.1:$api_port" "$accounts" >/dev/null
  local line
  if [ "$connections" = 0 ]; then
    line="$(python3 "$here/paced-transfers.py" "127.0.0.1:$api_port" "$accounts" "${RATE:-20}" "$duration")"
  else
    line="$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$here/wrk/transfer.lua" "http://127.0.0.1:$api_port" \
      | awk '/^RESULT/ {print $2, $3/1000, $5/1000, $7 + $8}')"
  fi
  # Drained: until nothing is pending (at most 60 s); how long after the load stopped.
  local load_end_ms drain_ms
  load_end_ms="$(date +%s%3N)"
  for _ in $(seq 600); do
    [ "$(psql "$url" -Atc "SELECT COUNT(*) FROM transfers WHERE status = 'pending'")" = 0 ] && break
    sleep 0.1
  done
  drain_ms=$(( $(date +%s%3N) - load_end_ms ))
  local settle
  settle="$(psql "$url" -Atc "SELECT COUNT(*),
      percentile_disc(0.5) WITHIN GROUP (ORDER BY updated_at_ms - created_at_ms),
      percentile_disc(0.9) WITHIN GROUP (ORDER BY updated_at_ms - created_at_ms),
      percentile_disc(0.99) WITHIN GROUP (ORDER BY updated_at_ms - created_at_ms),
      MAX(updated_at_ms - created_at_ms),
      COUNT(*) FILTER (WHERE status = 'pending')
    FROM transfers" | tr '|' ' ')"
  # With the pipeline: how many of them its second stage settled (the settler's poll took the
  # rest).
  local piped="-"
  if [ "$1" = 2 ]; then
    piped="$(curl -s "http://127.0.0.1:$worker_port/metrics" \
      | awk '/^payd_transfer_pipeline_total\{stage="settle",outcome="settled"\}/ {printf "%d", $2}')"
  fi
  local rss_api rss_worker
  rss_api="$(ps -o rss= -p "${pids[0]}" | awk '{printf "%d", $1/1024}')"
  rss_worker="$(ps -o rss= -p "${pids[1]}" | awk '{printf "%d", $1/1024}')"
  read -r rps p50 p99 bad <<<"$line"
  read -r total s50 s90 s99 smax pending <<<"$settle"
  printf '%-22s %9s %8.2f %8.2f %6s %8s %7s %7s %7s %7s %7s %8s %6s %5s/%s\n' \
    "$label" "$rps" "$p50" "$p99" "$bad" "$total" "$s50" "$s90" "$s99" "$smax" "$pending" "$drain_ms" "${piped:-0}" "$rss_api" "$rss_worker"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  db=""
}

load="wrk -t2 -c$connections -d${duration}s"
[ "$connections" = 0 ] && load="one paced client, ${RATE:-20} transfers/s for ${duration}s"
printf '\n%s, %s cores, %s; PostgreSQL %s; payd api + payd worker; %s on the same cores, %s accounts\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -m)" \
  "$(psql "$server" -Atc 'SHOW server_version')" "$load" "$accounts"
printf '%-22s %9s %8s %8s %6s %8s %7s %7s %7s %7s %7s %8s %6s %s\n' \
  "transfers found by" "accept/s" "p50_ms" "p99_ms" "errors" "settled" "s50_ms" "s90_ms" "s99_ms" "smax_ms" "pending" "drain_ms" "piped" "RSS_MB api/worker"
for n in $(seq "$rounds"); do
  for mode in 0 1 2; do
    run "$mode" "$((3 * n + mode))"
  done
done
echo "(s50..smax: acceptance → settlement per transfer, from the database; drain_ms: from the end of the load until"
echo " nothing was pending, measured by polling every 100 ms; errors: socket errors + non-2xx;"
echo " piped: transfers the pipeline's second stage settled, the rest by the settler's poll)"
