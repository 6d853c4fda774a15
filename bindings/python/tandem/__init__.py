"""Tandem for Python: an embeddable, offline-first sync engine.

A pure-Python binding over the C library (libtandem) through ctypes:

    import tandem
    with tandem.create("shop") as db:                 # or tandem.open("shop")
        db.put("products", "p1", name="Espresso cup", price=4.5)
        db.incr("products", "p1", "stock", 20)
        print(db.get("products", "p1"))

The library is found through TANDEM_LIBRARY (a path) when set, else in the build tree
this package sits in (build/libtandem.so), else on the system's library path.

Errors raise tandem.Error subclasses carrying the C status (`.status`). A Replica may be
used from several threads. Callbacks (subscriptions, node events) run on library threads.
"""

import base64
import builtins
import ctypes
import json
import math
import os
import select
import threading

__all__ = [
    "Error", "NotFoundError", "InvalidError", "CorruptError", "UnauthorizedError",
    "TandemIOError", "BusyError", "UnsupportedError", "WrongTypeError", "InternalError",
    "Replica", "Batch", "Node", "Subscription", "create", "open", "restore", "version",
]

from ._native import (  # the library and the declarations the classes below call through
    _lib, _CHANGE_FN, _EVENT_FN, _Error, _NodeOptions, _OpenOptions, _READ_FN, _Value,
    _WRITE_FN, _cp, _i64, _int, _sz, _u64, _vp,
)

# ---- Errors ------------------------------------------------------------------------


class Error(Exception):
    """A failure reported by the library; `status` is its TANDEM_* code."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class NotFoundError(Error, KeyError):
    status = 1

    def __str__(self):  # KeyError would quote the message
        return Exception.__str__(self)


class InvalidError(Error, ValueError):
    status = 2


class CorruptError(Error):
    status = 3


class UnauthorizedError(Error):
    status = 4


class TandemIOError(Error, OSError):
    status = 5


class BusyError(Error):
    status = 6


class UnsupportedError(Error):
    status = 7


class WrongTypeError(Error, TypeError):
    status = 8


class InternalError(Error):
    status = 10


_BY_STATUS = {c.status: c for c in (NotFoundError, InvalidError, CorruptError,
                                     UnauthorizedError, TandemIOError, BusyError,
                                     UnsupportedError, WrongTypeError, InternalError)}


def _call(fn, *args):
    err = _Error()
    rc = fn(*args, ctypes.byref(err))
    if rc != 0:
        cls = _BY_STATUS.get(rc, Error)
        raise cls(err.message.decode("utf-8", "replace"), rc)


def _raising(failure, call):
    """call(), for a function that calls back into Python: an exception a callback
    caught (and turned into a status for C) is raised instead of that status."""
    try:
        return call()
    except Error:
        if failure:
            raise failure[0]
        raise


def _take(ptr, length=None):
    """The library's string at ptr as str, freed."""
    if not ptr.value:
        return None
    try:
        if length is not None:
            return ctypes.string_at(ptr.value, length.value).decode("utf-8")
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        _lib.tandem_free(ptr)


def _text_out(fn, *args):
    out, n = _vp(), _sz()
    _call(fn, ctypes.byref(out), ctypes.byref(n), *args)
    return _take(out, n)


def _json_out(fn, *args):
    return _decode(json.loads(_text_out(fn, *args)))


def _b(s, what="name"):
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    if not isinstance(s, str):
        raise InvalidError("%s must be a str, not %s" % (what, type(s).__name__), 2)
    return _utf8(s, what).encode("utf-8")


