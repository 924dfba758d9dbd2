# Shared by the bench scripts (sourced, not run).

# The median of the numbers in "$1" (separated by spaces); empty if none.
median() {
  echo "$1" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}
