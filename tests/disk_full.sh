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
fail() { echo "FAIL: $*"; exit 1; }

"$T" init "$fs/a" > /dev/null 2>&1 || fail "init on an empty disk"
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
"$T" put "$fs/a" c after v=1 || fail "a write after space was freed"
"$T" init "$fs/b" > /dev/null 2>&1 || fail "init after space was freed"
"$T" check "$fs/a" > /dev/null || fail "check at the end"
rm -f "$big"
echo "disk full: ok"
