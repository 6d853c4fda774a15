#!/bin/sh
# `make demo`: what Tandem can do today, run for real.
set -eu
BUILD=${1:-build}
T="$BUILD/tandem"
WORK=$(mktemp -d /tmp/tandem-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== Two in-memory replicas: concurrent edits, merge, conflicts =="
"$BUILD/tandem_demo"

echo
echo "== A durable replica on disk, driven from the shell =="
run() { echo "\$ tandem $*"; "$T" "$@"; }
run init "$WORK/shop"
run put "$WORK/shop" products p1 'name="Espresso cup"' price=4.5
run incr "$WORK/shop" products p1 stock 20
run add "$WORK/shop" products p1 tags '"ceramic"'
run get "$WORK/shop" products p1
run incr "$WORK/shop" products p1 stock -3
run changes "$WORK/shop"
run backup "$WORK/shop" "$WORK/backup"
run restore "$WORK/backup" "$WORK/restored"
run dump "$WORK/restored"
run check "$WORK/restored"
echo
echo "Sync between devices over the network (tandem serve/sync) is the next milestone."
