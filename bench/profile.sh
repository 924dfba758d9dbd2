#!/usr/bin/env bash
# Where a GET movies request's time goes on the one-command stack, as run by
# default (request logs at info, to a file as a deployment would keep them):
# wrk loads GET /api/auth/movies while `perf record` samples the process
# (cpu-clock, DWARF call graphs); inferno folds the stacks and draws them.
#
#   bash bench/profile.sh [seconds]
#   MOVIES=/path/to/movies LABEL=<commit> bash bench/profile.sh   # another build
#
# Writes bench/flamegraphs/get-movies-<commit>.svg and prints the share of
# the samples under the frames worth questioning (logging, spans, the
# in-process gRPC call, the ETag, the token check, allocation, the kernel's
# socket writes). Needs `perf` (Debian: linux-perf), `wrk`, and inferno
# (`cargo install inferno`); the per-address limits are raised, as in every
# load run from one address.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-6}
for tool in perf wrk inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "bench/profile.sh needs $tool" >&2; exit 1; }
done
cargo build --release -q -p movies -p bench --bin movies --bin loadgen
bin=$PWD/target/release
movies=${MOVIES:-$bin/movies}
commit=${LABEL:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' || echo -dirty)}
out=bench/flamegraphs/get-movies-$commit.svg
mkdir -p bench/flamegraphs
work=$(mktemp -d)
stack=""
cleanup() { [ -n "$stack" ] && kill "$stack" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

. bench/lib.sh
(cd "$work" && exec env "${limits[@]}" "$movies" --gateway-listen 127.0.0.1:8000 2>"$work/stack.log") & stack=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:8000/healthz && break; sleep 0.1; done
token=$("$bin/loadgen" setup --url http://127.0.0.1:8000)
wrk -t2 -c64 -d"$((seconds + 4))s" -H "Authorization: Token $token" \
  http://127.0.0.1:8000/api/auth/movies >"$work/wrk.txt" &
wrk_pid=$!
sleep 2
perf record -q -F 999 -e cpu-clock -g --call-graph dwarf,16384 -p "$stack" \
  -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$wrk_pid"
grep -E 'Requests/sec' "$work/wrk.txt"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded.txt"
inferno-flamegraph --minwidth 0.05 --title "GET /api/auth/movies, one process, $commit" \
  <"$work/folded.txt" >"$out"
echo "wrote $out"
python3 - "$work/folded.txt" <<'EOF'
import re, sys
# The share of all samples with a frame matching each pattern on the stack.
patterns = {
    "request log line (tracing event)": r"^tracing_core::event::Event::dispatch",
    "  its write(2)": r"^__GI___libc_write|^ksys_write",
    "request span": r"^tracing::span::Span::(new|make_with)",
    "request id": r"^gateway::observe::request_id",
    "metrics": r"^platform::metrics::",
    "catalog call (in-process gRPC, or direct)": r"^proto::catalog::catalog_service_client|^<catalog_service::local::LocalCatalog",
    "  token check": r"credentials|live_token|digest_of|Tokens",
    "ETag": r"etag|sha2::",
    "JSON": r"^serde_json::",
    "allocation": r"^(_?mi_|mi_)",
    "socket writes (kernel)": r"^(__GI___writev|do_writev)$",
    "socket reads": r"TcpStream::poll_read",
}
total = 0
hits = dict.fromkeys(patterns, 0)
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    frames = stack.split(";")
    for name, pat in patterns.items():
        if any(re.search(pat, f) for f in frames):
            hits[name] += n
for name, n in hits.items():
    print(f"{100 * n / max(total, 1):5.1f}%  {name}")
EOF
