#!/usr/bin/env bash
# Finding movies at catalog scale: MOVIES movies and RATINGS ratings
# (default 100,000 and 1,000,000, written straight into a fresh store by
# fill-store), the one-command stack on them, 64 connections from one
# address (so the per-address limits are raised, as in every load script).
#
#   bash bench/finding.sh [seconds] [rounds] [MOVIES] [RATINGS]
#
# Per round, each in turn: today's GET /api/auth/movies?limit=20 (the
# baseline), ?ordering=-score&limit=20 and ?search=<term>&limit=20;
# then medians with the ratio to the baseline, a cursor walk of every
# movie in pages of 100 (its time), the first find after a rating, and
# the stack's RSS; with OLD_MOVIES=<a movies binary of an earlier build>,
# that binary's RSS on the same data after the same warm-up (snapshots off
# for both: a replay, so each builds its read models the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
movies=${3:-100000}
ratings=${4:-1000000}
cargo build --release -q -p movies -p bench --bin movies --bin loadgen --bin fill-store
bin=$PWD/target/release
work=$(mktemp -d)
stack=""
cleanup() { if [ -n "$stack" ]; then kill "$stack" 2>/dev/null; wait "$stack" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

mkdir -p "$work/data"
echo "filling $movies movies and $ratings ratings"
"$bin/fill-store" --catalog-store-url "sqlite://$work/data/catalog.db" \
  --auth-store-url "sqlite://$work/data/auth.db" --movies "$movies" --ratings "$ratings"
# Starts `$1` (a movies binary) on a copy of the filled data.
start() {
  rm -rf "$work/run" && mkdir "$work/run" && cp -r "$work/data" "$work/run/data"
  (cd "$work/run" && RUST_LOG=warn AUTH_HASH_QUEUE=100000 GATEWAY_AUTH_PER_MINUTE=100000000 \
    GATEWAY_AUTH_BURST=100000000 GATEWAY_AUTH_CONCURRENCY=100000 CATALOG_WRITE_QUOTA=0 \
    AUTH_METRICS_LISTEN=off CATALOG_METRICS_LISTEN=off GATEWAY_METRICS_LISTEN=off \
    AUTH_SNAPSHOT=off CATALOG_SNAPSHOT=off exec "$1" --gateway-listen 127.0.0.1:8010) & stack=$!
  for _ in $(seq 1 600); do curl -sf -o /dev/null http://127.0.0.1:8010/readyz && break; sleep 0.2; done
  curl -sf -o /dev/null http://127.0.0.1:8010/readyz || { echo "the stack never got ready" >&2; exit 1; }
  # The same warm-up for every binary: today's list, 3 s.
  "$bin/loadgen" run --url http://127.0.0.1:8010 --scenario get --no-movies --seconds 3 >/dev/null
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$stack/status"; }
if [ -n "${OLD_MOVIES:-}" ]; then
  # The read models' memory before this change, on the same data.
  start "$OLD_MOVIES"
  old_rss=$(rss)
  kill "$stack"; wait "$stack" 2>/dev/null || true; stack=""
fi
start "$bin/movies"
new_rss=$(rss)

declare -A rps p99
cases="baseline:/api/auth/movies?limit=20 score:/api/auth/movies?ordering=-score&limit=20 search:/api/auth/movies?search=director%2042&limit=20"
for round in $(seq 1 "$rounds"); do
  for case in $cases; do
    name=${case%%:*}; path=${case#*:}
    line=$("$bin/loadgen" run --url http://127.0.0.1:8010 --scenario get --no-movies \
      --path "$path" --seconds "$seconds" --connections 64)
    echo "round $round: $name $line"
    rps[$name]+="$(echo "$line" | awk '{print $1}' | tr -d '/s') "
    p99[$name]+="$(echo "$line" | sed 's/.*p99 *\([0-9.]*\) ms.*/\1/') "
  done
done
base=$(median "${rps[baseline]}")
echo "--- medians over $rounds rounds of $seconds s, 64 connections, $movies movies, $ratings ratings"
for name in baseline score search; do
  r=$(median "${rps[$name]}")
  printf '%-9s %9s req/s  p99 %6s ms  %sx baseline\n' "$name" "$r" "$(median "${p99[$name]}")" \
    "$(awk -v a="$r" -v b="$base" 'BEGIN {printf "%.2f", a / b}')"
done

token=$("$bin/loadgen" setup --url http://127.0.0.1:8010 | tail -n1)
python3 - "$token" <<'EOF'
import json, sys, time, urllib.request
token = sys.argv[1]
url = "http://127.0.0.1:8010/api/auth/movies?cursor=&limit=100&ordering=-score"
pages = seen = 0
start = time.monotonic()
while url:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request) as r:
        page = json.load(r)
    pages += 1
    seen += len(page["results"])
    url = page["next"]
took = time.monotonic() - start
print(f"cursor walk by -score: {seen} movies in {pages} pages of 100, {took:.2f} s ({took / pages * 1000:.1f} ms a page)")

# A rating drops the kept orders: the next find scans and sorts anew.
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request("http://127.0.0.1:8010" + path, data=data, method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as r:
        r.read()
misses, hits = [], []
for movie in range(1, 8):
    call("POST", "/api/auth/rating", {"movie": movie, "rating": 5})
    for times in (misses, hits):
        start = time.monotonic()
        call("GET", "/api/auth/movies?ordering=-score&limit=20")
        times.append(time.monotonic() - start)
median = lambda xs: sorted(xs)[len(xs) // 2] * 1000
print(f"the first find after a rating: {median(misses):.1f} ms; the next: {median(hits):.1f} ms (medians of 7)")
EOF
echo "stack RSS after the warm-up: $new_rss kB; after the finds: $(rss) kB"
if [ -n "${old_rss:-}" ]; then
  echo "OLD_MOVIES after the same warm-up: $old_rss kB: $(awk -v a="$new_rss" -v b="$old_rss" 'BEGIN {printf "%+.1f %%", (a - b) * 100 / b}')"
fi
