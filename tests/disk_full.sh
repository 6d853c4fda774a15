#!/bin/sh
# A full disk, on a 2 MiB tmpfs: a write that does not fit fails with a message naming
# the cause, the replica stays readable, consistent and writable once space is freed;
# `init` on the full disk fails cleanly (no SIGBUS) and leaves nothing that a second
# `init` would refuse. Needs to mount a tmpfs: as root, or in a user namespace
# (unshare); where neither works it says so and is reported as skipped (77).
#   disk_full.sh TANDEM
set -eu
T="$1"
if [ "${TANDEM_DISK_FULL_INNER:-}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1k tmpfs /mnt 2>/dev/null; then
    umount /mnt
    TANDEM_DISK_FULL_INNER=1 exec sh "$0" "$@"
  fi
  if unshare -rm true 2>/dev/null; then
    TANDEM_DISK_FULL_INNER=1 exec unshare -rm sh "$0" "$@"
  fi
  echo "SKIPPED: cannot mount a small filesystem here (not root, no user namespaces)"
  exit 77
fi
fs=$(mktemp -d)
mount -t tmpfs -o size=2m tmpfs "$fs"
trap 'umount "$fs"; rmdir "$fs"' EXIT
serve=""
fail() { echo "FAIL: $*"; exit 1; }

"$T" init "$fs/a" > /dev/null 2>&1 || fail "init on an empty disk"
# A peer on another disk, paired with a while there is room.
peer=$(mktemp -d)
trap 'kill $serve 2>/dev/null && wait $serve 2>/dev/null; umount "$fs"; rmdir "$fs"; rm -rf "$peer"' EXIT
"$T" init "$peer/b" > /dev/null 2>&1
"$T" serve "$fs/a" --listen 127.0.0.1:0 2> "$peer/a.log" &
serve=$!
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$fs/a/daemon.json" 2>/dev/null || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || fail "the daemon did not start"
"$T" invite "$fs/a" --address "$addr" 2> /dev/null | "$T" join "$peer/b" - 2> /dev/null
"$T" sync "$peer/b" > /dev/null 2>&1 || fail "pairing"
dd if=/dev/zero of="$fs/ballast" bs=64k count=8 2> /dev/null   # freed later
big="$fs/../value.$$.json"
python3 -c "print('\"' + 'y' * 300000 + '\"')" > "$big"
n=0
while "$T" put "$fs/a" c "r$n" "v=@$big" 2> "$fs/../err.$$"; do
  n=$((n + 1))
  [ $n -lt 50 ] || fail "the disk never filled"
done
err=$(cat "$fs/../err.$$")
rm -f "$fs/../err.$$"
echo "after $n writes: $err"
case "$err" in *"no space left on the disk"*) ;; *) fail "the error does not name the full disk: $err" ;; esac
[ $n -gt 0 ] || fail "nothing fitted"
"$T" check "$fs/a" > /dev/null || fail "check after the failed write"
"$T" get "$fs/a" c r0 > /dev/null || fail "an earlier record is gone"

# A sync into the full disk ends that session cleanly; the daemon keeps running.
"$T" put "$peer/b" c from-b "v=@$big" > /dev/null 2>&1
if "$T" sync "$peer/b" --peer "$addr" > /dev/null 2>&1; then fail "a sync into a full disk succeeded"; fi
kill -0 $serve 2> /dev/null || fail "the daemon died receiving a sync into a full disk"
grep -q "no space left on the disk" "$peer/a.log" || fail "the daemon did not say the disk is full"

# init on the full disk: an error, not a crash, and no leftovers.
set +e
"$T" init "$fs/b" > /dev/null 2> "$fs/../err.$$"
rc=$?
set -e
[ $rc -eq 1 ] || fail "init on a full disk exited $rc: $(cat "$fs/../err.$$")"
rm -f "$fs/../err.$$"
[ ! -e "$fs/b" ] || [ -z "$(ls -A "$fs/b")" ] || fail "init left files behind: $(ls -A "$fs/b")"

# Space is freed: everything works again.
rm "$fs/ballast"
"$T" sync "$peer/b" --peer "$addr" > /dev/null 2>&1 || fail "the sync after space was freed"
"$T" get "$fs/a" c from-b > /dev/null || fail "the peer's write did not arrive once there was room"
"$T" put "$fs/a" c after v=1 || fail "a write after space was freed"
"$T" init "$fs/b" > /dev/null 2>&1 || fail "init after space was freed"
"$T" check "$fs/a" > /dev/null || fail "check at the end"
rm -f "$big"

# An import that fills the disk says how far it got, and that much is there.
rows="$fs/../rows.$$.jsonl"
python3 -c "
for i in range(40000): print('{\"id\":\"i%d\",\"s\":\"%s\"}' % (i, 'z' * 100))" > "$rows"
set +e
"$T" import "$fs/a" items "$rows" > /dev/null 2> "$fs/../err.$$"
rc=$?
set -e
err=$(cat "$fs/../err.$$")
rm -f "$fs/../err.$$" "$rows"
[ $rc -eq 1 ] || fail "an import into a full disk exited $rc: $err"
case "$err" in *"no space left on the disk"*"rows imported before line"*"stay"*) ;;
  *) fail "the import's error does not say how far it got: $err" ;; esac
kept=$(echo "$err" | sed -n 's/.*(the \([0-9]*\) rows imported before line.*/\1/p')
[ "$("$T" ls "$fs/a" items | wc -l)" = "$kept" ] || fail "the import kept other than $kept rows"
echo "import: $err"
"$T" check "$fs/a" > /dev/null || fail "check after the import"
echo "disk full: ok"
