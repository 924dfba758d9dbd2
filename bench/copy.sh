#!/usr/bin/env bash
# `movies copy` of a catalog of RATINGS ratings (plus 1,000 movies) from
# SQLite to PostgreSQL, ROUNDS times: events/s of the copy, the whole
# command's time (the copy plus both read models rebuilt and compared) and
# its peak RSS; the same with --no-verify (the copy alone: its memory is
# what stays flat); and, as the baseline in the same run, PostgreSQL's own
# bulk load (`COPY … FROM` a file) of the same rows into the same empty
# table with the same indexes. Medians and ratios are printed last.
#
#   bash bench/copy.sh [RATINGS] [ROUNDS]
#
# Needs PostgreSQL at $DATABASE_URL's server (default the local one) and
# GNU time (/usr/bin/time). Release binaries are built here.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ratings=${1:-1000000}; rounds=${2:-3}
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base=${admin%/*}
cargo build --release -q -p movies -p bench --bin movies --bin fill-store
bin=$(pwd)/target/release
work=$(mktemp -d)
dbs=(bench_copy_auth bench_copy_catalog bench_copy_baseline)
cleanup() {
  for db in "${dbs[@]}"; do psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fresh() { for db in "$@"; do psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1; done; }

echo "filling $work/data with $ratings ratings"
(cd "$work" && "$bin/fill-store" --catalog-store-url sqlite://data/catalog.db \
  --auth-store-url sqlite://data/auth.db --ratings "$ratings")
echo "source: $(du -sh "$work/data/catalog.db" | cut -f1) of SQLite"

# Runs `movies copy` with "$@"; prints "events/s peak-RSS-MB seconds".
copy_once() {
  fresh bench_copy_auth bench_copy_catalog
  local out
  out=$(cd "$work" && RUST_LOG=warn /usr/bin/time -f "TIME %e %M" "$bin/movies" copy \
    --to-auth-store-url "$base/bench_copy_auth" --to-catalog-store-url "$base/bench_copy_catalog" "$@" 2>&1)
  local rate rss secs
  rate=$(grep -oP '^catalog: \d+ events copied in [\d.]+ s \(\K\d+' <<<"$out")
  read -r secs rss < <(grep -oP '^TIME \K.*' <<<"$out")
  echo "$rate $((rss / 1024)) $secs"
}

declare -a verified_rate verified_rss verified_secs alone_rate alone_rss baseline_rate
for round in $(seq 1 "$rounds"); do
  read -r r m s < <(copy_once); verified_rate+=("$r"); verified_rss+=("$m"); verified_secs+=("$s")
  read -r r m s < <(copy_once --no-verify); alone_rate+=("$r"); alone_rss+=("$m")
  # The baseline: the same rows, PostgreSQL's own bulk load.
  if [ "$round" = 1 ]; then
    psql -q "$base/bench_copy_catalog" -c "\\copy es_events TO '$work/events.copy'"
    pg_dump -s -t es_events "$base/bench_copy_catalog" >"$work/schema.sql"
  fi
  fresh bench_copy_baseline
  psql -q "$base/bench_copy_baseline" -f "$work/schema.sql" >/dev/null
  start=$(date +%s.%N)
  psql -q "$base/bench_copy_baseline" -c "\\copy es_events FROM '$work/events.copy'"
  end=$(date +%s.%N)
  total=$((ratings + 1000))
  baseline_rate+=("$(python3 -c "print(int($total / ($end - $start)))")")
  echo "round $round: copy ${verified_rate[-1]} events/s (whole command ${verified_secs[-1]} s, peak ${verified_rss[-1]} MB);" \
       "--no-verify ${alone_rate[-1]} events/s, peak ${alone_rss[-1]} MB; PostgreSQL COPY ${baseline_rate[-1]} events/s"
done

r=$(median "${verified_rate[*]}"); b=$(median "${baseline_rate[*]}")
echo "== medians of $rounds rounds, $ratings ratings + 1000 movies, SQLite -> PostgreSQL"
echo "movies copy:            $r events/s, whole command $(median "${verified_secs[*]}") s, peak RSS $(median "${verified_rss[*]}") MB (with the check)"
echo "movies copy --no-verify: $(median "${alone_rate[*]}") events/s, peak RSS $(median "${alone_rss[*]}") MB"
echo "PostgreSQL COPY FROM:   $b events/s (baseline: the same rows and indexes)"
python3 -c "print(f'ratio copy / COPY FROM: {$r / $b:.2f}')"
