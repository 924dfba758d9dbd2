#!/usr/bin/env bash
# schemathesis against the one-command stack: every check but
# positive_data_acceptance (which counts DRF's 400 for a taken username or
# an unknown movie as a fault), authenticated, in negative and positive
# modes. Logout, logoutall, erase and DELETE /tokens/{id} (its stateful
# phase links the list's ids to it) end the token (or the user) they are
# given, so they run apart, with a token of their own. A fixed seed keeps CI reproducible; run
# with SEED=random locally to explore further. Fails on any finding.
# Two of the generator's own health checks are off, `filter_too_much` and
# `too_slow`: the register body's email pattern makes it discard many
# candidates (it failed CI once that way), and a loaded machine makes it
# slow; neither says anything of the API.
#
#   bash .ci/schemathesis.sh MOVIES_BINARY [examples per operation]
set -euo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
examples=${2:-200}
seed=${SEED:-20261125}
venv="${XDG_CACHE_HOME:-$HOME/.cache}/movies-schemathesis"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    (apt-get install -y -q python3-venv >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-venv >/dev/null 2>&1))
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi

source "$(dirname "$0")/stack.sh"
start_stack "$bin" GATEWAY_AUTH_PER_MINUTE=100000000 GATEWAY_AUTH_BURST=100000000 GATEWAY_AUTH_CONCURRENCY=100000 CATALOG_WRITE_QUOTA=0 AUTH_LOGIN_MAX_FAILURES=1000000 \
  AUTH_LOGIN_MAX_FAILURES_PER_USER=1000000

token() { # a new user's token
  curl -sf "$base/api/auth/register" -H 'Content-Type: application/json' \
    -d "{\"username\": \"$1\", \"email\": \"$1@example.com\", \"password\": \"s3cret-pass\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
# A movie with id 1, so that item, rating and filter operations reach past 404.
owner=$(token schemathesis-owner)
curl -sf -o /dev/null "$base/api/auth/movies" -H "Authorization: Token $owner" \
  -H 'Content-Type: application/json' -d '{"title": "Seed", "director": "D"}'

run() { # TOKEN [filter options]
  local t=$1; shift
  seed_opt=(--seed "$seed"); [ "$seed" = random ] && seed_opt=()
  "$venv/bin/schemathesis" run "$base/api/openapi.json" \
    -H "Authorization: Token $t" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$examples" "${seed_opt[@]}" --workers 2 \
    --suppress-health-check filter_too_much,too_slow \
    --generation-allow-x00 true --request-timeout 10 "$@"
}
run "$(token schemathesis-main)" --exclude-path-regex 'logout|erase|/tokens/'
run "$(token schemathesis-logout)" --include-path-regex 'logout|erase|/tokens/'
echo "schemathesis: no finding"
