#!/bin/sh
# Runs each fuzz target for a while on a copy of its corpus: scripts/fuzz.sh BUILD [SECONDS]
set -eu
BUILD=$1
SECS=${2:-60}
for t in field_state wire secure beacon session; do
  work=$(mktemp -d)
  cp fuzz/corpus/$t/* "$work/"
  "$BUILD/fuzz/${t}_fuzz" -max_total_time="$SECS" -max_len=4096 "$work"
  echo "new inputs are in $work; copy interesting ones to fuzz/corpus/$t/"
done
