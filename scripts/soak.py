#!/usr/bin/env python3
"""`make soak MINUTES=N [NODES=10]`: live daemons under steady writes for N minutes.

NODES devices run `tandem serve` on loopback in a topology that changes every third of
the run: a line, then a star, then a mesh (every daemon dials the others). Several
writer processes write all the time, each through a device it picks at random: puts of
its own field in shared records (an increasing number per writer), counter increments,
set additions, and puts then deletes of scratch records. Every few seconds something goes
wrong on purpose: a daemon is killed with SIGKILL and restarted, or stopped for a while
(a partition) and started again.

At the end the network heals and the soak checks that:
  - every replica converged (equal `tandem dump`);
  - every acknowledged write is there (a write whose command exited 0): each writer's
    field holds the last number it wrote there or a later one it tried, every set element
    added is present, and every counter equals the sum of the increments made anywhere;
  - `tandem check` passes everywhere;
  - anonymous resident memory and open files of each daemon did not grow in the mesh
    phase.
It prints resident memory and open files per minute. Exit 0 only if every check holds.

    python3 scripts/soak.py BUILD MINUTES [NODES [SEED]]
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
MINUTES = float(sys.argv[2]) if len(sys.argv) > 2 else 5
NODES = int(sys.argv[3]) if len(sys.argv) > 3 else 10
SEED = int(sys.argv[4]) if len(sys.argv) > 4 else 1
WRITERS = 3
RECORDS = 100
T = os.path.abspath(os.path.join(BUILD, "tandem"))
WORK = tempfile.mkdtemp(prefix="tandem-soak.")
DEVICES = ["n%d" % i for i in range(NODES)]
TOPOLOGIES = ["line", "star", "mesh"]
rng = random.Random(SEED)
daemons = {}
addresses = {}
topology = "line"


def path(d):
    return os.path.join(WORK, d)


def tandem(*args, ok=(0,)):
    p = subprocess.run([T] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode not in ok:
        raise SystemExit("soak: `tandem %s` exited %d: %s" % (" ".join(map(str, args)),
                                                             p.returncode, p.stderr.strip()))
    return p


def neighbours(d):
    """Whom d dials in the current topology (each link is dialled from one end)."""
    i = DEVICES.index(d)
    if topology == "line":
        return DEVICES[i + 1:i + 2]
    if topology == "star":
        return DEVICES[1:] if i == 0 else []
    return DEVICES[i + 1:]


def start(d):
    status = os.path.join(path(d), "daemon.json")
    if os.path.exists(status):
        os.remove(status)
    listen = addresses.get(d, "127.0.0.1:0")
    peers = [x for p in neighbours(d) if p in addresses for x in ("--peer", addresses[p])]
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
    """(anonymous resident MB, open files) of d's daemon, or None. Anonymous memory
    (RssAnon) is the process's own; the pages of data.mdb that LMDB maps count in VmRSS
    too, and grow with the data, but belong to the page cache."""
    p = daemons.get(d)
    if not p:
        return None
    try:
        rss = 0
        for line in open("/proc/%d/status" % p.pid):
            if line.startswith("RssAnon:"):
                rss = int(line.split()[1]) / 1024
        return rss, len(os.listdir("/proc/%d/fd" % p.pid))
    except OSError:
        return None


class Writer(threading.Thread):
    """One writer process after another, each through a device picked at random; keeps
    what was acknowledged (the command exited 0)."""

    def __init__(self, k, end):
        super().__init__(daemon=True)
        self.k, self.end = k, end
        self.rng = random.Random(SEED * 1000 + k)
        self.field = "w%d" % k
        self.acked = {}      # record -> last number acknowledged in self.field
        self.tried = {}      # record -> every number tried (acknowledged or not)
        self.elements = set()  # (record, element) acknowledged
        self.increments = {}   # record -> sum of acknowledged increments
        self.writes = 0
        self.failed = 0
        self.error = None

    def run(self):
        try:
            seq = 0
            while time.time() < self.end:
                d = self.rng.choice(DEVICES)
                r = "r%d" % self.rng.randrange(RECORDS)
                op = self.rng.random()
                if op < 0.45:
                    seq += 1
                    self.tried.setdefault(r, set()).add(seq)
                    p = tandem("put", path(d), "items", r, "%s=%d" % (self.field, seq), ok=(0, 1))
                    if p.returncode == 0:
                        self.acked[r] = seq
                elif op < 0.75:
                    n = self.rng.randrange(-5, 10)
                    p = tandem("incr", path(d), "items", r, "count", n, ok=(0, 1))
                    if p.returncode == 0:
                        self.increments[r] = self.increments.get(r, 0) + n
                elif op < 0.9:
                    e = "%s-%d" % (self.field, self.writes)
                    p = tandem("add", path(d), "items", r, "tags", json.dumps(e), ok=(0, 1))
                    if p.returncode == 0:
                        self.elements.add((r, e))
                else:
                    # Deletes only in their own collection: a delete ends a record's
                    # counters and sets, which would make the checks above guesswork.
                    tandem("put", path(d), "scratch", r, "n=%d" % self.writes, ok=(0, 1))
                    p = tandem("del", path(d), "scratch", r, ok=(0, 1))
                self.writes += 1
                self.failed += p.returncode != 0
        except BaseException as e:  # noqa: B902 - reported by the main thread
            self.error = e


def main():
    global topology
    print("soak: %g minutes, %d nodes, %d writers, seed %d, work dir %s" %
          (MINUTES, NODES, WRITERS, SEED, WORK))
    for d in DEVICES:
        tandem("init", path(d))
    # Every device joins n0's group, then the daemons run in the first topology.
    start(DEVICES[0])
    for d in DEVICES[1:]:
        code = tandem("invite", path(DEVICES[0]), "--address",
                      addresses[DEVICES[0]]).stdout.strip()
        tandem("join", path(d), code)
        tandem("sync", path(d))
    stop(DEVICES[0])
    for d in reversed(DEVICES):  # dialled ends first, so their addresses are known
        start(d)

    samples = []  # (minute, {device: (rss, fds)})
    begin = time.time()
    end = begin + MINUTES * 60
    writers = [Writer(k, end) for k in range(WRITERS)]
    for w in writers:
        w.start()
    next_fault = time.time() + 5
    next_sample = time.time()
    down = {}  # device -> time to start it again
    minute = 0
    faults = 0
    phase = 0
    while time.time() < end:
        time.sleep(0.2)
        now = time.time()
        new_phase = min(int((now - begin) / (MINUTES * 60) * 3), 2)
        if new_phase != phase:
            phase = new_phase
            topology = TOPOLOGIES[phase]
            print("soak: minute %.1f: topology %s" % ((now - begin) / 60, topology))
            for d in reversed(DEVICES):
                if d in down:
                    continue
                stop(d)
                start(d)
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
            faults += 1
            next_fault = now + rng.uniform(3, 8)
        if now >= next_sample:
            samples.append((minute, {dev: usage(dev) for dev in DEVICES}))
            minute += 1
            next_sample += 60
    for w in writers:
        w.join()
    for dev in list(down):
        start(dev)
    samples.append((minute, {dev: usage(dev) for dev in DEVICES}))
    writes = sum(w.writes for w in writers)
    refused = sum(w.failed for w in writers)
    print("soak: %d writes (%d not acknowledged), %d faults; healing (%s)" %
          (writes, refused, faults, topology))

    failures = []

    def check(what, cond):
        print(("  ok    " if cond else "  FAIL  ") + what)
        if not cond:
            failures.append(what)

    for w in writers:
        check("writer %d ran to the end" % w.k, w.error is None)
        if w.error:
            print("    ", w.error)
    deadline = time.time() + 180
    converged = False
    while time.time() < deadline:
        dumps = [tandem("dump", path(d)).stdout for d in DEVICES]
        if all(x == dumps[0] for x in dumps):
            converged = True
            break
        time.sleep(1)
    check("every replica converged (equal dumps)", converged)
    for d in DEVICES:
        got = {}
        for line in tandem("ls", path(d), "items").stdout.splitlines():
            rec = json.loads(line)
            got[rec["id"]] = rec
        lost = []
        for w in writers:
            for r, n in w.acked.items():
                v = got.get(r, {}).get(w.field)
                if not (isinstance(v, int) and v >= n and v in w.tried[r]):
                    lost.append("%s.%s: acknowledged %d, holds %r" % (r, w.field, n, v))
            for r, e in w.elements:
                if e not in got.get(r, {}).get("tags", []):
                    lost.append("%s.tags: acknowledged %s, missing" % (r, e))
        total = {}
        for w in writers:
            for r, n in w.increments.items():
                total[r] = total.get(r, 0) + n
        for r, n in total.items():
            if got.get(r, {}).get("count", 0) != n:
                lost.append("%s.count: increments sum to %d, holds %r" %
                            (r, n, got.get(r, {}).get("count")))
        acked = sum(len(w.acked) + len(w.elements) for w in writers) + len(total)
        check("%s: every acknowledged write is there (%d fields and elements)" % (d, acked),
              not lost)
        for line in lost[:5]:
            print("    ", line)
        check("%s: tandem check passes" % d, tandem("check", path(d), ok=(0, 1)).returncode == 0)

    print("\n  minute  " + "  ".join("%-11s" % d for d in DEVICES) + "  (anonymous RSS MB / open files)")
    for m, u in samples:
        print("  %6d  " % m + "  ".join(
            "%-11s" % ("%.1f/%d" % u[d] if u.get(d) else "-") for d in DEVICES))
    # Growth, within the last topology (the mesh: each daemon has the same peers from
    # then on). Daemons restart all the time, so a process's first minutes (its heap
    # warming up) say nothing: the highest figure of the second half of the mesh phase
    # must not exceed the first half's, per device, beyond a margin.
    mesh = [u for m, u in samples if m >= MINUTES * 2 / 3 + 1]
    first, second = mesh[:len(mesh) // 2], mesh[len(mesh) // 2:]
    for d in DEVICES:
        a = [u[d] for u in first if u.get(d)]
        b = [u[d] for u in second if u.get(d)]
        if not a or not b:
            continue
        ma, mb = max(x[0] for x in a), max(x[0] for x in b)
        fa, fb = max(x[1] for x in a), max(x[1] for x in b)
        check("%s: memory flat in the mesh (highest %.1f, then %.1f MB)" % (d, ma, mb),
              mb <= ma * 1.25 + 4)
        check("%s: open files flat in the mesh (at most %d, then %d)" % (d, fa, fb),
              fb <= fa + 8)
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
                    print(open(logp).read()[-1500:])
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(rc)
