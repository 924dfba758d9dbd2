# Shared by the bench scripts (sourced, not run).

# The median of the numbers in "$1" (separated by spaces); empty if none.
median() {
  echo "$1" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}

# The per-address limits raised (and the per-user write quota off): every
# load script sends everything from one address (README, "Benchmarks").
limits=(AUTH_LOGIN_MAX_FAILURES=1000000 AUTH_LOGIN_MAX_FAILURES_PER_USER=1000000 AUTH_HASH_QUEUE=100000
  GATEWAY_AUTH_PER_MINUTE=100000000 GATEWAY_AUTH_BURST=100000000 GATEWAY_AUTH_CONCURRENCY=100000 CATALOG_WRITE_QUOTA=0)
