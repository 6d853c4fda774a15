#!/usr/bin/env python3
"""`make demo`: a shop, a warehouse and accounting, three devices syncing for real.

Three `tandem serve` daemons on loopback (encrypted TCP), durable replicas in a
temporary directory. The shop loads its catalogue and customers from files in
examples/, cleaned by the collections' schemas; the warehouse syncs both ways, and
accounting receives products and orders one way. Then the network partitions, both
sides sell, deliver and edit offline, the network heals, and every fact is checked.
Exits 0 only if every check holds.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = os.path.abspath(os.path.join(BUILD, "tandem"))
EXAMPLES = os.path.join(ROOT, "examples")
WORK = tempfile.mkdtemp(prefix="tandem-demo.")
DEVICES = ["shop", "warehouse", "accounting"]
daemons = {}
failures = []


def path(dev):
    return os.path.join(WORK, dev)


def show(args):
    shown = [a.replace(WORK + "/", "").replace(EXAMPLES, "examples") for a in args]
    print("$ tandem " + " ".join(shown))


def tandem(*args, ok=(0,), quiet=False, stdin=None):
    args = [str(a) for a in args]
    if not quiet:
        show(args)
    p = subprocess.run([T] + args, capture_output=True, text=True, input=stdin)
    if not quiet:
        for line in (p.stdout + p.stderr).splitlines():
            print("  " + line)
    if p.returncode not in ok:
        raise SystemExit("demo: `tandem %s` exited %d: %s" % (" ".join(args), p.returncode,
                                                             p.stderr.strip()))
    return p


def record(dev, coll, rid):
    p = tandem("get", path(dev), coll, rid, quiet=True, ok=(0, 1))
    return json.loads(p.stdout) if p.returncode == 0 else None


def records(dev, coll):
    out = tandem("ls", path(dev), coll, quiet=True).stdout
    return {r["id"]: r for r in map(json.loads, out.splitlines())}


def serve(dev, *args):
    """Starts DEV's daemon; returns once it listens (if it does)."""
    status = os.path.join(path(dev), "daemon.json")
    if os.path.exists(status):
        os.remove(status)
    cmd = [T, "serve", path(dev)] + [str(a) for a in args]
    show(cmd[1:] + ["&"])
    log = open(os.path.join(WORK, dev + ".log"), "a")
    daemons[dev] = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with open(status) as f:
                j = json.load(f)
            if j.get("running") and ("--listen" not in args or j.get("listen")):
                return j
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise SystemExit("demo: the %s daemon did not start; see %s.log" % (dev, dev))


def stop(dev):
    p = daemons.pop(dev, None)
    if p:
        p.terminate()
        p.wait(10)


def daemon_traffic(dev):
    try:
        with open(os.path.join(path(dev), "daemon.json")) as f:
            j = json.load(f)
    except (OSError, ValueError):
        return 0, 0
    return (sum(p.get("bytes_in", 0) for p in j.get("peers", [])),
            sum(p.get("bytes_out", 0) for p in j.get("peers", [])))


def check(what, cond):
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        failures.append(what)


