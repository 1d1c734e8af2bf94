#!/usr/bin/env bash
# Server load figures for BENCHMARKS.md: graven over gRPC against the raw redb floor, in
# one run on one machine. Starts a release server on a temporary data folder (loopback
# only), runs each workload RUNS times, prints one JSON object per run.
#
#   benches/load.sh            # RUNS=5 DURATION=5 by default
#   RUNS=3 DURATION=10 benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
PORT=${PORT:-7499}
cargo build --release --quiet --bin graven
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
./target/release/graven serve --data "$work/data" --listen "127.0.0.1:$PORT" 2>"$work/server.log" &
server=$!
for _ in $(seq 50); do
  ./target/release/graven --server "http://127.0.0.1:$PORT" ledger list >/dev/null 2>&1 && break
  sleep 0.1
done
bench() { ./target/release/graven --server "http://127.0.0.1:$PORT" bench --duration "$DURATION" --json "$@"; }
for run in $(seq "$RUNS"); do
  rm -f "$work/raw.redb"
  bench --workload w1 --raw-redb "$work/raw.redb"
  bench --workload w1
  rm -f "$work/raw.redb"
  bench --workload w2 --clients 64 --raw-redb "$work/raw.redb"
  bench --workload w2 --clients 64
done
