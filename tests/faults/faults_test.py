#!/usr/bin/env python3
"""I/O errors, short writes and full disks on a replica's small files and backups.

Each case runs a real `tandem` command with faultfs.so preloaded, failing one kind of
operation (write, short write, fsync, rename, link) on the files whose path contains a
given string, and checks that:
  - the command fails (non-zero exit) with one line naming the file and the cause;
  - nothing half-written is left: no key file, invite, backup or replica that is
    partial, and no temporary file;
  - the replica involved still opens and passes `tandem check`;
  - the same command succeeds once the fault is gone.

Usage: faults_test.py TANDEM_BIN FAULTFS_SO
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TANDEM, FAULTFS = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
failures = []


def run(args, fault=None, check=False, **kw):
    env = dict(os.environ)
    if fault:
        env["LD_PRELOAD"] = FAULTFS + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
        # Under AddressSanitizer the runtime is not first in the list any more.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        for k, v in fault.items():
            env["FAULTFS_" + k.upper()] = str(v)
    r = subprocess.run([TANDEM] + args, env=env, capture_output=True, text=True, timeout=60, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"tandem {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def expect_clean_failure(r, label, must_name):
    """A non-zero exit with one line of error naming `must_name` and a cause."""
    err = r.stderr.strip()
    expect(r.returncode != 0, f"{label}: exit {r.returncode}, expected a failure")
    expect(err.count("\n") == 0 and err.startswith("tandem: "), f"{label}: not one line: {err!r}")
    expect(must_name in err, f"{label}: message does not name {must_name}: {err!r}")
    causes = ("input/output error", "no space left on", "no progress")
    expect(any(c in err.lower() for c in causes), f"{label}: message gives no cause: {err!r}")


def leftovers(d):
    """Temporary files or directories (ours start with a dot) anywhere under d."""
    found = []
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            if n.startswith(".") and (".tmp." in n or ".backup." in n or ".restoring." in n):
                found.append(os.path.join(root, n))
    return found


def replica_ok(d, label, records=None):
    r = run(["check", d])
    expect(r.returncode == 0, f"{label}: check {d} failed: {r.stderr.strip()}")
    if records is not None:
        r = run(["dump", d])
        got = sum(1 for line in r.stdout.splitlines() if '"collection":"items"' in line)
        expect(got == records, f"{label}: {d} holds {got} records, expected {records}")


def dead_pid():
    """A process id no process has now."""
    for pid in range(999999, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
    raise AssertionError("no free pid")


FAULTS = [
    {"op": "write"},
    {"op": "write", "errno": "ENOSPC"},
    {"op": "short"},
    {"op": "fsync"},
]


def case_init(base):
    # identity.key is created once (published by link), group.key and group.root
    # replaced (rename).
    for name, publish in (("identity.key", "link"), ("group.key", "rename"),
                          ("group.root", "rename")):
        for f in FAULTS + [{"op": publish}]:
            label = f"init, {f} on {name}"
            d = os.path.join(base, "init")
            r = run(["init", d], fault=dict(f, match=name))
            expect_clean_failure(r, label, name)
            if f.get("errno") == "ENOSPC" or f["op"] == "short":
                expect("No space left on device" in r.stderr, f"{label}: {r.stderr!r}")
            # Nothing left that a second init would refuse.
            left = os.listdir(d) if os.path.exists(d) else []
            expect(not left, f"{label}: left {left}")
            run(["init", d], check=True)
            replica_ok(d, label)
            shutil.rmtree(d)


def case_invite_and_join(base):
    a, b = os.path.join(base, "a"), os.path.join(base, "b")
    run(["init", a], check=True)
    run(["init", b], check=True)
    for f in FAULTS + [{"op": "rename"}]:
        label = f"invite, {f}"
        r = run(["invite", a], fault=dict(f, match="/invites/"))
        expect_clean_failure(r, label, "invites")
        inv = os.path.join(a, "invites")
        left = os.listdir(inv) if os.path.isdir(inv) else []
        expect(not left, f"{label}: left {left}")
    code = run(["invite", a], check=True).stdout.strip()
    for f in FAULTS + [{"op": "rename"}]:
        label = f"join, {f}"
        r = run(["join", b, code], fault=dict(f, match="join.code"))
        expect_clean_failure(r, label, "join.code")
        expect(not os.path.exists(os.path.join(b, "join.code")), f"{label}: join.code left")
        expect(not leftovers(b), f"{label}: left {leftovers(b)}")
        r = run(["join", b, "--cancel"])
        expect(r.returncode != 0 and "no pending join" in r.stderr, f"{label}: {r.stderr!r}")
    # What a killed process left (a temporary file that may hold a key) is swept.
    stale = os.path.join(b, ".join.code.tmp.%d.0" % dead_pid())
    open(stale, "w").write("half a code")
    run(["join", b, code], check=True)
    expect(not os.path.exists(stale), "a dead process's temporary file was not swept")
    replica_ok(a, "invite")
    replica_ok(b, "join")


def every_fault_leaves_nothing(base, command, source, target, after=lambda label: None):
    """`tandem COMMAND SOURCE TARGET` (backup or restore) under every fault on the data
    copy, on each key file, and on publishing the directory: a clean failure that leaves
    no TARGET and no temporary; `after(label)` checks more after each."""
    name = os.path.basename(target)
    tmp = ".%s.%s." % (name, "backup" if command == "backup" else "restoring")
    cases = [(f, match, named) for match, named in
             ((tmp, name), ("identity.key", "identity.key"), ("group.key", "group.key"),
              ("group.root", "group.root"))
             for f in FAULTS] + [({"op": "rename"}, tmp, name)]
    for f, match, named in cases:
        label = f"{command}, {f} on {match}"
        r = run([command, source, target], fault=dict(f, match=match))
        expect_clean_failure(r, label, named)
        expect(not os.path.exists(target), f"{label}: {target} exists after a failed {command}")
        expect(not leftovers(base), f"{label}: left {leftovers(base)}")
        after(label)


def case_backup_restore(base):
    a = os.path.join(base, "src")
    run(["init", a], check=True)
    for i in range(200):
        run(["put", a, "items", f"r{i}", f"n={i}", "blob=" + json.dumps("x" * 2000)], check=True)
    bk = os.path.join(base, "bk")
    every_fault_leaves_nothing(base, "backup", a, bk, lambda label: replica_ok(a, label, 200))
    stale = os.path.join(base, ".bk.backup.%d" % dead_pid())
    os.mkdir(stale)
    open(os.path.join(stale, "identity.key"), "w").write("a key")
    run(["backup", a, bk], check=True)
    expect(not os.path.exists(stale), "a killed backup's directory was not swept")

    dst = os.path.join(base, "dst")
    every_fault_leaves_nothing(base, "restore", bk, dst)
    run(["restore", bk, dst], check=True)
    replica_ok(dst, "restore", records=200)
    expect(run(["status", dst]).returncode == 0, "restored replica has no usable identity")
    shutil.rmtree(dst)

    # An existing empty directory (a mount point, say) is used as it is: the backup is
    # built inside it, and a failure leaves it empty, with its own permissions.
    pre = os.path.join(base, "pre")
    os.mkdir(pre, 0o700)
    for f in FAULTS + [{"op": "rename"}]:
        label = f"backup into an existing directory, {f}"
        r = run(["backup", a, pre], fault=dict(f, match="/pre/.backup."))
        expect_clean_failure(r, label, "pre")
        expect(os.listdir(pre) == [], f"{label}: left {os.listdir(pre)}")
    run(["backup", a, pre], check=True)
    expect(sorted(os.listdir(pre)) == ["BACKUP", "data.mdb", "group.key", "group.root", "identity.key"],
           f"backup into an existing directory holds {sorted(os.listdir(pre))}")
    expect(os.stat(pre).st_mode & 0o777 == 0o700, "the directory's permissions changed")
    inplace = os.path.join(base, "inplace")
    os.mkdir(inplace)
    r = run(["restore", pre, inplace], fault={"op": "write", "match": "/inplace/.restoring."})
    expect_clean_failure(r, "restore into an existing directory", "inplace")
    expect(os.listdir(inplace) == [], f"restore into an existing directory left "
           f"{os.listdir(inplace)}")
    run(["restore", pre, inplace], check=True)
    replica_ok(inplace, "restore into an existing directory", records=200)

    # A backup whose key file was damaged after it was made: refused, nothing made.
    for name, cut in (("identity.key", 10), ("group.key", 5), ("group.root", 5)):
        broken = os.path.join(base, "broken-" + name)
        shutil.copytree(bk, broken)
        with open(os.path.join(broken, name), "r+b") as fh:
            fh.truncate(cut)
        r = run(["restore", broken, dst])
        err = r.stderr.strip()
        expect(r.returncode != 0 and name in err and err.count("\n") == 0,
               f"restore of a damaged {name}: {r.returncode} {err!r}")
        expect(not os.path.exists(dst), f"restore of a damaged {name} made {dst}")


def case_replica_writes(base):
    a = os.path.join(base, "w")
    run(["init", a], check=True)
    run(["put", a, "items", "kept", "n=1"], check=True)
    for f in FAULTS:
        label = f"put, {f} on data.mdb"
        r = run(["put", a, "items", "lost", "n=2"], fault=dict(f, match="/w/data.mdb"))
        expect_clean_failure(r, label, "")
        replica_ok(a, label, records=1)
    run(["put", a, "items", "second", "n=2"], check=True)
    replica_ok(a, "put after faults", records=2)


def case_status_file(base, skip=0):
    # A daemon that cannot write daemon.json keeps syncing and says so; one that wrote
    # it before (skip: the writes that succeed first) leaves no status that passes for
    # the current one.
    a, b = os.path.join(base, f"sa{skip}"), os.path.join(base, f"sb{skip}")
    run(["init", a], check=True)
    run(["init", b], check=True)
    code = run(["invite", a], check=True).stdout.strip()
    run(["join", b, code], check=True)
    env = dict(os.environ, LD_PRELOAD=FAULTFS, FAULTFS_MATCH="daemon.json", FAULTFS_OP="short",
               FAULTFS_SKIP=str(skip),
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    log = open(os.path.join(base, "serve.log"), "w+")
    p = subprocess.Popen([TANDEM, "serve", a, "--listen", "127.0.0.1:0"], env=env,
                         stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        addr = None
        for _ in range(200):
            log.seek(0)
            text = log.read()
            for line in text.splitlines():
                if "listening on" in line:
                    addr = line.split("listening on")[1].split()[0]
            if addr and "cannot update the status file" in text:
                break
            time.sleep(0.05)
        expect(addr is not None, f"serve did not say where it listens: {text!r}")
        expect("cannot update the status file" in text, f"serve did not report: {text!r}")
        run(["put", a, "items", "x", "n=1"], check=True)
        r = run(["sync", b, "--peer", addr or "127.0.0.1:1"])
        expect(r.returncode == 0, f"sync with a daemon that cannot write status: {r.stderr}")
        st = run(["status", a])
        expect("running, but it could not write its status file" in st.stdout, st.stdout)
        expect(not leftovers(a), f"status file: left {leftovers(a)}")
    finally:
        p.terminate()
        p.wait(timeout=10)
        log.close()
    replica_ok(b, "status file", records=1)


def case_status_file_written_before(base):
    case_status_file(base, skip=1)


def main():
    probe = run(["--help"], fault={"op": "write", "match": "/nonexistent-path/"})
    if probe.returncode != 0 or "preload" in probe.stderr:
        print("faultfs cannot be preloaded:", probe.stderr.strip())
        return 1
    for case in (case_init, case_invite_and_join, case_backup_restore, case_replica_writes,
                 case_status_file, case_status_file_written_before):
        base = tempfile.mkdtemp(prefix="tandem-faults-")
        try:
            n = len(failures)
            case(base)
            print(f"{case.__name__}: {'ok' if len(failures) == n else 'FAILED'}")
        finally:
            shutil.rmtree(base, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("every fault was reported and left nothing behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
