#!/usr/bin/env bash
# The platform against the Django REST framework + knox reference it
# replaces (bench/django: the original endpoints, DEBUG off, SQLite, served
# by gunicorn with 2×cores+1 workers of 4 threads), measured in one run by
# the same generator: GET movies (100 movies) and POST movie. Rounds
# interleave the two targets; each measurement gets a fresh store. The
# stack runs as a user runs it (cargo run --release, info logs into a
# file), with the per-address limits raised: all load comes from one
# address. The reference needs Python 3 and PyPI (a venv is made once, in
# ${XDG_CACHE_HOME:-~/.cache}/movies-django).
#
#   bash bench/django.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
cargo build --release -q -p movies -p bench --bin movies --bin loadgen
bin=$PWD/target/release
venv="${XDG_CACHE_HOME:-$HOME/.cache}/movies-django"
if ! "$venv/bin/python" -c 'import django, rest_framework, knox, gunicorn' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r bench/django/requirements.txt
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh
wait_for() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
rate_of() { awk '{print $1}' | tr -d '/s'; }

server=""
start() {
  rm -rf "$work/data" && mkdir -p "$work/data"
  case $1 in
    stack)
      (cd "$work" && exec env "${limits[@]}" "$bin/movies" --gateway-listen 127.0.0.1:8000 2>>"$work/stack.log") & server=$!
      pids+=("$server")
      wait_for http://127.0.0.1:8000/healthz ;;
    django)
      (cd bench/django && REFERENCE_DATA="$work/data" "$venv/bin/python" manage.py migrate --run-syncdb -v0)
      (cd bench/django && REFERENCE_DATA="$work/data" exec "$venv/bin/gunicorn" reference.wsgi \
        -b 127.0.0.1:8000 -w $(($(nproc) * 2 + 1)) -k gthread --threads 4 2>>"$work/django.log") & server=$!
      pids+=("$server")
      wait_for http://127.0.0.1:8000/api/auth/movies ;;
  esac
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; }

declare -A results
for round in $(seq 1 "$rounds"); do
  # Alternate which target goes first.
  targets="django stack"; [ $((round % 2)) = 0 ] && targets="stack django"
  for scenario in movies movie; do
    for target in $targets; do
      start "$target"
      out=$("$bin/loadgen" run --url http://127.0.0.1:8000 --scenario "$scenario" --seconds "$seconds")
      stop
      echo "round $round  $target $scenario: $out"
      results[$target-$scenario]+="$(echo "$out" | rate_of) "
    done
  done
done
echo "--- medians over $rounds rounds of $seconds s, 64 connections"
for scenario in movies movie; do
  d=$(median "${results[django-$scenario]}")
  s=$(median "${results[stack-$scenario]}")
  printf '%-7s django %8.0f req/s   stack %8.0f req/s   %.1fx\n' "$scenario" "$d" "$s" "$(echo "$s / $d" | bc -l)"
done
