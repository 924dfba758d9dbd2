#!/usr/bin/env bash
# GET movies on one process against the same build as three processes on
# PostgreSQL, in one run, rounds interleaved: the one-command stack
# (embedded store); auth-service, catalog-service and gateway, one of each;
# and two replicas of auth and of catalog behind one gateway. Every process
# logs as a user runs it (info, into a file); the per-address limits are
# raised, as all load comes from one address.
#
#   bash bench/three.sh [BIN_DIR] [seconds] [rounds] [connections]
#
# BIN_DIR holds release movies, auth-service, catalog-service and gateway
# (default: target/release, built here). Needs PostgreSQL at $DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres) and psql. Prints
# every round, then the medians and each layout's ratio to one process.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${1:-}" ]; then
  cargo build --release -q -p movies -p auth-service -p catalog-service -p gateway
fi
cargo build --release -q -p bench --bin loadgen
bin=$(cd "${1:-target/release}" && pwd)
seconds=${2:-5}; rounds=${3:-3}; connections=${4:-64}
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export PGOPTIONS="-c client_min_messages=warning"
base=${admin%/*}
loadgen=$PWD/target/release/loadgen
work=$(mktemp -d)
procs=()
cleanup() {
  for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
  psql -q "$admin" -c "DROP DATABASE IF EXISTS bench3_auth" -c "DROP DATABASE IF EXISTS bench3_catalog" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh

ready() { # URL
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$1/readyz" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}

# start LAYOUT: one (the one-command stack), three (one of each on
# PostgreSQL), replicas (two auth and two catalog on PostgreSQL).
start() {
  rm -rf "$work/data"
  if [ "$1" = one ]; then
    (cd "$work" && exec env "${limits[@]}" GATEWAY_LISTEN=127.0.0.1:8020 "$bin/movies" 2>>"$work/one.log") & procs=($!)
    ready http://127.0.0.1:8020
    return
  fi
  for db in bench3_auth bench3_catalog; do
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  done
  local n=1 auth_urls="" catalog_urls=""
  [ "$1" = replicas ] && n=2
  procs=()
  for i in $(seq 1 "$n"); do
    env "${limits[@]}" AUTH_LISTEN=127.0.0.1:5008$i AUTH_METRICS_LISTEN=127.0.0.1:918$i \
      AUTH_STORE_URL="$base/bench3_auth" "$bin/auth-service" 2>>"$work/auth$i.log" & procs+=($!)
    auth_urls+="${auth_urls:+,}http://127.0.0.1:5008$i"
  done
  for i in $(seq 1 "$n"); do
    env "${limits[@]}" CATALOG_LISTEN=127.0.0.1:5009$i CATALOG_METRICS_LISTEN=127.0.0.1:919$i \
      CATALOG_STORE_URL="$base/bench3_catalog" CATALOG_AUTH_URL="$auth_urls" \
      "$bin/catalog-service" 2>>"$work/catalog$i.log" & procs+=($!)
    catalog_urls+="${catalog_urls:+,}http://127.0.0.1:5009$i"
  done
  env "${limits[@]}" GATEWAY_LISTEN=127.0.0.1:8021 GATEWAY_METRICS_LISTEN=127.0.0.1:9200 \
    GATEWAY_AUTH_URL="$auth_urls" GATEWAY_CATALOG_URL="$catalog_urls" \
    "$bin/gateway" 2>>"$work/gateway.log" & procs+=($!)
  ready http://127.0.0.1:8021
}
stop() { kill -TERM "${procs[@]}"; wait "${procs[@]}" 2>/dev/null || true; procs=(); }

declare -A rates
for round in $(seq 1 "$rounds"); do
  for layout in one three replicas; do
    start "$layout"
    port=8021; [ "$layout" = one ] && port=8020
    out=$("$loadgen" run --url "http://127.0.0.1:$port" --scenario movies --seconds "$seconds" --connections "$connections")
    stop
    echo "round $round  $layout: $out"
    rates[$layout]+="$(echo "$out" | awk '{print $1}' | tr -d '/s') "
  done
done
echo "--- GET movies, medians over $rounds rounds of $seconds s, $connections connections"
one=$(median "${rates[one]}")
for layout in one three replicas; do
  m=$(median "${rates[$layout]}")
  printf '%-9s %9.0f req/s  (%.2fx one process)\n' "$layout" "$m" "$(echo "$m / $one" | bc -l)"
done
