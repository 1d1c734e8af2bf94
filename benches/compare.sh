#!/usr/bin/env bash
# graven against its peers, in one run on one machine (BENCHMARKS.md quotes its output):
#
#   * graven over gRPC (a release server on a temporary data folder, loopback only);
#   * raw redb: the same inserts, same sizes and batch shape, Durability::Immediate, no
#     ledger work (graven-bench --raw-redb), the storage engine's floor;
#   * PostgreSQL with the design AWS recommends to QLDB users: a current-state table, an
#     audit table filled by a trigger, a SHA-256 hash chain over the audit rows (pgcrypto),
#     synchronous_commit=on; and the same without the chain, to show what it costs
#     (graven-bench --postgres, see bench/src/postgres.rs);
#   * graven on PostgreSQL: a second graven server with --storage on the same PostgreSQL
#     cluster, the same workloads (target "graven-postgres");
#   * sha256sum on the same export file that graven-verify audit checks.
#
# W6 and W7 (indexed equality and range queries) run on W5's preloaded tables, and W2 again
# on a table with two indexes. Every workload runs RUNS times, the peers interleaved with
# graven; then a concurrency
# sweep of w2 for graven and PostgreSQL; then the audit. benches/summarize.py turns the
# results into the tables of BENCHMARKS.md and the SVG plot.
#
#   benches/compare.sh [OUT]        # default OUT=target/compare
#   RUNS=3 DURATION=10 PRELOAD=1000000 SWEEP="1 4 16 64 256" SWEEP_DURATION=5 benches/compare.sh
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql; found under
# /usr/lib/postgresql/*/bin or on PATH) and python3. Run as root, PostgreSQL runs as the
# postgres account.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
PRELOAD=${PRELOAD:-1000000}
SWEEP=${SWEEP:-1 4 16 64 256}
SWEEP_DURATION=${SWEEP_DURATION:-5}
GRAVEN_PORT=${GRAVEN_PORT:-7498}
PG_PORT=${PG_PORT:-5498}
OUT=${1:-target/compare}

pgbin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
if [ ! -x "$pgbin/initdb" ]; then
  echo "compare.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 2
fi

cargo build --release --quiet -p graven -p graven-verify -p graven-bench --bins
bin=target/release
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: >"$results"
work=$(mktemp -d)
pg_as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  pg_as=(runuser -u postgres --)
fi
cleanup() {
  kill "$server" ${server_pg:-} 2>/dev/null || true
  wait "$server" ${server_pg:-} 2>/dev/null || true
  "${pg_as[@]}" "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The machine, for the record.
{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -r)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)' || true
  free -g | head -2
  df -h "$work" | tail -1
  echo "postgres: $("$pgbin/postgres" --version)"
  echo "rustc: $(rustc --version)"
  echo "git: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (modified)')"
} >"$OUT/machine.txt"

# graven, on a fresh data folder.
"$bin/graven" serve --data "$work/graven" --listen "127.0.0.1:$GRAVEN_PORT" 2>"$work/graven.log" &
server=$!
url="http://127.0.0.1:$GRAVEN_PORT"
for _ in $(seq 100); do
  "$bin/graven" --server "$url" ledger list >/dev/null 2>&1 && break
  sleep 0.1
done

# PostgreSQL, on a fresh cluster: loopback only, durable commits.
"${pg_as[@]}" "$pgbin/initdb" -D "$work/pg" -A trust -U bench >"$work/initdb.log"
"${pg_as[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start -o \
  "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$work \
   -c synchronous_commit=on -c fsync=on -c max_connections=400 -c shared_buffers=1GB" >/dev/null
pg="postgresql://bench@127.0.0.1:$PG_PORT/postgres"
echo "postgres settings: synchronous_commit=on fsync=on shared_buffers=1GB max_connections=400" \
  >>"$OUT/machine.txt"

# One measurement: graven-bench ARGS, its JSON report tagged with the phase and run.
bench() {
  local phase=$1 run=$2
  shift 2
  local report
  report=$("$bin/graven-bench" --server "$url" --json "$@")
  echo "{\"phase\":\"$phase\",\"run\":$run,\"report\":$report}" >>"$results"
  echo "$phase run $run: $report" >&2
}

# graven on PostgreSQL: a second server, its ledgers in the same cluster.
GRAVEN_PG_PORT=${GRAVEN_PG_PORT:-7499}
"$bin/graven" serve --data "$work/graven-pg" --listen "127.0.0.1:$GRAVEN_PG_PORT" \
  --storage "$pg" 2>"$work/graven-pg.log" &
