#!/bin/sh
# `make demo`: what Tandem can do today, run for real.
set -eu
BUILD=${1:-build}
T="$BUILD/tandem"
WORK=$(mktemp -d /tmp/tandem-demo.XXXXXX)
SERVE_PID=
cleanup() {
  if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

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
echo "== Two devices over the network: pair, sync, live changes =="
run init "$WORK/warehouse"
echo "\$ tandem serve $WORK/shop --listen 127.0.0.1:0 &"
"$T" serve "$WORK/shop" --listen 127.0.0.1:0 2>"$WORK/serve.log" &
SERVE_PID=$!
i=0
until grep -q '"listen":"1' "$WORK/shop/daemon.json" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 500 ] || { cat "$WORK/serve.log"; exit 1; }; sleep 0.01
done
echo "\$ CODE=\$(tandem invite $WORK/shop)"
CODE=$("$T" invite "$WORK/shop" 2>/dev/null)
echo "$CODE"
run join "$WORK/warehouse" "$CODE"
run sync "$WORK/warehouse"
run get "$WORK/warehouse" products p1
run incr "$WORK/warehouse" products p1 stock 100
run sync "$WORK/warehouse" --peer "$(sed 's/.*"listen":"\([^"]*\)".*/\1/' "$WORK/shop/daemon.json")"
run get "$WORK/shop" products p1
run devices "$WORK/shop"
run status "$WORK/shop"
echo "(the shop's daemon log:)"
sed 's/^/    /' "$WORK/serve.log"
