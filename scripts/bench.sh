#!/bin/sh
# Runs every benchmark, or the one named: scripts/bench.sh BUILD [NAME]
set -eu
BUILD=$1
NAME=${2:-}
ALL="local_writes sync net capi import workloads growth"
for b in ${NAME:-$ALL}; do
  if [ ! -x "$BUILD/bench/$b" ]; then echo "no benchmark named $b (have: $ALL)" >&2; exit 2; fi
  (cd "$BUILD/bench" && "./$b")
done
