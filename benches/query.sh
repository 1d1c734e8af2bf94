#!/usr/bin/env bash
# The figures of BENCHMARKS.md "Queries and indexes (issue 13)", quicker than a whole
# benches/compare.sh: W6 and W7 on a 1M-document table, graven and PostgreSQL interleaved,
# then W2 with and without two indexes. Needs a release build (cargo build --release) and
# a PostgreSQL to compare with:
#
#   PG=postgresql://USER@127.0.0.1:5432/postgres D=10 benches/query.sh
#
# The PostgreSQL table is graven-bench's w5 table (1M documents, made once and reused);
# its index on (body->>'n')::bigint is dropped first, so that its build is timed too.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
work=$(mktemp -d)
$bin/graven serve --data "$work/data" --listen 127.0.0.1:7487 2>"$work/server.log" &
S=$!
trap 'kill $S; rm -rf "$work"' EXIT
sleep 2
url=http://127.0.0.1:7487
pg=${PG:?set PG to a PostgreSQL URL}
B="$bin/graven-bench --server $url --json"
D=${D:-10}
$B --workload w5 --preload 1000000 --duration 2 >"$work/w5.json"
L=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ledger"])' "$work/w5.json")
# PostgreSQL's index built afresh too, timed by graven-bench.
psql "$pg" -qc "DROP INDEX IF EXISTS graven_bench_w5.docs_n" 2>/dev/null ||
  echo "query.sh: psql not found: PostgreSQL's index is reused, not rebuilt" >&2
for i in 1 2 3; do
  for w in w6 w7; do
    $B --workload $w --ledger $L --duration $D
    $B --workload $w --preload 1000000 --duration $D --postgres $pg
  done
done
for i in 1 2 3; do
  $B --workload w2 --duration $D
  $B --workload w2 --duration $D --indexes 2
done
