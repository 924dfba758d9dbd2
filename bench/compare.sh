#!/usr/bin/env bash
# Before/after for a change: the one-command stack of two builds, measured in
# one run, rounds interleaved (A, B, A, B, ...) so that the machine's noise
# falls on both alike, by the same load generator. Logs as a user runs them
# (info: a line per request), kept in a file; per-address limits raised.
#
#   bash bench/compare.sh OLD_BIN_DIR NEW_BIN_DIR [seconds] [rounds] [scenarios]
#
# Each BIN_DIR holds a release `movies` (e.g. a copy of target/release from
# before the change); loadgen comes from this checkout. Scenarios default to
# "movies rating login". Prints every round, then per scenario the medians
# and the ratio new/old.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd)
seconds=${3:-5}; rounds=${4:-5}; scenarios=${5:-movies rating login}
cargo build --release -q -p bench --bin loadgen
loadgen=$PWD/target/release/loadgen
work=$(mktemp -d)
stack=""
cleanup() { [ -n "$stack" ] && kill "$stack" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

declare -A rates
for round in $(seq 1 "$rounds"); do
  for scenario in $scenarios; do
    for side in old new; do
      dir=$old; [ "$side" = new ] && dir=$new
      rm -rf "$work/data"
      (cd "$work" && exec env "${limits[@]}" "$dir/movies" --gateway-listen 127.0.0.1:8000 2>>"$work/stack.log") & stack=$!
      for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:8000/healthz && break; sleep 0.1; done
      out=$("$loadgen" run --url http://127.0.0.1:8000 --scenario "$scenario" --seconds "$seconds")
      kill "$stack"; wait "$stack" 2>/dev/null || true; stack=""
      echo "round $round  $scenario $side: $out"
      rates[$scenario-$side]+="$(echo "$out" | awk '{print $1}' | tr -d '/s') "
    done
  done
done
echo "--- medians over $rounds rounds of $seconds s, 64 connections"
for scenario in $scenarios; do
  o=$(median "${rates[$scenario-old]}")
  n=$(median "${rates[$scenario-new]}")
  printf '%-8s old %9.0f req/s  new %9.0f req/s  new/old %.3f\n' "$scenario" "$o" "$n" "$(echo "$n / $o" | bc -l)"
done
