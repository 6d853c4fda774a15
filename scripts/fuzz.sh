#!/bin/sh
# Runs fuzz targets for a while each on a copy of its corpus and prints how many inputs
# each ran: scripts/fuzz.sh BUILD [SECONDS [TARGET...]]
set -eu
BUILD=$1
SECS=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
TARGETS=${*:-field_state wire secure beacon session import}
summary=""
for t in $TARGETS; do
  work=$(mktemp -d)
  cp fuzz/corpus/$t/* "$work/"
  log="$work.log"
  "$BUILD/fuzz/${t}_fuzz" -max_total_time="$SECS" -max_len=4096 -print_final_stats=1 "$work" \
    2>"$log" || { tail -40 "$log"; echo "$t: FAILED (the crashing input is above)"; exit 1; }
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  summary="$summary$t: $runs inputs in ${SECS} s, no failure\n"
  echo "$t: $runs inputs; new inputs are in $work; copy interesting ones to fuzz/corpus/$t/"
done
printf "%b" "$summary"