def _utf8(s, what):
    """s, if it encodes as UTF-8 (no lone surrogate); else an InvalidError naming `what`."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidError("%s must be valid Unicode: %r has a lone surrogate"
                           % (what, s if len(s) <= 40 else s[:40] + "..."), 2) from None
    return s


_I64 = (-(1 << 63), (1 << 63) - 1)
_I32 = (-(1 << 31), (1 << 31) - 1)


def _whole(v, bounds, what):
    """v as an int within bounds (ctypes would wrap it silently); else InvalidError."""
    if isinstance(v, bool) or not isinstance(v, int):
        try:
            v = int(v)
        except (TypeError, ValueError):
            raise InvalidError("%s must be an integer, not %r" % (what, v), 2) from None
    if not bounds[0] <= v <= bounds[1]:
        raise InvalidError("%s must be between %d and %d, not %d"
                           % (what, bounds[0], bounds[1], v), 2)
    return v


def _names(v, what):
    """A collection list for the library: "a,b" as given, or an iterable of names."""
    if v is None:
        return None
    if isinstance(v, str):
        return _b(v, what)
    return _b(",".join(v), what)


def _decode(j):
    """JSON from the library to Python: {"$bytes": b64} becomes bytes."""
    if isinstance(j, dict):
        if len(j) == 1 and "$bytes" in j and isinstance(j["$bytes"], str):
            return base64.b64decode(j["$bytes"])
        return {k: _decode(v) for k, v in j.items()}
    if isinstance(j, list):
        return [_decode(v) for v in j]
    return j


def _encode(v):
    """A Python scalar as the JSON the library reads."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, float) and not math.isfinite(v):
        raise InvalidError("a number must be finite, not NaN or infinite", 2)
    if isinstance(v, str):
        _utf8(v, "a string")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise InvalidError("values are None, bool, int, float, str or bytes; not %s"
                       % type(v).__name__, 2)


def _merged_fields(fields, kw):
    """The fields of put(c, id, {...}, name=...): a field named in both is refused."""
    f = dict(fields or {})
    for k in kw:
        if k in f:
            raise InvalidError(f'field "{k}" is given twice', 2)
    f.update(kw)
    return f


def _fields_json(fields):
    if not fields:
        raise InvalidError("put needs at least one field", 2)
    return json.dumps({_utf8(k, "a field name"): _encode(v) for k, v in fields.items()},
                      allow_nan=False).encode()


class _ScalarValue:
    """A tandem_value for a Python scalar; keeps the bytes alive while in use."""

    def __init__(self, v):
        self.v = _Value()
        self._keep = None
        if v is None:
            self.v.type = 0
        elif isinstance(v, bool):
            self.v.type, self.v.i = 1, int(v)
        elif isinstance(v, int):
            self.v.type, self.v.i = 2, _whole(v, _I64, "an integer value")
        elif isinstance(v, float):
            self.v.type, self.v.d = 3, v
        elif isinstance(v, str):
            self._keep = v.encode("utf-8", "surrogatepass")
            self.v.type = 4
        elif isinstance(v, (bytes, bytearray, memoryview)):
            self._keep = bytes(v)
            self.v.type = 5
        else:
            raise InvalidError("values are None, bool, int, float, str or bytes; not %s"
                               % type(v).__name__, 2)
        if self._keep is not None:
            buf = ctypes.create_string_buffer(self._keep, len(self._keep))
            self._buf = buf
            self.v.data = ctypes.cast(buf, ctypes.c_void_p)
            self.v.len = len(self._keep)

    def ref(self):
        return ctypes.byref(self.v)


def version():
    return _lib.tandem_version().decode()


# ---- Replicas ----------------------------------------------------------------------


def _options(durability):
    if durability not in ("durable", "relaxed"):
        raise InvalidError("durability is 'durable' or 'relaxed'", 2)
    return _OpenOptions(1, 0 if durability == "durable" else 1)


def create(path, durability="durable"):
    """A new replica in `path` (created; must be empty): a new device, group of one."""
    return Replica._make(_lib.tandem_db_create, path, durability)


def open(path, durability="durable"):  # noqa: A001 - the module's own open
    """An existing replica."""
    return Replica._make(_lib.tandem_db_open, path, durability)


def restore(backup, path):
    """A new replica at `path` from a backup (new replica id; same device and group)."""
    _call(_lib.tandem_restore, _b(str(backup)), _b(str(path)))


