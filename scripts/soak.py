#!/usr/bin/env python3
"""`make soak MINUTES=N`: three live daemons under steady writes for N minutes.

Three devices (a mesh of `tandem serve` daemons on loopback) take writes all the time:
puts and counter increments on shared records, deletes, and new records. Every few
seconds something goes wrong on purpose: a daemon is killed with SIGKILL and restarted,
or stopped for a while (a partition) and started again. At the end the network heals and
the soak checks that every replica converged (equal `tandem dump`), that every counter
equals the sum of the increments made anywhere, that `tandem check` passes, and that the
daemons' memory and open files did not grow in the second half of the run. It prints a
table of resident memory and open files per minute. Exit 0 only if every check holds.

    python3 scripts/soak.py BUILD MINUTES [SEED]
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
MINUTES = float(sys.argv[2]) if len(sys.argv) > 2 else 5
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 1
T = os.path.abspath(os.path.join(BUILD, "tandem"))
WORK = tempfile.mkdtemp(prefix="tandem-soak.")
DEVICES = ["a", "b", "c"]
rng = random.Random(SEED)
daemons = {}
addresses = {}


def path(d):
    return os.path.join(WORK, d)


def tandem(*args, ok=(0,)):
    p = subprocess.run([T] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode not in ok:
        raise SystemExit("soak: `tandem %s` exited %d: %s" % (" ".join(map(str, args)),
                                                             p.returncode, p.stderr.strip()))
    return p


def start(d):
    status = os.path.join(path(d), "daemon.json")
    if os.path.exists(status):
        os.remove(status)
    listen = addresses.get(d, "127.0.0.1:0")
    peers = [x for dev, a in addresses.items() if dev != d for x in ("--peer", a)]
    log = open(os.path.join(WORK, d + ".log"), "a")
    daemons[d] = subprocess.Popen([T, "serve", path(d), "--listen", listen, "--timeout", "10"] +
                                  peers, stdout=log, stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            j = json.load(open(status))
            if j.get("running") and j.get("listen"):
                addresses[d] = j["listen"]
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise SystemExit("soak: daemon %s did not start; see %s.log" % (d, d))


def stop(d, sig=signal.SIGTERM):
    p = daemons.pop(d, None)
    if p:
        p.send_signal(sig)
        p.wait(30)


def usage(d):
    """(resident MB, open files) of d's daemon, or None."""
    p = daemons.get(d)
    if not p:
        return None
    try:
        rss = 0
        for line in open("/proc/%d/status" % p.pid):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        return rss, len(os.listdir("/proc/%d/fd" % p.pid))
    except OSError:
        return None


def main():
    print("soak: %g minutes, seed %d, work dir %s" % (MINUTES, SEED, WORK))
    for d in DEVICES:
        tandem("init", path(d))
    # Pair b and c with a, then run the mesh (every daemon dials the others).
    start("a")
    for d in ["b", "c"]:
        code = tandem("invite", path("a"), "--address", addresses["a"]).stdout.strip()
        tandem("join", path(d), code)
        tandem("sync", path(d))
    for d in ["b", "c"]:
        start(d)
    stop("a")
    start("a")

    increments = {}  # (record) -> total of increments made anywhere
    writes = 0
    samples = []  # (minute, {device: (rss, fds)})
    end = time.time() + MINUTES * 60
    next_fault = time.time() + 5
    next_sample = time.time()
    down = {}  # device -> time to start it again
    minute = 0
    while time.time() < end:
        d = rng.choice(DEVICES)
        r = "r%d" % rng.randrange(200)
        op = rng.random()
        if op < 0.5:
            n = rng.randrange(-5, 10)
            tandem("incr", path(d), "items", r, "count", n)
            increments[r] = increments.get(r, 0) + n
        elif op < 0.9:
            tandem("put", path(d), "items", r, 'by="%s"' % d, "n=%d" % writes)
        else:
            # Deletes keep counters' truth only for records never deleted: use others.
            tandem("put", path(d), "scratch", r, "n=%d" % writes)
            tandem("del", path(d), "scratch", r, ok=(0, 1))
        writes += 1
        now = time.time()
        for dev, when in list(down.items()):
            if now >= when:
                del down[dev]
                start(dev)
        if now >= next_fault:
            victim = rng.choice([x for x in DEVICES if x not in down])
            if rng.random() < 0.5:
                stop(victim, signal.SIGKILL)  # a crash, restarted at once
                start(victim)
            else:
                stop(victim)  # a partition of a few seconds
                down[victim] = now + rng.uniform(2, 8)
            next_fault = now + rng.uniform(3, 8)
        if now >= next_sample:
            samples.append((minute, {dev: usage(dev) for dev in DEVICES}))
            minute += 1
            next_sample += 60
    for dev in list(down):
        start(dev)
    samples.append((minute, {dev: usage(dev) for dev in DEVICES}))

    print("soak: %d writes; healing" % writes)
    deadline = time.time() + 120
    converged = False
    while time.time() < deadline:
        dumps = [tandem("dump", path(d)).stdout for d in DEVICES]
        if dumps[0] == dumps[1] == dumps[2]:
            converged = True
            break
        time.sleep(1)
    failures = []

    def check(what, cond):
        print(("  ok    " if cond else "  FAIL  ") + what)
        if not cond:
            failures.append(what)

    check("every replica converged (equal dumps)", converged)
    for d in DEVICES:
        got = {}
        for line in tandem("ls", path(d), "items").stdout.splitlines():
            rec = json.loads(line)
            got[rec["id"]] = rec.get("count", 0)
        bad = [r for r, n in increments.items() if got.get(r, 0) != n]
        check("%s: every counter equals the increments made anywhere (%d counters)" %
              (d, len(increments)), not bad)
        check("%s: tandem check passes" % d, tandem("check", path(d), ok=(0, 1)).returncode == 0)

    print("\n  minute  " + "  ".join("%-16s" % ("%s RSS MB / fds" % d) for d in DEVICES))
    for m, u in samples:
        print("  %6d  " % m + "  ".join(
            "%-16s" % ("%.1f / %d" % u[d] if u.get(d) else "-") for d in DEVICES))
    # Growth: the last sample against the one at half time, per device.
    if len(samples) >= 3:
        half = samples[len(samples) // 2][1]
        last = samples[-1][1]
        for d in DEVICES:
            if half.get(d) and last.get(d):
                check("%s: memory flat in the second half (%.1f -> %.1f MB)" %
                      (d, half[d][0], last[d][0]), last[d][0] <= half[d][0] * 1.25 + 4)
                check("%s: open files flat in the second half (%d -> %d)" %
                      (d, half[d][1], last[d][1]), last[d][1] <= half[d][1] + 8)
    for d in list(daemons):
        stop(d)
    print("soak: %s" % ("every check holds" if not failures else "%d failed" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    rc = 1
    try:
        rc = main()
    finally:
        for dev in list(daemons):
            stop(dev, signal.SIGKILL)
        if rc != 0:
            for dev in DEVICES:
                logp = os.path.join(WORK, dev + ".log")
                if os.path.exists(logp):
                    print("--- %s.log (end)" % dev)
                    print(open(logp).read()[-2000:])
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(rc)