server_pg=$!
url_pg="http://127.0.0.1:$GRAVEN_PG_PORT"
for _ in $(seq 100); do
  "$bin/graven" --server "$url_pg" ledger list >/dev/null 2>&1 && break
  sleep 0.1
done
# The same, against it; its reports are tagged graven-postgres.
bench_pg() {
  local phase=$1 run=$2
  shift 2
  local report
  report=$("$bin/graven-bench" --server "$url_pg" --json "$@" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d["target"]="graven-postgres"; print(json.dumps(d))')
  echo "{\"phase\":\"$phase\",\"run\":$run,\"report\":$report}" >>"$results"
  echo "$phase run $run: $report" >&2
}
w5_ledger_pg=""

w5_ledger=""
for run in $(seq "$RUNS"); do
  for w in w1 w2 w3; do
    rm -f "$work/raw.redb"
    bench main "$run" --workload "$w" --duration "$DURATION" --raw-redb "$work/raw.redb"
    bench main "$run" --workload "$w" --duration "$DURATION"
    bench_pg main "$run" --workload "$w" --duration "$DURATION"
    bench main "$run" --workload "$w" --duration "$DURATION" --postgres "$pg"
    bench main "$run" --workload "$w" --duration "$DURATION" --postgres "$pg" --no-chain
  done
  rm -f "$work/raw.redb"
  bench main "$run" --workload w4 --duration "$DURATION"
  bench_pg main "$run" --workload w4 --duration "$DURATION"
  bench main "$run" --workload w4 --duration "$DURATION" --postgres "$pg"
  bench main "$run" --workload w4 --duration "$DURATION" --postgres "$pg" --no-chain
  if [ -z "$w5_ledger" ]; then
    bench main "$run" --workload w5 --duration "$DURATION" --preload "$PRELOAD"
    w5_ledger=$(tail -1 "$results" | python3 -c 'import json,sys; print(json.load(sys.stdin)["report"]["ledger"])')
  else
    bench main "$run" --workload w5 --duration "$DURATION" --ledger "$w5_ledger"
  fi
  if [ -z "$w5_ledger_pg" ]; then
    bench_pg main "$run" --workload w5 --duration "$DURATION" --preload "$PRELOAD"
    w5_ledger_pg=$(tail -1 "$results" | python3 -c 'import json,sys; print(json.load(sys.stdin)["report"]["ledger"])')
  else
    bench_pg main "$run" --workload w5 --duration "$DURATION" --ledger "$w5_ledger_pg"
  fi
  bench main "$run" --workload w5 --duration "$DURATION" --preload "$PRELOAD" --postgres "$pg"
  # Indexed queries on the w5 tables: graven builds its index on n in the first run (timed),
  # PostgreSQL its btree expression index on (body->>'n')::bigint.
  for w in w6 w7; do
    bench main "$run" --workload "$w" --duration "$DURATION" --ledger "$w5_ledger"
    bench main "$run" --workload "$w" --duration "$DURATION" --preload "$PRELOAD" --postgres "$pg"
  done
  # W2 on a table with 2 indexes (client, n), which every insert maintains.
  bench main "$run" --workload w2 --duration "$DURATION" --indexes 2
done

for run in $(seq "$RUNS"); do
  for c in $SWEEP; do
    bench sweep "$run" --workload w2 --clients "$c" --duration "$SWEEP_DURATION"
    bench sweep "$run" --workload w2 --clients "$c" --duration "$SWEEP_DURATION" --postgres "$pg"
  done
done

# The audit: the w5 ledger's export, graven-verify audit against sha256sum, alternating.
"$bin/graven" --server "$url" key "$w5_ledger" >"$work/w5.vkey"
"$bin/graven" --server "$url" export "$w5_ledger" --out "$work/w5.export"
bytes=$(stat -c %s "$work/w5.export")
cat "$work/w5.export" >/dev/null # into the page cache before timing
# Prints "wall seconds, max RSS KB" of a command (output discarded).
measure() {
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $(cat "$work/rss")"
}
for run in $(seq "$RUNS"); do
  read -r a_s a_kb < <(measure "$bin/graven-verify" audit --key "$work/w5.vkey" "$work/w5.export")
  read -r s_s s_kb < <(measure sha256sum "$work/w5.export")
  echo "{\"phase\":\"audit\",\"run\":$run,\"bytes\":$bytes,\"revisions\":$PRELOAD,\"audit_s\":$a_s,\"audit_kb\":$a_kb,\"sha256sum_s\":$s_s,\"sha256sum_kb\":$s_kb}" >>"$results"
done
echo "graven server RSS at the end: $(ps -o rss= -p "$server") KB" >>"$OUT/machine.txt"

python3 benches/summarize.py "$OUT"
