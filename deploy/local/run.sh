#!/usr/bin/env bash
# Runs a compose profile (contest or full) as plain processes on 127.0.0.1 under its CPU and
# memory limits (cgroup v1), until Ctrl-C; then prints the limits against what was used.
# usage: deploy/local/run.sh contest|full [--port N] [--state FILE] [--no-memory-limit] [--keep]
# Needs root, nginx (and prometheus for full) from Debian, PostgreSQL's server binaries,
# python3 with PyYAML. Builds payd (release) unless PAYD_BIN names a binary. See run.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${PAYD_BIN:-}" ]; then
  (cd "$root" && cargo build --release --locked -p payd-cli >&2)
fi
exec python3 "$root/deploy/local/run.py" "$@"
