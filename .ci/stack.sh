# Sourced by the CI scripts that need the one-command stack running:
# `start_stack MOVIES_BINARY [VAR=value ...]` starts it on an ephemeral
# port of 127.0.0.1 (embedded store in a temporary folder, metrics off),
# sets `base` to its URL, waits for it, and stops it when the script ends,
# printing its log's tail if the script failed.
start_stack() {
  local bin=$1; shift
  stack_work=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base=http://127.0.0.1:$port
  (cd "$stack_work" && exec env RUST_LOG=warn AUTH_METRICS_LISTEN=off CATALOG_METRICS_LISTEN=off GATEWAY_METRICS_LISTEN=off \
    AUTH_LISTEN=127.0.0.1:0 CATALOG_LISTEN=127.0.0.1:0 "$@" \
    "$bin" --gateway-listen "127.0.0.1:$port" 2>"$stack_work/stack.log") &
  stack_pid=$!
  trap stop_stack EXIT
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$base/healthz" && return 0; sleep 0.1; done
  echo "the stack did not answer at $base" >&2
  return 1
}

stop_stack() {
  local status=$?
  kill "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then echo "--- the stack's log (last 50 lines)"; tail -n 50 "$stack_work/stack.log"; fi
  rm -rf "$stack_work"
}
