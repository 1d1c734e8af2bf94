#!/usr/bin/env bash
# What the tamper check and a restore cost: a fresh release server preloads one ledger of REVISIONS
# revisions (graven-bench w3, 10,000-operation transactions), then
#   * `graven check --online`, three times, with the server otherwise idle;
#   * W2 (16 clients, DURATION s) alone, three times;
#   * W2 again while `graven check --online` runs back to back, three times;
#   * `graven export` of the ledger (grown by the W2 runs) while the server runs, once;
#   * `graven check --data` on the stopped server's folder, three times;
#   * `graven import` of the export into a new folder, three times.
# Plain text on stdout; docs/HARDENING.md quotes the medians.
#
#   benches/check.sh                      # REVISIONS=1000000 DURATION=10
set -euo pipefail
cd "$(dirname "$0")/.."
REVISIONS=${REVISIONS:-1000000}
DURATION=${DURATION:-10}
PORT=${PORT:-7498}
cargo build --release --quiet --bin graven --bin graven-bench
bin=$PWD/target/release/graven
bench=$PWD/target/release/graven-bench
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export GRAVEN_SERVER="http://127.0.0.1:$PORT"
"$bin" serve --data "$work/data" --listen "127.0.0.1:$PORT" 2>"$work/server.log" &
server=$!
until "$bin" ledger list >/dev/null 2>&1; do sleep 0.1; done
"$bin" ledger create big >/dev/null
"$bench" --workload w3 --clients 2 --count $((REVISIONS / 10000)) --ops 10000 \
  --ledger big --json >/dev/null
w2() {
  "$bench" --workload w2 --clients 16 --duration "$DURATION" --ledger big --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["throughput"]), "tx/s, p99", d["p99_ms"], "ms")'
}
for _ in 1 2 3; do
  /usr/bin/time -f "online check, idle server: %e s, client RSS %M KB" \
    "$bin" check --online --ledger big
done
for _ in 1 2 3; do echo "W2 alone: $(w2)"; done
for _ in 1 2 3; do
  w2 >"$work/w2" &
  bench=$!
  while kill -0 "$bench" 2>/dev/null; do
    /usr/bin/time -f "online check during W2: %e s" "$bin" check --online --ledger big >/dev/null
  done
  wait "$bench"
  echo "W2 during checks: $(cat "$work/w2")"
done
/usr/bin/time -f "export: %e s, client RSS %M KB" \
  "$bin" export big --out "$work/big.export"
echo "export size: $(stat -c %s "$work/big.export") bytes"
echo "server peak RSS: $(grep VmHWM "/proc/$server/status" | tr -s ' ' | cut -d' ' -f2-)"
kill -TERM "$server"
wait "$server" || true
server=""
for _ in 1 2 3; do
  /usr/bin/time -f "offline check: %e s, RSS %M KB" "$bin" check --data "$work/data" --ledger big
done
key="$work/data/ledgers/big/signing.key"
for i in 1 2 3; do
  /usr/bin/time -f "import: %e s, RSS %M KB" \
    "$bin" import "$work/big.export" --signing-key "$key" --data "$work/restored-$i"
done
