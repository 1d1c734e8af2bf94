#!/usr/bin/env bash
# How graven grows: for each journal size, a fresh release server preloads a ledger of that
# many one-document revisions (128-byte documents, graven-bench w5's preload), then
# records
#   * the server's resident memory (RSS) after the load,
#   * reads with an inclusion proof (w5: 32 clients, and 1 client for the latency of one
#     read without queueing) and the size of one proof,
#   * the restart time (SIGTERM, start again, until the API answers) and the RSS and
#     reads after the restart (cold caches).
# One JSON object per size goes to OUT/scale.jsonl; BENCHMARKS.md quotes them.
#
#   benches/scale.sh [OUT]              # default OUT=target/scale
#   SIZES="10000 1000000 10000000" DURATION=10 benches/scale.sh
#   SERVE_ARGS="--cache-mib 64" benches/scale.sh   # options for graven serve
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-10000 1000000 10000000}
DURATION=${DURATION:-10}
read -r -a serve_args <<<"${SERVE_ARGS:-}"
PORT=${PORT:-7497}
OUT=${1:-target/scale}
cargo build --release --quiet -p graven -p graven-bench --bins
bin=target/release/graven
bench=target/release/graven-bench
url="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
: >"$OUT/scale.jsonl"
work=$(mktemp -d)
server=""
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap 'stop; rm -rf "$work"' EXIT

# Starts the server on $1; sets $started to the seconds until it answered.
start() {
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" serve --data "$1" --listen "127.0.0.1:$PORT" "${serve_args[@]}" >/dev/null 2>>"$work/server.log" &
  server=$!
  until "$bin" --server "$url" ledger list >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { echo "scale.sh: the server exited" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s.%N)
  started=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}
rss_kb() { ps -o rss= -p "$server" | tr -d ' '; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

for n in $SIZES; do
  data="$work/data-$n"
  start "$data"
  loaded=$("$bench" --server "$url" --json --workload w5 --preload "$n" --duration "$DURATION")
  ledger=$(echo "$loaded" | field ledger)
  # One client: the latency of a read with its proof, without queueing.
  single=$("$bench" --server "$url" --json --workload w5 --ledger "$ledger" --clients 1 --duration "$DURATION")
  rss_loaded=$(rss_kb)
  proof_bytes=$("$bin" --server "$url" proof inclusion "$ledger" $((n / 2)) | wc -c)
  disk=$(du -sb "$data" | cut -f1)
  stop
  start "$data"
  restart_s=$started
  rss_restarted=$(rss_kb)
  cold=$("$bench" --server "$url" --json --workload w5 --ledger "$ledger" --duration "$DURATION")
  rss_after=$(rss_kb)
  stop
  echo "{\"revisions\":$n,\"disk_bytes\":$disk,\"rss_loaded_kb\":$rss_loaded,\"proof_bytes\":$proof_bytes,\"restart_s\":$restart_s,\"rss_restarted_kb\":$rss_restarted,\"rss_after_reads_kb\":$rss_after,\"reads\":$loaded,\"reads_one_client\":$single,\"reads_after_restart\":$cold}" \
    | tee -a "$OUT/scale.jsonl"
  rm -rf "$data"
done
