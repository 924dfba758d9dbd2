#!/usr/bin/env bash
# The REST load benchmark: the whole stack (cargo run --release, embedded
# store, logs as a user runs it: one line per request at info, kept in a
# file) beside a bare axum handler serving the same 100-movie JSON from
# memory after a token-header check, measured in one run by the same
# generator; then GET movies again with the stack as three processes. The
# per-address limits are raised: all load comes from one address.
#
#   bash bench/http.sh [seconds] [rounds]
#
# Prints, per scenario and round, requests/s and p50/p99 with 64 connections;
# then medians, the ratio to the bare baseline, and GET movies paced at half
# its maximum rate.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
cargo build --release -q -p movies -p bench -p auth-service -p catalog-service -p gateway \
  --bin movies --bin loadgen --bin auth-service --bin catalog-service --bin gateway
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
. bench/lib.sh
rate_of() { awk '{print $1}' | tr -d '/s'; }

"$bin/loadgen" bare --listen 127.0.0.1:8100 2>/dev/null & pids+=($!)
wait_for http://127.0.0.1:8100/api/auth/movies

# Each stack measurement gets a fresh stack and store, so that one
# scenario's data (the rating run adds movies) never weighs on another.
stack=""
start_stack() {
  rm -rf "$work/data"
  (cd "$work" && exec env "${limits[@]}" "$bin/movies" --gateway-listen 127.0.0.1:8000 2>>"$work/stack.log") & stack=$!
  pids+=("$stack")
  wait_for http://127.0.0.1:8000/healthz
}
stop_stack() { kill "$stack"; wait "$stack" 2>/dev/null || true; }

# The same stack as three processes (as docker compose runs it): every hop is
# gRPC over loopback TCP, and catalog-service checks tokens with auth-service.
procs=()
start_procs() {
  rm -rf "$work/data"
  (cd "$work" && exec env "${limits[@]}" "$bin/auth-service" --auth-listen 127.0.0.1:50061 2>>"$work/auth.log") & procs=($!)
  (cd "$work" && exec env "${limits[@]}" "$bin/catalog-service" --catalog-listen 127.0.0.1:50062 \
    --catalog-auth-url http://127.0.0.1:50061 2>>"$work/catalog.log") & procs+=($!)
  (cd "$work" && exec env "${limits[@]}" "$bin/gateway" --gateway-listen 127.0.0.1:8001 \
    --gateway-auth-url http://127.0.0.1:50061 --gateway-catalog-url http://127.0.0.1:50062 2>>"$work/gateway.log") & procs+=($!)
  pids+=("${procs[@]}")
  for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:8001/readyz && return 0; sleep 0.1; done
  echo "the three processes never got ready" >&2; exit 1
}
stop_procs() { kill "${procs[@]}"; wait "${procs[@]}" 2>/dev/null || true; }

declare -A results
for round in $(seq 1 "$rounds"); do
  for case in bare:movies:8100 stack:movies:8000 stack:rating:8000 stack:login:8000 procs:movies:8001; do
    IFS=: read -r target scenario port <<<"$case"
    [ "$target" = stack ] && start_stack
    [ "$target" = procs ] && start_procs
    out=$("$bin/loadgen" run --url "http://127.0.0.1:$port" --scenario "$scenario" --seconds "$seconds")
    [ "$target" = stack ] && stop_stack
    [ "$target" = procs ] && stop_procs
    echo "round $round  $target $scenario: $out"
    results[$target-$scenario]+="$(echo "$out" | rate_of) "
  done
done
echo "--- medians over $rounds rounds of $seconds s, 64 connections"
bare=$(median "${results[bare-movies]}")
for k in bare-movies stack-movies stack-rating stack-login procs-movies; do
  m=$(median "${results[$k]}")
  printf '%-14s %9.0f req/s  (%.2fx bare)\n' "$k" "$m" "$(echo "$m / $bare" | bc -l)"
done
stack=$(median "${results[stack-movies]}")
half=$(echo "$stack / 2" | bc -l)
echo "stack-movies paced at half its maximum ($(printf '%.0f' "$half") req/s):"
start_stack
"$bin/loadgen" run --url http://127.0.0.1:8000 --scenario movies --seconds "$seconds" --rate "$half"
stop_stack

# The same comparison with wrk (the tool behind the figures in STACK.md), if installed.
if command -v wrk >/dev/null; then
  start_stack
  token=$("$bin/loadgen" setup --url http://127.0.0.1:8000)
  for round in $(seq 1 "$rounds"); do
    b=$(wrk -t2 -c64 -d"${seconds}s" -H "Authorization: Token $(printf 'x%.0s' $(seq 64))" http://127.0.0.1:8100/api/auth/movies | awk '/Requests\/sec/ {print $2}')
    s=$(wrk -t2 -c64 -d"${seconds}s" -H "Authorization: Token $token" http://127.0.0.1:8000/api/auth/movies | awk '/Requests\/sec/ {print $2}')
    echo "wrk round $round: bare $b req/s, stack GET movies $s req/s"
    results[wrk-bare]+="$b "; results[wrk-stack]+="$s "
  done
  wb=$(median "${results[wrk-bare]}")
  ws=$(median "${results[wrk-stack]}")
  printf 'wrk medians: bare %.0f req/s, stack GET movies %.0f req/s (%.2fx bare)\n' "$wb" "$ws" "$(echo "$ws / $wb" | bc -l)"
  stop_stack
fi
