#!/usr/bin/env bash
# Before/after for the multi-process stack on PostgreSQL: auth-service,
# catalog-service and gateway as three processes of two builds, measured in
# one run, rounds interleaved (old, new, old, new, ...), each run on fresh
# databases. Also reports how many store head queries the new build's
# linearizable reads made per second, and how many reads its read leases
# answered without one (from the services' shutdown log).
#
#   bash bench/replicas.sh OLD_BIN_DIR NEW_BIN_DIR [seconds] [rounds] [scenarios]
#
# Each BIN_DIR holds release auth-service, catalog-service and gateway.
# Needs PostgreSQL at $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# and psql. Scenarios default to "movies rating".
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd)
seconds=${3:-5}; rounds=${4:-3}; scenarios=${5:-movies rating}
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base=${admin%/*}
cargo build --release -q -p bench --bin loadgen
loadgen=$PWD/target/release/loadgen
work=$(mktemp -d)
procs=()
cleanup() {
  for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
  psql -q "$admin" -c "DROP DATABASE IF EXISTS bench_auth" -c "DROP DATABASE IF EXISTS bench_catalog" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh

start() { # start BIN_DIR
  for db in bench_auth bench_catalog; do
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  done
  local log="RUST_LOG=warn,event_sourcing::read_model=info"
  env "${limits[@]}" $log AUTH_LISTEN=127.0.0.1:50071 AUTH_STORE_URL="$base/bench_auth" \
    "$1/auth-service" 2>>"$work/auth.log" & procs=($!)
  env "${limits[@]}" $log CATALOG_LISTEN=127.0.0.1:50072 CATALOG_STORE_URL="$base/bench_catalog" \
    CATALOG_AUTH_URL=http://127.0.0.1:50071 "$1/catalog-service" 2>>"$work/catalog.log" & procs+=($!)
  env "${limits[@]}" RUST_LOG=warn GATEWAY_LISTEN=127.0.0.1:8002 GATEWAY_AUTH_URL=http://127.0.0.1:50071 \
    GATEWAY_CATALOG_URL=http://127.0.0.1:50072 "$1/gateway" & procs+=($!)
  for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.1:8002/readyz && return 0; sleep 0.1; done
  echo "the three processes never got ready" >&2; exit 1
}
stop() { kill -TERM "${procs[@]}"; wait "${procs[@]}" 2>/dev/null || true; procs=(); }
shutdown_count() { # FIELD LOG: the last shutdown line's count of FIELD
  { grep -o "$1=[0-9]*" "$2" 2>/dev/null || true; } | tail -n1 | cut -d= -f2
}

declare -A rates p99s heads
for round in $(seq 1 "$rounds"); do
  for scenario in $scenarios; do
    for side in old new; do
      dir=$old; [ "$side" = new ] && dir=$new
      : >"$work/catalog.log"; : >"$work/auth.log"
      start "$dir"
      out=$("$loadgen" run --url http://127.0.0.1:8002 --scenario "$scenario" --seconds "$seconds")
      stop
      echo "round $round  $scenario $side: $out"
      rates[$scenario-$side]+="$(echo "$out" | awk '{print $1}' | tr -d '/s') "
      p99s[$scenario-$side]+="$(echo "$out" | grep -o 'p99 *[0-9.]*' | awk '{print $2}') "
      if [ "$side" = new ]; then
        c=$(shutdown_count head_queries "$work/catalog.log"); a=$(shutdown_count head_queries "$work/auth.log")
        lc=$(shutdown_count lease_reads "$work/catalog.log"); la=$(shutdown_count lease_reads "$work/auth.log")
        rc=$(shutdown_count lease_renewals "$work/catalog.log"); ra=$(shutdown_count lease_renewals "$work/auth.log")
        nc=$(shutdown_count lease_reports "$work/catalog.log"); na=$(shutdown_count lease_reports "$work/auth.log")
        heads[$scenario]+="$(echo "(${c:-0} + ${a:-0}) / $seconds" | bc) "
        echo "             head queries: catalog ${c:-?}, auth ${a:-?}; reads under a lease: catalog ${lc:-?}, auth ${la:-?};"
        echo "             lease renewals: catalog ${rc:-?}, auth ${ra:-?}; applied positions reported: catalog ${nc:-?}, auth ${na:-?} in ~$seconds s (plus set-up)"
      fi
    done
  done
done
echo "--- medians over $rounds rounds of $seconds s, 64 connections, three processes on PostgreSQL"
for scenario in $scenarios; do
  o=$(median "${rates[$scenario-old]}")
  n=$(median "${rates[$scenario-new]}")
  po=$(median "${p99s[$scenario-old]}")
  pn=$(median "${p99s[$scenario-new]}")
  h=$(median "${heads[$scenario]}")
  printf '%-8s old %7.0f req/s p99 %s ms   new %7.0f req/s p99 %s ms   new/old %.3f   head queries/s (new) %s\n' \
    "$scenario" "$o" "$po" "$n" "$pn" "$(echo "$n / $o" | bc -l)" "$h"
done
