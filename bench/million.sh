#!/usr/bin/env bash
# A million ratings through REST (issue 12's table): USERS users each rate
# MOVIES movies once (64 connections), then the memory of each process,
# one full GET /api/auth/rating (time, size, memory after, and 5 s later),
# and restarts on the same data until the first authenticated read answers:
# after SIGKILL (from the last periodic snapshot plus the events after it),
# after SIGTERM (from the snapshot saved at stop), and with snapshots off
# (a full replay: the baseline); then the snapshot saves the run logged.
#
#   bash bench/million.sh [BIN_DIR] [USERS] [MOVIES]
#
# BIN_DIR holds release binaries (default: target/release, built here).
# STACK=embedded (default): the one-command stack on SQLite.
# STACK=postgres: auth-service, catalog-service and gateway as three
# processes on fresh PostgreSQL databases at $DATABASE_URL's server.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${1:-}" ]; then
  cargo build --release -q -p movies -p auth-service -p catalog-service -p gateway
fi
cargo build --release -q -p bench --bin loadgen
bin=$(cd "${1:-target/release}" && pwd)
users=${2:-1000}; movies=${3:-1000}
stack=${STACK:-embedded}
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base=${admin%/*}
url=http://127.0.0.1:8003
# The catalog's own /metrics, when it is a process of its own.
catalog_metrics=$([ "$stack" = postgres ] && echo http://127.0.0.1:9182/metrics || true)
work=$(mktemp -d)
procs=()
. bench/lib.sh
limits+=(AUTH_METRICS_LISTEN=off CATALOG_METRICS_LISTEN=off GATEWAY_METRICS_LISTEN=127.0.0.1:9183
        RUST_LOG=warn,event_sourcing::read_model=info)
cleanup() {
  for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$stack" = postgres ]; then
    psql -q "$admin" -c "DROP DATABASE IF EXISTS million_auth" -c "DROP DATABASE IF EXISTS million_catalog" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  if [ "$stack" = postgres ]; then
    env "${limits[@]}" AUTH_SNAPSHOT="${AUTH_SNAPSHOT:-$work/auth.snapshot}" CATALOG_SNAPSHOT="${CATALOG_SNAPSHOT:-$work/catalog.snapshot}" \
      "$@" AUTH_LISTEN=127.0.0.1:50081 AUTH_STORE_URL="$base/million_auth" \
      "$bin/auth-service" 2>>"$work/auth.log" & procs=($!)
    env "${limits[@]}" AUTH_SNAPSHOT="${AUTH_SNAPSHOT:-$work/auth.snapshot}" CATALOG_SNAPSHOT="${CATALOG_SNAPSHOT:-$work/catalog.snapshot}" \
      CATALOG_METRICS_LISTEN=127.0.0.1:9182 "$@" CATALOG_LISTEN=127.0.0.1:50082 CATALOG_STORE_URL="$base/million_catalog" \
      CATALOG_AUTH_URL=http://127.0.0.1:50081 "$bin/catalog-service" 2>>"$work/catalog.log" & procs+=($!)
    env "${limits[@]}" GATEWAY_LISTEN=127.0.0.1:8003 GATEWAY_AUTH_URL=http://127.0.0.1:50081 \
      GATEWAY_CATALOG_URL=http://127.0.0.1:50082 "$bin/gateway" 2>>"$work/gateway.log" & procs+=($!)
  else
    (cd "$work" && exec env "${limits[@]}" "$@" AUTH_LISTEN=127.0.0.1:0 CATALOG_LISTEN=127.0.0.1:0 \
      "$bin/movies" --gateway-listen 127.0.0.1:8003 2>>"$work/movies.log") & procs=($!)
  fi
}
stop() { kill "-${1:-TERM}" "${procs[@]}"; wait "${procs[@]}" 2>/dev/null || true; procs=(); }
rss() { for p in "${procs[@]}"; do printf '%s %d MB  ' "$(ps -o comm= -p "$p")" $(( $(ps -o rss= -p "$p") / 1024 )); done; echo; }
now() { date +%s.%N; }

if [ "$stack" = postgres ]; then
  for db in million_auth million_catalog; do
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  done
fi
start
for _ in $(seq 1 300); do curl -sf -o /dev/null "$url/readyz" && break; sleep 0.1; done
echo "== $stack stack: $users users x $movies movies, 64 connections"
"$PWD/target/release/loadgen" million --url "$url" --users "$users" --movies "$movies" 2>"$work/progress.log" \
  || { cat "$work/progress.log"; exit 1; }
echo "RSS after the load:      $(rss)"
echo "where a rating's time went (the stack's own histograms):"
for m in http://127.0.0.1:9183/metrics ${catalog_metrics:+"$catalog_metrics"}; do curl -s "$m"; done | python3 bench/breakdown.py
token=$(curl -sf "$url/api/auth/register" -H 'Content-Type: application/json' \
  -d '{"username": "reader", "email": "reader@example.com", "password": "password123"}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
echo "RSS after one registration (argon2id's memory): $(rss)"
full=$(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$url/api/auth/rating" -H "Authorization: Token $token")
echo "full GET /api/auth/rating: status, bytes, seconds: $full"
echo "RSS after the full GET:  $(rss)"
sleep 5
echo "RSS 5 s later:           $(rss)"
restart() { # what, how to stop, settings for the new start
  local what=$1 signal=$2; shift 2
  stop "$signal"
  local t0; t0=$(now)
  start "$@"
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/api/auth/movies?limit=1" -H "Authorization: Token $token")" = 200 ]; do
    sleep 0.02
    if [ "$(echo "$(now) - $t0 > 120" | bc)" = 1 ]; then echo "no answer 120 s after the restart" >&2; exit 1; fi
  done
  printf 'restart %-28s until the first authenticated read: %.2f s\n' "$what" "$(echo "$(now) - $t0" | bc)"
  echo "RSS after it:            $(rss)"
}
restart "after SIGKILL" KILL
restart "after SIGTERM" TERM
restart "with snapshots off" TERM AUTH_SNAPSHOT=off CATALOG_SNAPSHOT=off
echo "snapshots saved (model, position, bytes, ms new events were held, ms in all):"
cat "$work"/*.log | sed 's/\x1b\[[0-9;]*m//g' | grep 'snapshot saved' \
  | sed -E 's/.*model="?([a-z]+)"? position=([0-9]+) bytes=([0-9]+) locked_ms=([0-9.]+) total_ms=([0-9.]+).*/  \1 \2 \3 \4 \5/' || true
cat "$work"/*.log | sed 's/\x1b\[[0-9;]*m//g' | grep -E 'snapshot (ignored|and the events)' | sed 's/^/  /' || true