def wait_until(cond, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def table(title, rows, columns):
    """rows: [(label, {device: text})]"""
    print("\n" + title)
    widths = [max(len(r[0]) for r in rows + [("", {})])] + \
             [max([len(c)] + [len(r[1].get(c, "")) for r in rows]) for c in columns]
    line = "  " + "  ".join(h.ljust(w) for h, w in zip([""] + columns, widths))
    print(line)
    print("  " + "  ".join("-" * w for w in widths))
    for label, cells in rows:
        print("  " + "  ".join([label.ljust(widths[0])] +
                                [cells.get(c, "").ljust(w) for c, w in zip(columns, widths[1:])]))


def snapshot(title):
    rows = []
    prods = {d: records(d, "products") for d in DEVICES}
    orders = {d: records(d, "orders") for d in DEVICES}
    custs = {d: records(d, "customers") for d in DEVICES}
    for sku in ["mug-white", "beans-1k", "grinder"]:
        rows.append(("%s stock" % sku,
                     {d: str(prods[d].get(sku, {}).get("stock", "-")) for d in DEVICES}))
    rows.append(("beans-1k price",
                 {d: str(prods[d].get("beans-1k", {}).get("price", "-")) for d in DEVICES}))
    rows.append(("grinder location",
                 {d: str(prods[d].get("grinder", {}).get("location", "-")) for d in DEVICES}))
    rows.append(("orders", {d: ",".join(sorted(orders[d])) or "-" for d in DEVICES}))
    rows.append(("c1 address",
                 {d: custs[d].get("c1", {}).get("address", "-") for d in DEVICES}))
    table(title, rows, DEVICES)


names = {}


def main():
    print("== Three devices: a shop, a warehouse, accounting (work dir %s) ==" % WORK)
    for d in DEVICES:
        tandem("init", path(d))
    names.update({json.loads(tandem("info", path(d), quiet=True).stdout)["device_id"]: d
             for d in DEVICES})

    print("\n== The shop loads its data; schemas clean and validate it ==")
    tandem("schema", path("shop"), "products", os.path.join(EXAMPLES, "products.schema.json"))
    tandem("schema", path("shop"), "customers", os.path.join(EXAMPLES, "customers.schema.json"))
    tandem("import", path("shop"), "products", os.path.join(EXAMPLES, "catalogue.csv"),
           "--id", "sku")
    p = tandem("import", path("shop"), "customers", os.path.join(EXAMPLES, "customers.csv"),
               ok=(3,))
    check("the customer with a bad phone number was reported and kept out (exit 3)",
          "line 4" in p.stderr and record("shop", "customers", "c3") is None)
    c1 = record("shop", "customers", "c1")
    check("phone and email stored normalised (%s, %s)" % (c1["phone"], c1["email"]),
          c1["phone"] == "+14155552671" and c1["email"] == "ann.lee@example.com")
    p = tandem("incr", path("shop"), "products", "grinder", "stock", "-7", ok=(2,))
    check("selling more grinders than in stock is refused by the schema (min 0)",
          record("shop", "products", "grinder")["stock"] == 6)

    print("\n== Pairing: the warehouse two-way, accounting one-way (receives products, orders) ==")
    shop = serve("shop", "--listen", "127.0.0.1:0")
    addr = shop["listen"]
    for d in ["warehouse", "accounting"]:
        code = tandem("invite", path("shop"), quiet=True).stdout.strip()
        show(["invite", path("shop")])
        tandem("join", path(d), code)
    wh = serve("warehouse", "--listen", "127.0.0.1:0", "--peer", addr)
    serve("accounting", "--peer", addr, "--send", "none", "--receive", "products,orders")

    wh_device = tandem("info", path("warehouse"), quiet=True)
    wh_device = json.loads(wh_device.stdout)["device_id"]
    print("-- the warehouse decides where stock is kept: its value wins a conflict on location")
    with open(os.path.join(WORK, "products.schema.json"), "w") as f:
        schema = json.load(open(os.path.join(EXAMPLES, "products.schema.json")))
        schema["fields"]["location"] = {"type": "string", "prefer": [wh_device]}
        json.dump(schema, f)
    tandem("schema", path("shop"), "products", os.path.join(WORK, "products.schema.json"))

    def converged_initially():
        return (records("warehouse", "products") == records("shop", "products") and
                records("warehouse", "customers") == records("shop", "customers") and
                records("accounting", "products") == records("shop", "products"))

    check("the catalogue reached the warehouse and accounting", wait_until(converged_initially))
    check("accounting holds no customers (it receives products and orders only)",
          records("accounting", "customers") == {})
    snapshot("Before the partition")

    print("\n== The network partitions (every daemon stops); each side works offline ==")
    for d in list(daemons):
        stop(d)
    print("-- the shop sells: 3 white cups and 1 kilo of beans, order 1042 ships to c1")
    tandem("incr", path("shop"), "products", "mug-white", "stock", "-3")
    tandem("incr", path("shop"), "products", "beans-1k", "stock", "-1")
    tandem("put", path("shop"), "orders", "1042", 'customer="c1"', 'items="3 x mug-white, 1 x beans-1k"',
           "total=31.5", 'ship_to="12 Bay St, San Francisco"', 'state="paid"')
    print("-- the warehouse receives a delivery, raises a price, takes a phone order")
    tandem("incr", path("warehouse"), "products", "mug-white", "stock", "24")
    tandem("incr", path("warehouse"), "products", "grinder", "stock", "4")
    tandem("put", path("warehouse"), "products", "beans-1k", "price=19.5")
    tandem("put", path("warehouse"), "products", "grinder", 'location="bin A-3"')
    tandem("put", path("warehouse"), "orders", "1043", 'customer="c2"', 'items="2 x grinder"',
           "total=98.0", 'ship_to="7 Elm Rd, New York"', 'state="new"')
    print("-- accounting corrects an order locally; it never sends, so it stays local")
    tandem("put", path("accounting"), "orders", "0999", 'note="draft, never sent"')
    print("-- both edit c1's shipping address")
    tandem("put", path("shop"), "customers", "c1", 'address="48 Pier Ave, San Francisco"')
    tandem("put", path("warehouse"), "customers", "c1", 'address="12 Bay Street, Apt 3, San Francisco"')
    print("-- later, the shop moves the grinders to the front shelf")
    tandem("put", path("shop"), "products", "grinder", 'location="front shelf"')
    snapshot("During the partition")
    print("\n-- has order 1042 reached the warehouse? (answered offline, from what peers reported)")
    p = tandem("where", path("shop"), "orders", "1042", "--json", quiet=True)
    show(["where", path("shop"), "orders", "1042"])
    held = {j["device"]: j["state"] for j in map(json.loads, p.stdout.splitlines())}
    for line in tandem("where", path("shop"), "orders", "1042", quiet=True).stdout.splitlines():
        dev = line.split()[0]
        print("  " + line.replace(dev, "%-10s" % names.get(dev, dev), 1))
    check("offline, the shop knows the warehouse and accounting lack order 1042",
          held.get(wh_device) == "lacks" and list(held.values()).count("lacks") == 2)

    print("\n== The network heals ==")
    start = time.time()
    shop = serve("shop", "--listen", addr)
    serve("warehouse", "--listen", wh["listen"], "--peer", addr)
    serve("accounting", "--peer", addr, "--send", "none", "--receive", "products,orders")

    def healed():
        s = records("shop", "products")
        return (records("warehouse", "products") == s and records("accounting", "products") == s and
                records("warehouse", "orders") == records("shop", "orders") ==
                {k: v for k, v in records("accounting", "orders").items() if k != "0999"} and
                len(records("shop", "orders")) == 2 and
                records("warehouse", "customers") == records("shop", "customers"))

    converged = wait_until(healed)
    took = time.time() - start
    traffic = {d: daemon_traffic(d) for d in DEVICES}
    check("all three devices converged", converged)
    snapshot("After the partition healed")
    print("\n  sync after healing: %.2f s (daemons starting included); bytes in/out: %s" % (
        took, ", ".join("%s %d/%d" % (d, i, o) for d, (i, o) in traffic.items())))

    print("\n== Checks ==")
    def where(dev, coll, rid):
        out = tandem("where", path(dev), coll, rid, "--json", quiet=True).stdout
        return [j["state"] for j in map(json.loads, out.splitlines())]
    # The shop's report of each peer comes with the peer's next caught-up message.
    check("`tandem where`: order 1042 is held by all three devices",
          wait_until(lambda: where("shop", "orders", "1042") == ["holds"] * 3))
    show(["where", path("shop"), "orders", "1042"])
    for line in tandem("where", path("shop"), "orders", "1042", quiet=True).stdout.splitlines():
        dev = line.split()[0]
        print("  " + line.replace(dev, "%-10s" % names.get(dev, dev), 1))
    for d in DEVICES:
        p = records(d, "products")
        check("%s: white cups 40 - 3 sold + 24 delivered = 61 (has %s)" % (d, p["mug-white"]["stock"]),
              p["mug-white"]["stock"] == 61)
        check("%s: beans 12 - 1 = 11, grinders 6 + 4 = 10" % d,
              p["beans-1k"]["stock"] == 11 and p["grinder"]["stock"] == 10)
        check("%s: the warehouse's price change stands (19.5)" % d, p["beans-1k"]["price"] == 19.5)
        check("%s: the warehouse's grinder location beats the shop's later one (%s)" % (
            d, p["grinder"].get("location")), p["grinder"].get("location") == "bin A-3")
        o = records(d, "orders")
        check("%s: both orders exist (%s)" % (d, ", ".join(sorted(o))),
              "1042" in o and "1043" in o)
    check("accounting still holds no customers", records("accounting", "customers") == {})
    check("accounting's local order 0999 reached nobody (it never sends)",
          "0999" not in records("shop", "orders") and "0999" not in records("warehouse", "orders"))

    print("\n== The concurrent address edit is a conflict; both versions are kept ==")
    p = tandem("conflicts", path("shop"), "customers", "c1")
    sib = json.loads(p.stdout).get("address", [])
    values = sorted(s["value"] for s in sib)
    check("both addresses are siblings of c1.address",
          values == ["12 Bay Street, Apt 3, San Francisco", "48 Pier Ave, San Francisco"])
    check("the warehouse sees the same conflict and the same winner",
          json.loads(tandem("conflicts", path("warehouse"), "customers", "c1", quiet=True).stdout)
          == json.loads(p.stdout))
    print("-- the shop resolves it with a later write")
    tandem("put", path("shop"), "customers", "c1", 'address="12 Bay Street, Apt 3, San Francisco"')
    resolved = wait_until(lambda: json.loads(tandem("conflicts", path("warehouse"), "customers", "c1",
                                                    quiet=True).stdout) == {})
    check("the conflict is gone on the warehouse, which has the resolved address",
          resolved and record("warehouse", "customers", "c1")["address"] ==
          "12 Bay Street, Apt 3, San Francisco")
    tandem("status", path("shop"))

    for d in list(daemons):
        stop(d)
    if failures:
        print("\ndemo: %d check(s) failed" % len(failures))
        return 1
    print("\ndemo: every check holds")
    return 0


if __name__ == "__main__":
    rc = 1
    try:
        rc = main()
    finally:
        for dev in list(daemons):
            stop(dev)
        if rc != 0:
            for dev in DEVICES:
                logp = os.path.join(WORK, dev + ".log")
                if os.path.exists(logp):
                    print("--- %s.log" % dev)
                    print(open(logp).read()[-3000:])
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(rc)
