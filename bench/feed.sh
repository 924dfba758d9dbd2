#!/usr/bin/env bash
# Consumer groups under load (issue 34): events/s through one group with 1,
# 2 and 4 members over gRPC, and the append latency with 10 live groups
# against none, in one run, on a fresh PostgreSQL database (dropped after).
#
#   bash bench/feed.sh [events] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
rounds=${2:-3}
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db="feed_bench_$$"
psql "$admin" -qc "CREATE DATABASE $db"
trap 'psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
cargo build --release -q -p bench --bin bench-feed
target/release/bench-feed --store-url "${admin%/*}/$db" --events "$events" --rounds "$rounds"
