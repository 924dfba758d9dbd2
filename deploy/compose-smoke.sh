#!/usr/bin/env bash
# Runs docker-compose.yml for real and checks what a user relies on:
#   1. `docker compose up --build --wait`, then a REST smoke test;
#   2. SIGKILL of each container's process (postgres, auth-service,
#      catalog-service, gateway), each back to healthy by its restart
#      policy, the smoke test passing after each;
#   3. `compose restart` of auth-service and catalog-service (SIGTERM):
#      each starts from the read-model snapshot it saved at stop (on its
#      service's snapshot volume), the smoke test passing;
#   4. `--scale auth-service=2 --scale catalog-service=2`: every replica
#      healthy, the smoke test passing (the gateway and catalog-service
#      resolve the service names to every replica);
#   5. `docker kill` of one replica of each: the others serve;
#   6. `down -v` (also on failure).
#
# Usage, from anywhere: deploy/compose-smoke.sh
# Needs Docker with compose v2, curl and python3; the SIGKILL checks need a
# Linux host where this user may signal the containers' processes (root, or
# sudo without a password). The database passwords (MOVIES_DB_PASSWORD,
# MOVIES_AUTH_DB_PASSWORD, MOVIES_CATALOG_DB_PASSWORD) come from the
# environment or .env, else random ones for this run. The REST API is
# published on 127.0.0.1:8000, which must be free.
set -euo pipefail
cd "$(dirname "$0")/.."

for v in MOVIES_DB_PASSWORD MOVIES_AUTH_DB_PASSWORD MOVIES_CATALOG_DB_PASSWORD; do
  if [ -z "${!v:-}" ] && [ -f .env ]; then
    printf -v "$v" '%s' "$(sed -n "s/^$v=//p" .env | tail -n1)"
  fi
  [ -n "${!v:-}" ] || printf -v "$v" '%s' "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  export "${v?}"
done
BASE=http://127.0.0.1:8000
C=(docker compose --project-name movies-smoke)

if curl -s -o /dev/null --max-time 2 "$BASE/healthz"; then
  echo "something already answers on $BASE: stop it first" >&2
  exit 1
fi
trap '"${C[@]}" down -v >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }

# POST $1 with JSON $2 (and token $3): prints "status body".
post() {
  local auth=()
  [ -n "${3:-}" ] && auth=(-H "Authorization: Token $3")
  curl -s --max-time 10 -w ' %{http_code}' -X POST "$BASE$1" \
    -H 'Content-Type: application/json' "${auth[@]}" -d "$2"
}

json() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().rsplit(' ',1)[0])$1)"; }

expect() { # expect STATUS ANSWER WHAT
  local status=${2##* }
  [ "$status" = "$1" ] || { echo "FAIL: $3: expected $1, got $2" >&2; exit 1; }
  echo "ok: $3 ($status)"
}

smoke() {
  local n a b movie
  n=$RANDOM$RANDOM
  a=$(post /api/auth/register "{\"username\":\"adder$n\",\"email\":\"a$n@example.com\",\"password\":\"password123\"}")
  expect 200 "$a" "register"
  local adder; adder=$(echo "$a" | json "['token']")
  b=$(post /api/auth/register "{\"username\":\"rater$n\",\"email\":\"r$n@example.com\",\"password\":\"password123\"}")
  local rater; rater=$(echo "$b" | json "['token']")
  expect 200 "$(post /api/auth/login "{\"username\":\"rater$n\",\"password\":\"password123\"}")" "login"
  movie=$(post /api/auth/movies '{"title":"Transformer","director":"XYZ"}' "$adder")
  expect 201 "$movie" "add a movie"
  local id; id=$(echo "$movie" | json "['id']")
  expect 201 "$(post /api/auth/rating "{\"movie\":$id,\"rating\":4}" "$rater")" "rate it"
  local detail; detail=$(curl -s --max-time 10 -H "Authorization: Token $adder" "$BASE/api/auth/movies/$id")
  echo "$detail" | grep -q '"rating_count":1' || { echo "FAIL: movie detail: $detail" >&2; exit 1; }
  echo "ok: the movie shows its rating"
  expect 401 "$(curl -s --max-time 10 -w ' %{http_code}' "$BASE/api/auth/movies")" "no token"
}

wait_healthy() { # wait_healthy SERVICE: seconds until every container of it is healthy
  local start=$SECONDS
  for _ in $(seq 1 240); do
    local all=1
    for c in $("${C[@]}" ps -q "$1"); do
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$c")" = healthy ] || all=0
    done
    [ "$all" = 1 ] && { echo $((SECONDS - start)); return 0; }
    sleep 0.5
  done
  echo "FAIL: $1 not healthy after 120 s" >&2
  "${C[@]}" ps >&2
  exit 1
}

sigkill() { # the container's main process, as a crash would end it
  local pid; pid=$(docker inspect -f '{{.State.Pid}}' "$1")
  if [ "$(id -u)" = 0 ]; then kill -9 "$pid"; else sudo -n kill -9 "$pid"; fi
}

step "up --build --wait"
start=$SECONDS
"${C[@]}" up --build -d --wait
echo "healthy after $((SECONDS - start)) s (image build included)"
"${C[@]}" ps --format '{{.Service}}: {{.Status}}'
smoke

for svc in postgres auth-service catalog-service gateway; do
  step "SIGKILL $svc's process"
  container=$("${C[@]}" ps -q "$svc" | head -n1)
  restarts=$(docker inspect -f '{{.RestartCount}}' "$container")
  sigkill "$container"
  sleep 1
  took=$(wait_healthy "$svc")
  echo "$svc healthy again ~$((took + 1)) s after the kill (restarts: $restarts -> $(docker inspect -f '{{.RestartCount}}' "$container"))"
  # Dependants may have seen it go: wait for the whole stack.
  "${C[@]}" up -d --wait >/dev/null
  smoke
done

step "compose restart (SIGTERM): each service starts from the snapshot it saved at stop"
"${C[@]}" restart auth-service catalog-service >/dev/null
"${C[@]}" up -d --wait >/dev/null
for svc in auth-service catalog-service; do
  line=$("${C[@]}" logs --no-log-prefix "$svc" 2>&1 | grep "started from its snapshot" | tail -n1)
  [ -n "$line" ] || { echo "FAIL: $svc did not start from a snapshot" >&2; "${C[@]}" logs "$svc" | tail -n 20 >&2; exit 1; }
  echo "ok: $svc: $line"
done
smoke

step "--scale auth-service=2 --scale catalog-service=2"
"${C[@]}" up -d --wait --scale auth-service=2 --scale catalog-service=2
for svc in auth-service catalog-service; do
  n=$("${C[@]}" ps -q "$svc" | wc -l)
  echo "$svc replicas healthy: $n"
  [ "$n" = 2 ] || { echo "FAIL: not two $svc replicas" >&2; exit 1; }
done
# Host names are resolved again every 5 s: let the clients find the new replicas.
sleep 6
for _ in 1 2 3; do smoke; done

step "docker kill one replica of auth-service and of catalog-service (a lost machine)"
docker kill "$("${C[@]}" ps -q auth-service | head -n1)" "$("${C[@]}" ps -q catalog-service | head -n1)" >/dev/null
# Out of rotation at their first failed call or health check (1 s).
sleep 2
for _ in 1 2 3; do smoke; done

step "down -v"
"${C[@]}" down -v
trap - EXIT
echo "compose smoke test passed"