class Replica:
    """One replica directory. Use as a context manager, or call close()."""

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def _make(cls, fn, path, durability):
        h = _vp()
        _call(fn, ctypes.byref(h), _b(os.fspath(path), "path"), ctypes.byref(_options(durability)))
        return cls(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._h:
            _lib.tandem_db_close(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    @property
    def _handle(self):
        if not self._h:
            raise InvalidError("the replica is closed", 2)
        return self._h

    # -- identity --
    @property
    def info(self):
        """{"device_id", "replica_id", "version_vector"}"""
        return _json_out(_lib.tandem_db_info, self._handle)

    @property
    def device_id(self):
        out = _vp()
        _call(_lib.tandem_db_device_id, ctypes.byref(out), self._handle)
        return _take(out)

    # -- writing --
    def put(self, collection, id, fields=None, /, **kw):
        """Sets register fields: put("c", "id", {"name": "Ann"}) or put("c", "id", name="Ann")."""
        data = _fields_json(_merged_fields(fields, kw))
        _call(_lib.tandem_put_json, self._handle, _b(collection), _b(id), data, len(data))

    def incr(self, collection, id, field, by=1):
        _call(_lib.tandem_incr, self._handle, _b(collection), _b(id), _b(field),
              _whole(by, _I64, "an increment"))

    def add(self, collection, id, field, element):
        _call(_lib.tandem_add, self._handle, _b(collection), _b(id), _b(field),
              _ScalarValue(element).ref())

    def remove(self, collection, id, field, element):
        _call(_lib.tandem_remove, self._handle, _b(collection), _b(id), _b(field),
              _ScalarValue(element).ref())

    def delete(self, collection, id):
        """Deletes a live record; NotFoundError if there is none."""
        _call(_lib.tandem_delete, self._handle, _b(collection), _b(id))

    def batch(self):
        """A write batch: `with db.batch() as b: b.put(...)` commits all of it at once."""
        return Batch(self)

    # -- reading --
    def get(self, collection, id, default=None):
        """The record as a dict (with "id"), or `default` if absent or deleted."""
        try:
            return _json_out(_lib.tandem_get_json, self._handle, _b(collection), _b(id))
        except NotFoundError:
            return default

    def __getitem__(self, key):
        collection, id = key
        out = self.get(collection, id)
        if out is None:
            raise NotFoundError("not found: %s/%s" % (collection, id), 1)
        return out

    def scan(self, collection, after=None):
        """The records of a collection, in id order (an iterator of dicts)."""
        it = _vp()
        _call(_lib.tandem_iter_new, ctypes.byref(it), self._handle, _b(collection),
              _b(after) if after else None)
        try:
            while True:
                text = _text_out(_lib.tandem_iter_next, it)
                if text is None:
                    return
                yield _decode(json.loads(text))
        finally:
            _lib.tandem_iter_free(it)

    def collections(self):
        return _json_out(_lib.tandem_collections, self._handle)

    def set_schema(self, collection, schema):
        """Sets a collection's schema (a dict, or JSON text; see docs/schema.md); every
        device applies it once synced. Returns the new version."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        version = _i64(0)
        _call(_lib.tandem_schema_set, self._handle, _b(collection), _b(text, "schema"),
              ctypes.byref(version))
        return version.value

    def schema(self, collection):
        """(schema dict, version), or (None, 0) when the collection has none."""
        out, length, version = _vp(), _sz(), _i64(0)
        _call(_lib.tandem_schema_get, ctypes.byref(out), ctypes.byref(length),
              ctypes.byref(version), self._handle, _b(collection))
        text = _take(out, length)
        return (None, 0) if text is None else (json.loads(text), version.value)

    def conflicts(self, collection, id):
        """{field: [siblings, winner first]} for the fields in conflict."""
        return _json_out(_lib.tandem_conflicts_json, self._handle, _b(collection), _b(id))

    # -- the change feed --
    def changes(self, since=0, limit=1000):
        """(changes, next_cursor): records changed after `since`, each once. A page may
        be empty with more after it (Tandem's own records take their places in it): the
        feed is read to its end when next_cursor == since."""
        nxt = _u64()
        out, n = _vp(), _sz()
        _call(_lib.tandem_changes, ctypes.byref(out), ctypes.byref(n), ctypes.byref(nxt),
              self._handle, since, limit)
        return _decode(json.loads(_take(out, n))), nxt.value

    def follow(self, since=0, timeout=None):
        """Yields changes as they commit (this process or others), forever or until
        `timeout` seconds pass with nothing new."""
        sub = Subscription(self, since, None)
        try:
            while True:
                batch = sub.drain()
                yield from batch
                if not batch and not sub.wait(timeout):
                    return
        finally:
            sub.close()

    def subscribe(self, callback, since=0):
        """Calls callback(change) for every change after `since`, on a library thread,
        until the returned Subscription is closed."""
        return Subscription(self, since, callback)

    # -- pairing --
    def invite(self, addresses=(), expires_minutes=24 * 60, role="member"):
        """A one-time invite code for a new device that joins with `role` (reader, member
        or admin)."""
        arr = (_cp * max(1, len(addresses)))(*[_b(a) for a in addresses])
        return _text_out(_lib.tandem_invite_role, self._handle, arr, len(addresses),
                         _whole(expires_minutes, _I32, "expires_minutes"), _b(role, "role"))

    def join(self, code):
        data = _b(code.strip(), "code")
        _call(_lib.tandem_join, self._handle, data, len(data))

    def cancel_join(self):
        _call(_lib.tandem_join_cancel, self._handle)

    def devices(self):
        return _json_out(_lib.tandem_devices, self._handle)

    def revoke(self, device_id):
        _call(_lib.tandem_revoke, self._handle, _b(device_id))

    def set_role(self, device_id, role):
        """Gives a device another role (reader, member, admin, owner), signed by this one."""
        _call(_lib.tandem_set_role, self._handle, _b(device_id), _b(role, "role"))

    # -- blobs (attachments) --
    def attach(self, collection, id, field, source, type=None):  # noqa: A002
        """Stores a file as a blob and puts its reference in the field; returns the
        reference ({"$blob": hash, "size": n, "type": t}). `source` is a path or a binary
        file object; it is streamed, whatever its size (up to 8 GiB)."""
        own = isinstance(source, (str, bytes, os.PathLike))
        f = builtins.open(source, "rb") if own else source
        failure = []

        def read(buf, cap, n, _ctx):
            try:
                data = f.read(cap)
                ctypes.memmove(buf, data, len(data))
                n[0] = len(data)
                return 0
            except Exception as e:  # never let an exception cross into C
                failure.append(e)
                return 5  # TANDEM_IO
        try:
            ref = _raising(failure, lambda: _text_out(
                _lib.tandem_attach, self._handle, _b(collection, "collection"), _b(id, "id"),
                _b(field, "field"), _READ_FN(read), None, _b(type, "type")))
        finally:
            if own:
                f.close()
        return json.loads(ref)

    def blob(self, hash, dest=None, offset=0):  # noqa: A002
        """A blob's bytes (each chunk checked against its hash): written to `dest` (a
        path or a binary file object) and returns the count, or returned as bytes.
        NotFoundError while it is not here yet; it is then requested, and a running
        node fetches it (see blob_info)."""
        if isinstance(hash, dict):
            hash = hash.get("$blob")
        own = isinstance(dest, (str, bytes, os.PathLike))
        out = builtins.open(dest, "wb") if own else dest
        parts, count, failure = [], [0], []

        def write(data, n, _ctx):
            try:
                chunk = ctypes.string_at(data, n)
                if out is None:
                    parts.append(chunk)
                else:
                    out.write(chunk)
                count[0] += n
                return 0
            except Exception as e:
                failure.append(e)
                return 5
        try:
            _raising(failure, lambda: _call(_lib.tandem_blob_read, self._handle, _b(hash, "hash"),
                                            offset, _WRITE_FN(write), None))
        finally:
            if own:
                out.close()
        return b"".join(parts) if dest is None else count[0]

    def blob_info(self, hash):  # noqa: A002
        """{"hash", "size", "state" ("complete", "wanted", "requested"), "chunks",
        "chunks_held"}; NotFoundError if no field references it."""
        if isinstance(hash, dict):
            hash = hash.get("$blob")
        return _json_out(_lib.tandem_blob_info, self._handle, _b(hash, "hash"))

    # -- backup, checks --
    def backup(self, dest):
        _call(_lib.tandem_backup, self._handle, _b(os.fspath(dest)))

    def check(self):
        return _json_out(_lib.tandem_check, self._handle)

    # -- sync --
    def node(self, listen=None, peers=(), mode="live", interval=0, discover=False, send=None,
             receive=None, idle_timeout=45, stop_timeout_ms=5000, on_event=None):
        """A sync node over this replica (not started): see Node. `peers` is one
        "HOST:PORT" or a list of them; `send` and `receive` a list of collections or one
        "coll1,coll2" string (None: every one)."""
        return Node(self, listen, peers, mode, interval, discover, send, receive, idle_timeout,
                    stop_timeout_ms, on_event)


class Batch:
    """Operations recorded one by one (each checked at once) and committed together."""

    def __init__(self, replica):
        self._db = replica
        h = _vp()
        _call(_lib.tandem_batch_new, ctypes.byref(h))
        self._h = h

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.close()

    def close(self):
        if self._h:
            _lib.tandem_batch_free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass

    def __len__(self):
        return _lib.tandem_batch_count(self._h) if self._h else 0

    def put(self, collection, id, fields=None, /, **kw):
        data = _fields_json(_merged_fields(fields, kw))
        _call(_lib.tandem_batch_put_json, self._h, _b(collection), _b(id), data, len(data))

    def put_field(self, collection, id, field, value):
        """One field, without JSON: the fastest way to write many values."""
        _call(_lib.tandem_batch_put, self._h, _b(collection), _b(id), _b(field),
              _ScalarValue(value).ref())

    def incr(self, collection, id, field, by=1):
        _call(_lib.tandem_batch_incr, self._h, _b(collection), _b(id), _b(field),
              _whole(by, _I64, "an increment"))

    def add(self, collection, id, field, element):
        _call(_lib.tandem_batch_add, self._h, _b(collection), _b(id), _b(field),
              _ScalarValue(element).ref())

    def remove(self, collection, id, field, element):
        _call(_lib.tandem_batch_remove, self._h, _b(collection), _b(id), _b(field),
              _ScalarValue(element).ref())

    def delete(self, collection, id):
        _call(_lib.tandem_batch_delete, self._h, _b(collection), _b(id))

    def commit(self):
        """Writes everything in one transaction, then empties the batch."""
        _call(_lib.tandem_db_write, self._db._handle, self._h)
        _call(_lib.tandem_batch_clear, self._h)


class Subscription:
    """Changes after a cursor, by callback (on a library thread) or by polling:
    fileno() for select/poll/asyncio, drain() for what arrived, iteration to block."""

    def __init__(self, replica, since, callback):
        self._replica = replica  # keeps the handle's owner alive
        self._h = _vp()
        self._callback = callback
        self._fn = _CHANGE_FN(0)
        if callback is not None:
            def trampoline(data, length, cursor, _ctx):
                try:
                    callback(_decode(json.loads(ctypes.string_at(data, length).decode())))
                except Exception:  # never let an exception cross into C
                    import traceback
                    traceback.print_exc()
            self._fn = _CHANGE_FN(trampoline)
        _call(_lib.tandem_watch_new, ctypes.byref(self._h), replica._handle, since, self._fn,
              None)
        self._lock = threading.Lock()
        self.cursor = since

    def fileno(self):
        fd = _int()
        _call(_lib.tandem_watch_fd, ctypes.byref(fd), self._h)
        return fd.value

    def drain(self):
        nxt = _u64()
        out, n = _vp(), _sz()
        with self._lock:
            _call(_lib.tandem_watch_drain, ctypes.byref(out), ctypes.byref(n), ctypes.byref(nxt),
                  self._h)
            self.cursor = nxt.value
        return _decode(json.loads(_take(out, n)))

    def wait(self, timeout=None):
        """Blocks until there may be changes; False on timeout."""
        r, _, _ = select.select([self.fileno()], [], [], timeout)
        return bool(r)

    def __iter__(self):
        while self._h:
            for c in self.drain():
                yield c
            self.wait()

    def close(self):
        if self._h:
            _lib.tandem_watch_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass


_MODES = {"live": 0, "interval": 1, "once": 2}
_EVENT_NAMES = ["listening", "connected", "caught_up", "disconnected", "refused", "error",
                "joined", "invite_redeemed", "done", "stopped"]


class Node:
    """A sync node: syncs the replica with peers on a thread of its own.

    on_event(event_dict) is called on the node's thread; events are also queued for
    events() / fileno(). Use as a context manager (starts, and stops on exit)."""

    def __init__(self, replica, listen, peers, mode, interval, discover, send, receive,
                 idle_timeout, stop_timeout_ms, on_event):
        if mode not in _MODES:
            raise InvalidError("mode is 'live', 'interval' or 'once'", 2)
        self._replica = replica
        if isinstance(peers, (str, bytes)):
            peers = [peers]  # one peer, not its characters
        self._peers = (_cp * max(1, len(peers)))(*[_b(p) for p in peers])
        opts = _NodeOptions(1, _b(listen), self._peers, len(peers), _MODES[mode],
                            _whole(interval, _I32, "interval"), int(bool(discover)),
                            _names(send, "send"), _names(receive, "receive"),
                            _whole(idle_timeout, _I32, "idle_timeout"),
                            _whole(stop_timeout_ms, _I32, "stop_timeout_ms"))
        self._fn = _EVENT_FN(0)
        if on_event is not None:
            def trampoline(ev, _ctx):
                e = ev.contents
                try:
                    on_event({"kind": _EVENT_NAMES[e.kind],
                              "device": (e.device or b"").decode("utf-8", "replace"),
                              "address": (e.address or b"").decode("utf-8", "replace"),
                              "message": (e.message or b"").decode("utf-8", "replace"),
                              "ok": bool(e.ok), "fields_received": e.fields_received,
                              "fields_sent": e.fields_sent})
                except Exception:
                    import traceback
                    traceback.print_exc()
            self._fn = _EVENT_FN(trampoline)
        self._h = _vp()
        _call(_lib.tandem_node_new, ctypes.byref(self._h), replica._handle, ctypes.byref(opts),
              self._fn, None)

    def start(self):
        _call(_lib.tandem_node_start, self._h)
        return self

    def stop(self):
        if self._h:
            _call(_lib.tandem_node_stop, self._h)

    def wait(self, timeout=None):
        """Blocks until the node stops (mode "once": when done); False on timeout."""
        ms = -1 if timeout is None else int(timeout * 1000)
        try:
            _call(_lib.tandem_node_wait, self._h, ms)
            return True
        except BusyError:
            return False

    @property
    def listen_address(self):
        out = _vp()
        _call(_lib.tandem_node_listen_address, ctypes.byref(out), self._h)
        return _take(out)

    def status(self):
        """What `tandem status` shows: peers, connected, last sync, bytes, errors."""
        return _json_out(_lib.tandem_node_status, self._h)

    def fileno(self):
        fd = _int()
        _call(_lib.tandem_node_event_fd, ctypes.byref(fd), self._h)
        return fd.value

    def events(self):
        """The queued events (dicts with "kind"), oldest first."""
        return _json_out(_lib.tandem_node_drain_events, self._h)

    def close(self):
        if self._h:
            _lib.tandem_node_free(self._h)
            self._h = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass
