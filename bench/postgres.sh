#!/usr/bin/env bash
# PostgreSQL benchmark: payd on PostgreSQL next to the reference a user would write by hand,
# in one run, on the same server, everything on the same cores:
#   (r-a) pgbench, 64 clients: one transaction per request, a guarded one-row debit
#         (UPDATE ... WHERE food >= amount) and one journal insert, a random row of 10,000;
#   (r-b) the same on one hot row;
#   (a)   POST /transactions across 10,000 accounts, one payd;
#   (b)   POST /transactions all on one hot account, one payd;
#   (c)   (a) through two payd processes on the same database (one wrk per process), beside
#         (c1) one payd driven by the same two wrk, so only the number of processes differs;
#   (a-async) (a) with synchronous_commit=off, to show how much of the tail is the WAL flush;
#   (d)   POST /transfers across 10,000 accounts: accepted/s, completed/s, drain;
# then `payd audit` on the database, the ratios against the targets, RSS.
#
# usage: bench/postgres.sh [duration_s=10] [connections=64]
# env: BENCH_PG_URL (the server, default postgres://postgres@127.0.0.1:5432/postgres),
#      PAYD_EXTRA (extra `payd serve` flags, e.g. "--pg-writers 4"),
#      PAYD_ROLE=api (run the payd processes as `payd api`, the scale-out role, with one
#      `payd worker` beside them for (d)'s settling)
# needs: wrk, pgbench and psql (Debian: postgresql-client), python3, curl
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
duration="${1:-10}"
connections="${2:-64}"
server="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PAYD_EXTRA="${PAYD_EXTRA:-}"
port="${BENCH_PORT:-19997}"; port2=$((port + 1))
export BENCH_DIR="$here"

for tool in wrk pgbench psql; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install wrk postgresql-client)" >&2; exit 1; }
done
(cd "$root" && cargo build --release --locked -p payd-cli >&2)
payd="$root/target/release/payd"
db="payd_bench_$$"
url="${server%/*}/$db"
work="$(mktemp -d)"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$server" -qc "CREATE DATABASE $db" >/dev/null

# One line per scenario: name req/s p50 p90 p99 max errors non2xx (latencies in ms).
row() { awk -v s="$1" -v r="$2" -v a="$3" -v b="$4" -v c="$5" -v d="$6" -v e="$7" -v n="$8" \
  'BEGIN { printf "%-34s %9d %8.2f %8.2f %8.2f %8.2f %6d %7d\n", s, r, a, b, c, d, e, n }'; }
wrk_result() { awk '/^RESULT/ {print $2, $3/1000, $4/1000, $5/1000, $6/1000, $7, $8}'; }

role="${PAYD_ROLE:-serve}"
case "$role" in serve|api) ;; *) echo "PAYD_ROLE must be serve or api" >&2; exit 2 ;; esac
start_payd() { # port instance
  "$payd" "$role" --listen "127.0.0.1:$1" --database-url "$url" --instance-id "$2" --log warn $PAYD_EXTRA \
    >/dev/null 2>"$work/payd-$2.log" &
  pids+=($!)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null && return 0; sleep 0.1; done
  echo "payd on :$1 did not become ready:" >&2; cat "$work/payd-$2.log" >&2; exit 1
}
stop_payds() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }

printf '\n%s, %s cores, %s; PostgreSQL %s; wrk -c%s -d%ss and pgbench -c64 on the same cores\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -m)" \
  "$(psql "$server" -Atc 'SHOW server_version')" "$connections" "$duration"
printf '  synchronous_commit=%s, fsync=%s, shared_buffers=%s\n' \
  "$(psql "$server" -Atc 'SHOW synchronous_commit')" "$(psql "$server" -Atc 'SHOW fsync')" \
  "$(psql "$server" -Atc 'SHOW shared_buffers')"
printf '%-34s %9s %8s %8s %8s %8s %6s %7s\n' scenario req/s p50_ms p90_ms p99_ms max_ms errors non2xx

# (r) the hand-written reference, in a schema of its own in the same database.
psql "$url" -q <<'SQL'
CREATE SCHEMA reference;
CREATE TABLE reference.accounts (id INTEGER PRIMARY KEY, food BIGINT NOT NULL CHECK (food >= 0));
CREATE TABLE reference.journal (id BIGSERIAL PRIMARY KEY, account INTEGER NOT NULL, amount BIGINT NOT NULL,
                                at TIMESTAMPTZ NOT NULL DEFAULT now());
INSERT INTO reference.accounts SELECT n, 1000000000000 FROM generate_series(1, 10000) AS n;
SQL
pgbench_row() { # name script
  local script="$work/$1.sql"
  printf '%s\n' "$2" > "$script"
  (cd "$work" && pgbench -n -c 64 -j 2 -T "$duration" -f "$script" -l --log-prefix="$1" "$url" > "$work/$1.out" 2>&1) \
    || { cat "$work/$1.out" >&2; exit 1; }
  python3 - "$1" "$work" <<'PY'
import glob, sys
name, work = sys.argv[1], sys.argv[2]
lat = []
for path in glob.glob(f"{work}/{name}.*"):
    if path.endswith((".sql", ".out")):
        continue
    for line in open(path):
        parts = line.split()
        if len(parts) >= 3:
            lat.append(int(parts[2]) / 1000)
lat.sort()
tps = next(float(l.split("=")[1].split()[0]) for l in open(f"{work}/{name}.out") if l.startswith("tps ="))
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
print(f"{tps:.0f} {q(0.5):.2f} {q(0.9):.2f} {q(0.99):.2f} {lat[-1] if lat else 0:.2f} 0 0")
PY
}
ref_a="$(pgbench_row reference-random '\set aid random(1, 10000)
BEGIN;
UPDATE reference.accounts SET food = food - 1 WHERE id = :aid AND food >= 1;
INSERT INTO reference.journal (account, amount) VALUES (:aid, -1);
END;')"
row "(r-a) pgbench, random row of 10,000" $ref_a
ref_b="$(pgbench_row reference-hot 'BEGIN;
UPDATE reference.accounts SET food = food - 1 WHERE id = 1 AND food >= 1;
INSERT INTO reference.journal (account, amount) VALUES (1, -1);
END;')"
row "(r-b) pgbench, one hot row" $ref_b

# (a), (b): one payd.
start_payd "$port" one
python3 "$here/seed.py" "127.0.0.1:$port" 10000 >/dev/null
wrk -t2 -c16 -d2s -s "$here/wrk/health.lua" "http://127.0.0.1:$port" >/dev/null
auth_a="$(ACCOUNTS=10000 wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$here/wrk/authorize.lua" "http://127.0.0.1:$port" | wrk_result)"
row "(a) payd, 10,000 accounts" $auth_a
auth_b="$(ACCOUNTS=1 wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$here/wrk/authorize.lua" "http://127.0.0.1:$port" | wrk_result)"
row "(b) payd, one hot account" $auth_b
rss_kb="$(ps -o rss= -p "${pids[0]}" | tr -d ' ')"
# Batches whose transaction (prefetch to COMMIT) took over 50 ms: where a tail comes from.
slow="$(curl -s "http://127.0.0.1:$port/metrics" | awk '
  /^payd_writer_commit_seconds_bucket\{le="0.05"\}/ {fast = $2}
  /^payd_writer_commit_seconds_count / {all = $2}
  END {printf "%d of %d", all - fast, all}')"

# (c1) one payd, two wrk; (c) two payd, one wrk each.
half=$((connections / 2))
two_wrk() { # port-a port-b
  ACCOUNTS=10000 wrk -t1 -c"$half" -d"${duration}s" --latency -s "$here/wrk/authorize.lua" "http://127.0.0.1:$1" | wrk_result > "$work/w1" &
  local first=$!
  ACCOUNTS=10000 wrk -t1 -c"$half" -d"${duration}s" --latency -s "$here/wrk/authorize.lua" "http://127.0.0.1:$2" | wrk_result > "$work/w2"
  wait "$first"
  paste -d' ' "$work/w1" "$work/w2" | awk '{ m = $5 > $12 ? $5 : $12; x = $6 > $13 ? $6 : $13;
    printf "%d %.2f %.2f %.2f %.2f %d %d\n", $1 + $8, ($2 + $9) / 2, ($3 + $10) / 2, m, x, $7 + $14, 0 }'
}
c1="$(two_wrk "$port" "$port")"
row "(c1) payd x1, two wrk (p99: worst)" $c1
start_payd "$port2" two
c2="$(two_wrk "$port" "$port2")"
row "(c) payd x2, one wrk each" $c2

# (a-async) (a) again with the database's commits not waiting for the WAL flush: not payd's
# promise (see docs/operations.md), only to show how much of the tail is the disk's.
stop_payds
psql "$url" -qc "ALTER DATABASE $db SET synchronous_commit = off"
start_payd "$port" one
auth_async="$(ACCOUNTS=10000 wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$here/wrk/authorize.lua" "http://127.0.0.1:$port" | wrk_result)"
row "(a-async) (a), synchronous_commit=off" $auth_async
stop_payds
psql "$url" -qc "ALTER DATABASE $db RESET synchronous_commit"

# (d) transfers through one payd (and, for `payd api`, a worker that settles them).
start_payd "$port" one
settler="$port"
if [ "$role" = api ]; then
  settler=$((port + 2))
  "$payd" worker --listen "127.0.0.1:$settler" --database-url "$url" --instance-id worker --log warn \
    >/dev/null 2>"$work/payd-worker.log" &
  pids+=($!)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$settler/ready" >/dev/null && break; sleep 0.1; done
fi
settled() { curl -s "http://127.0.0.1:$settler/metrics" | awk '/^payd_transfers_settled_total / {print $2; found=1} END {if (!found) print 0}'; }
now_ms() { date +%s%3N; }
before="$(settled)"; t0="$(now_ms)"
tr="$(ACCOUNTS=10000 wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$here/wrk/transfer.lua" "http://127.0.0.1:$port" | wrk_result)"
t1="$(now_ms)"; at_stop="$(settled)"
last="$at_stop"; drained="$t1"
while :; do
  sleep 0.2; now="$(settled)"
  if [ "$now" = "$last" ]; then sleep 0.3; [ "$(settled)" = "$now" ] && break; fi
  last="$now"; drained="$(now_ms)"
done
row "(d) payd, transfers accepted" $tr
awk -v s=$(( at_stop - before )) -v w=$(( t1 - t0 )) -v t=$(( last - before )) -v d=$(( drained - t1 )) \
  'BEGIN { printf "    transfers completed %d/s while accepting; %d settled in all; backlog drained %d ms after wrk stopped\n", s*1000/w, t, d }'
stop_payds

read -r ra _ <<<"$ref_a"; read -r rb _ <<<"$ref_b"
read -r aa _ _ ap99 _ <<<"$auth_a"; read -r ab _ _ bp99 _ <<<"$auth_b"
read -r c1r _ <<<"$c1"; read -r c2r _ <<<"$c2"
awk -v ra="$ra" -v rb="$rb" -v aa="$aa" -v ab="$ab" -v ap="$ap99" -v bp="$bp99" -v c1="$c1r" -v c2="$c2r" -v rss="$rss_kb" 'BEGIN {
  printf "  (a)/(r-a) = %.1fx (target >= 4x), p99 %.2f ms (target <= 20)\n", aa / ra, ap
  printf "  (b)/(r-b) = %.1fx (target >= 10x), p99 %.2f ms (target <= 20)\n", ab / rb, bp
  printf "  (c)/(c1)  = %.2fx (two processes over one, target >= 1.3x)\n", c2 / c1
  printf "  payd RSS after (a) and (b): %.1f MB\n", rss / 1024
}'
echo "  writer batches over 50 ms during (a) and (b) (seeding included): $slow"
if "$payd" audit --database-url "$url" > "$work/audit.txt" 2>&1; then
  echo "  payd audit: $(tail -n 1 "$work/audit.txt")"
else
  echo "  payd audit FAILED:"; cat "$work/audit.txt"; exit 1
fi
