"""The Python binding: replicas, batches, the change feed, subscriptions, and two
replicas syncing over loopback through two nodes, in one process."""

import builtins
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

import tandem


def eventually(pred, timeout=20.0):
    """Waits for a condition (a bound, not a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tandem-py-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)


class ReplicaTest(TempDirTest):
    def test_put_get_every_type(self):
        with tandem.create(self.path("a")) as db:
            db.put("products", "p1", name="Espresso cup", price=4.5, n=3, ok=True, none=None,
                   raw=b"\x00\xff", whole=5.0)
            rec = db.get("products", "p1")
            self.assertEqual(rec["id"], "p1")
            self.assertEqual(rec["name"], "Espresso cup")
            self.assertEqual(rec["price"], 4.5)
            self.assertEqual(rec["n"], 3)
            self.assertIs(rec["ok"], True)
            self.assertIsNone(rec["none"])
            self.assertEqual(rec["raw"], b"\x00\xff")
            self.assertIsInstance(rec["whole"], float)
            self.assertEqual(db["products", "p1"]["n"], 3)
            self.assertIsNone(db.get("products", "missing"))
            with self.assertRaises(tandem.NotFoundError) as cm:
                db["products", "missing"]
            self.assertEqual(cm.exception.status, 1)

    def test_counters_sets_delete(self):
        with tandem.create(self.path("a")) as db:
            db.incr("products", "p1", "stock", 20)
            db.incr("products", "p1", "stock", -3)
            db.add("products", "p1", "tags", "ceramic")
            db.add("products", "p1", "tags", "blue")
            db.remove("products", "p1", "tags", "blue")
            rec = db.get("products", "p1")
            self.assertEqual(rec["stock"], 17)
            self.assertEqual(rec["tags"], ["ceramic"])
            db.delete("products", "p1")
            self.assertIsNone(db.get("products", "p1"))
            with self.assertRaises(tandem.NotFoundError):
                db.delete("products", "p1")

    def test_batch_is_all_or_nothing(self):
        with tandem.create(self.path("a")) as db:
            with db.batch() as b:
                for i in range(100):
                    b.put_field("items", "i%03d" % i, "n", i)
                b.incr("items", "total", "n", 100)
                self.assertEqual(len(b), 101)
            self.assertEqual(len(list(db.scan("items"))), 101)
            # A bad operation is refused when recorded; an exception in the block
            # commits nothing.
            with self.assertRaises(tandem.InvalidError):
                with db.batch() as b:
                    b.put_field("items", "x", "n", 1)
                    b.put_field("items", "y", "id", 1)  # "id" is reserved
            self.assertIsNone(db.get("items", "x"))

    def test_scan_collections_changes(self):
        with tandem.create(self.path("a")) as db:
            for i in (3, 1, 2):
                db.put("c", "r%d" % i, v=i)
            db.put("other", "x", v=0)
            self.assertEqual([r["id"] for r in db.scan("c")], ["r1", "r2", "r3"])
            self.assertEqual([r["id"] for r in db.scan("c", after="r1")], ["r2", "r3"])
            self.assertEqual(db.collections(), ["c", "other"])
            changes, cursor = db.changes()
            self.assertEqual([c["id"] for c in changes], ["r3", "r1", "r2", "x"])
            db.put("c", "r3", v=30)
            later, cursor2 = db.changes(since=cursor)
            self.assertEqual([(c["id"], c["record"]["v"]) for c in later], [("r3", 30)])
            self.assertGreater(cursor2, cursor)

    def test_schema_cleans_and_refuses_writes(self):
        with tandem.create(self.path("a")) as db:
            self.assertEqual(db.schema("customers"), (None, 0))
            schema = {"fields": {"email": {"type": "string", "normalize": ["trim", "lower"]},
                                 "tier": {"type": "string", "enum": ["retail", "wholesale"]}}}
            self.assertEqual(db.set_schema("customers", schema), 1)
            self.assertEqual(db.schema("customers"), (schema, 1))
            db.put("customers", "c1", {"email": "  Ann@Example.COM "})
            self.assertEqual(db.get("customers", "c1")["email"], "ann@example.com")
            with self.assertRaises(tandem.InvalidError) as cm:
                db.put("customers", "c1", {"tier": "gold"})
            self.assertIn("tier", str(cm.exception))
            self.assertNotIn("tier", db.get("customers", "c1"))
            with self.assertRaises(tandem.InvalidError):
                db.set_schema("customers", {"fields": {"x": {"type": "nope"}}})
            self.assertEqual(db.schema("customers")[1], 1)

    def test_bad_input_raises_and_changes_nothing(self):
        with tandem.create(self.path("a")) as db:
            for call in (lambda: db.put("c", "r", {}),
                         lambda: db.put("c" * 65, "r", v=1),
                         lambda: db.put("c", "r", id=1),
                         lambda: db.put("c", "r", {"v": 1}, v=2),
                         lambda: db.put("c", "r", v=object()),
                         lambda: db.put("c", "r", v="x" * ((16 << 20) + 1)),
                         lambda: db.incr("c", "r", "", 1),
                         lambda: db.put(None, "r", v=1)):
                with self.assertRaises(tandem.InvalidError):
                    call()
            # Said as the library says it, not as JSON the caller never wrote.
            for v in (float("nan"), float("inf"), -float("inf")):
                with self.assertRaisesRegex(tandem.InvalidError, "must be finite"):
                    db.put("c", "r", v=v)
                with self.assertRaisesRegex(tandem.InvalidError, "must be finite"):
                    with db.batch() as b:
                        b.put("c", "r", v=v)
            with self.assertRaisesRegex(tandem.InvalidError, "lone surrogate"):
                db.put("c", "r", v="a\ud800b")
            with self.assertRaisesRegex(tandem.InvalidError, "field name must be valid"):
                db.put("c", "r", {"a\ud800": 1})
            with self.assertRaisesRegex(tandem.InvalidError, "must be valid Unicode"):
                db.get("c\ud800", "r")
            # Integers past 64 bits are refused, never wrapped into another number.
            for call in (lambda: db.incr("c", "r", "n", 2**63),
                         lambda: db.incr("c", "r", "n", -2**63 - 1),
                         lambda: db.add("c", "r", "s", 2**64 + 1),
                         lambda: db.remove("c", "r", "s", 2**64 + 7),
                         lambda: db.invite(expires_minutes=2**32 + 5)):
                with self.assertRaisesRegex(tandem.InvalidError, "must be between"):
                    call()
            with self.assertRaisesRegex(tandem.InvalidError, "must be between"):
                with db.batch() as b:
                    b.put_field("c", "r", "v", 2**64 + 3)
            self.assertEqual(db.changes()[0], [])
            with self.assertRaises(tandem.InvalidError):
                tandem.open(self.path("a"), durability="fast")
        with self.assertRaises(tandem.NotFoundError):
            tandem.open(self.path("missing"))
        with self.assertRaises(tandem.InvalidError):
            tandem.create(self.path("a"))  # not empty
        db = tandem.open(self.path("a"))
        db.close()
        with self.assertRaises(tandem.InvalidError):
            db.put("c", "r", v=1)

    def test_attach_and_read_blobs(self):
        data = bytes(range(256)) * 5000  # 1.28 MB: three chunks
        src = self.path("photo.png")
        with builtins.open(src, "wb") as f:
            f.write(data)
        with tandem.create(self.path("a")) as db:
            ref = db.attach("photos", "p1", "img", src, type="image/png")
            self.assertEqual(ref["size"], len(data))
            self.assertEqual(db.get("photos", "p1")["img"], ref)
            self.assertEqual(db.blob(ref), data)
            self.assertEqual(db.blob(ref["$blob"], offset=1000), data[1000:])
            out = self.path("copy.png")
            self.assertEqual(db.blob(ref, out), len(data))
            with builtins.open(out, "rb") as f:
                self.assertEqual(f.read(), data)
            self.assertEqual(db.blob_info(ref)["state"], "complete")
            with builtins.open(src, "rb") as f:
                ref2 = db.attach("docs", "d", "pdf", f)
            self.assertEqual(ref2["$blob"], ref["$blob"])  # the same bytes, the same address
            self.assertEqual(db.get("docs", "d")["pdf"], ref2)
            with self.assertRaises(tandem.NotFoundError):
                db.blob("0" * 64)
            with self.assertRaises(tandem.InvalidError):
                db.blob("xyz")
            with self.assertRaises(FileNotFoundError):
                db.attach("photos", "p2", "img", self.path("missing"))

            class Broken:
                def read(self, n):
                    raise OSError("disk gone")
            with self.assertRaises(OSError):
                db.attach("photos", "p3", "img", Broken())
            self.assertIsNone(db.get("photos", "p3"))

    def test_backup_restore_check_info(self):
        with tandem.create(self.path("a")) as db:
            db.put("c", "r", v=1)
            db.backup(self.path("bak"))
            info = db.info
            self.assertEqual(info["device_id"], db.device_id)
            # ours, the trust set's and the binding of the replica's id
            self.assertEqual(db.check()["records"], 3)
        tandem.restore(self.path("bak"), self.path("b"))
        with tandem.open(self.path("b")) as b:
            self.assertEqual(b.get("c", "r")["v"], 1)
            self.assertNotEqual(b.info["replica_id"], info["replica_id"])
            self.assertEqual(b.device_id, info["device_id"])

    def test_follow_and_subscribe_see_writes(self):
        with tandem.create(self.path("a")) as db:
            seen = []
            got = threading.Event()

            def on_change(change):
                seen.append(change["id"])
                if change["id"] == "second":
                    got.set()

            with db.subscribe(on_change):
                db.put("c", "first", v=1)
                db.put("c", "second", v=2)
                self.assertTrue(got.wait(20))
            self.assertEqual(seen, ["first", "second"])
            # Polling: the iterator from follow() ends after a quiet timeout.
            ids = [c["id"] for c in db.follow(timeout=0.5)]
            self.assertEqual(ids, ["first", "second"])


class SyncTest(TempDirTest):
    def test_two_replicas_sync_through_two_nodes(self):
        a = tandem.create(self.path("a"))
        b = tandem.create(self.path("b"))
        a.put("notes", "n1", text="written on a")
        events = []
        with a.node(listen="127.0.0.1:0", on_event=events.append) as na:
            b.join(a.invite(addresses=[na.listen_address]))
            arrived = threading.Event()

            def on_change(change):
                if change["id"] == "n2":
                    arrived.set()

            with b.subscribe(on_change), b.node(peers=[na.listen_address]) as nb:
                self.assertTrue(eventually(lambda: b.get("notes", "n1") is not None))
                a.put("notes", "n2", text="live")  # arrives through the node
                self.assertTrue(arrived.wait(20), "b's subscription saw a's write arrive")
                b.put("notes", "n3", text="from b")
                self.assertTrue(eventually(lambda: a.get("notes", "n3") is not None))
                status = nb.status()
                self.assertTrue(eventually(
                    lambda: nb.status()["peers"] and nb.status()["peers"][0]["connected"]))
                self.assertEqual(status["device"], b.device_id)
                kinds = [e["kind"] for e in nb.events()]
                self.assertIn("joined", kinds)
                self.assertIn("caught_up", kinds)
            self.assertTrue(any(e["kind"] == "invite_redeemed" for e in events))
            self.assertEqual(len(a.devices()), 2)
            roles = {d["device_id"]: d["role"] for d in a.devices()}
            self.assertEqual(roles, {a.device_id: "owner", b.device_id: "member"})
            # b, a member, has no authority; a makes it a reader.
            with self.assertRaises(tandem.UnauthorizedError):
                b.revoke(a.device_id)
            with self.assertRaises(tandem.UnauthorizedError):
                b.invite(role="reader")
            with self.assertRaises(tandem.InvalidError):
                a.invite(role="boss")
            a.set_role(b.device_id, "reader")
            self.assertEqual({d["device_id"]: d["role"] for d in a.devices()}[b.device_id],
                             "reader")
        a.close()
        b.close()

    def test_once_mode_syncs_and_stops(self):
        a = tandem.create(self.path("a"))
        b = tandem.create(self.path("b"))
        with a.node(listen="127.0.0.1:0") as na:
            b.join(a.invite(addresses=[na.listen_address]))
            a.put("c", "r", v=1)
            nb = b.node(peers=[na.listen_address], mode="once").start()
            self.assertTrue(nb.wait(30))
            done = [e for e in nb.events() if e["kind"] == "done"]
            self.assertEqual(len(done), 1)
            self.assertTrue(done[0]["ok"])
            nb.close()
        self.assertEqual(b.get("c", "r")["v"], 1)
        with self.assertRaises(tandem.InvalidError):
            b.node(peers=["nowhere"]).start()
        with self.assertRaises(tandem.InvalidError):
            b.node(peers=["h\u00ff:7000"]).start()
        # One peer and one collection as plain strings, as one would write them.
        a.put("orders", "o1", v=1)
        a.put("prices", "p1", v=1)
        with a.node(listen="127.0.0.1:0") as na:
            nb = b.node(peers=na.listen_address, mode="once", receive="orders").start()
            self.assertTrue(nb.wait(30))
            self.assertTrue([e for e in nb.events() if e["kind"] == "done"][0]["ok"])
            nb.close()
        self.assertEqual(b.get("orders", "o1")["v"], 1)
        self.assertIsNone(b.get("prices", "p1"))
        a.close()
        b.close()


class InstallTest(TempDirTest):
    def test_installs_offline_into_a_virtual_environment(self):
        try:
            import venv  # noqa: F401
            import ensurepip  # noqa: F401
        except ImportError:
            self.fail("python3-venv is needed (make installs it)")
        env_dir = self.path("venv")
        subprocess.run([sys.executable, "-m", "venv", env_dir], check=True)
        py = os.path.join(env_dir, "bin", "python")
        src = Path(__file__).resolve().parents[1]
        # Copied first: pip builds in the source tree, which may be read-only.
        shutil.copytree(src, self.path("src"), ignore=shutil.ignore_patterns("tests", "build",
                                                                           "*.egg-info"))
        r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                            "--quiet", self.path("src")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        r = subprocess.run([py, "-c", "import tandem, sys; print(tandem.version());"
                            "print(tandem.__file__)"], capture_output=True, text=True, env=env,
                           cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0.1.0", r.stdout)
        self.assertIn(env_dir, r.stdout)


if __name__ == "__main__":
    unittest.main()
