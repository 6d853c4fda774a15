"""The C library, loaded, and the ctypes declarations of what the package calls."""

import ctypes
import ctypes.util
import os
from pathlib import Path

# ---- Loading the library -----------------------------------------------------------


def _find_library():
    env = os.environ.get("TANDEM_LIBRARY")
    if env:
        return env
    build = Path(__file__).resolve().parents[3] / "build" / "libtandem.so"
    if build.exists():
        return str(build)
    found = ctypes.util.find_library("tandem")
    return found or "libtandem.so.0"


try:
    _lib = ctypes.CDLL(_find_library())
except OSError as e:  # pragma: no cover - depends on the machine
    raise ImportError(
        "tandem: cannot load libtandem (%s); build it (make) or set TANDEM_LIBRARY" % e
    ) from e

_c = ctypes
_P = ctypes.POINTER
_cp = ctypes.c_char_p
_vp = ctypes.c_void_p
_sz = ctypes.c_size_t
_int = ctypes.c_int
_u64 = ctypes.c_uint64
_i64 = ctypes.c_int64


class _Error(ctypes.Structure):
    _fields_ = [("status", _int), ("message", ctypes.c_char * 512)]


class _Value(ctypes.Structure):
    _fields_ = [("type", _int), ("i", _i64), ("d", ctypes.c_double),
                ("data", ctypes.c_void_p), ("len", _sz)]


class _OpenOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("durability", _int)]


class _NodeOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("listen", _cp), ("peers", _P(_cp)),
                ("peer_count", _sz), ("mode", _int), ("interval_s", _int), ("discover", _int),
                ("send", _cp), ("receive", _cp), ("idle_timeout_s", _int),
                ("stop_timeout_ms", _int)]


class _NodeEvent(ctypes.Structure):
    _fields_ = [("kind", _int), ("device", _cp), ("address", _cp), ("message", _cp),
                ("ok", _int), ("fields_received", _u64), ("fields_sent", _u64)]


_ERR = _P(_Error)
_OUTS = _P(_vp)  # char** (kept as void* to free it ourselves)
_CHANGE_FN = ctypes.CFUNCTYPE(None, _vp, _sz, _u64, _vp)
_READ_FN = ctypes.CFUNCTYPE(_int, _vp, _sz, _P(_sz), _vp)
_WRITE_FN = ctypes.CFUNCTYPE(_int, _vp, _sz, _vp)
_EVENT_FN = ctypes.CFUNCTYPE(None, _P(_NodeEvent), _vp)

_SIGNATURES = {
    "tandem_status_str": (_cp, [_int]),
    "tandem_version": (_cp, []),
    "tandem_free": (None, [_vp]),
    "tandem_db_create": (_int, [_P(_vp), _cp, _P(_OpenOptions), _ERR]),
    "tandem_db_open": (_int, [_P(_vp), _cp, _P(_OpenOptions), _ERR]),
    "tandem_db_close": (None, [_vp]),
    "tandem_db_info": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
    "tandem_db_device_id": (_int, [_OUTS, _vp, _ERR]),
    "tandem_put": (_int, [_vp, _cp, _cp, _cp, _P(_Value), _ERR]),
    "tandem_put_json": (_int, [_vp, _cp, _cp, _cp, _sz, _ERR]),
    "tandem_incr": (_int, [_vp, _cp, _cp, _cp, _i64, _ERR]),
    "tandem_add": (_int, [_vp, _cp, _cp, _cp, _P(_Value), _ERR]),
    "tandem_remove": (_int, [_vp, _cp, _cp, _cp, _P(_Value), _ERR]),
    "tandem_delete": (_int, [_vp, _cp, _cp, _ERR]),
    "tandem_batch_new": (_int, [_P(_vp), _ERR]),
    "tandem_batch_free": (None, [_vp]),
    "tandem_batch_clear": (_int, [_vp, _ERR]),
    "tandem_batch_count": (_sz, [_vp]),
    "tandem_batch_put": (_int, [_vp, _cp, _cp, _cp, _P(_Value), _ERR]),
    "tandem_batch_put_json": (_int, [_vp, _cp, _cp, _cp, _sz, _ERR]),
    "tandem_batch_incr": (_int, [_vp, _cp, _cp, _cp, _i64, _ERR]),
    "tandem_batch_add": (_int, [_vp, _cp, _cp, _cp, _P(_Value), _ERR]),
    "tandem_batch_remove": (_int, [_vp, _cp, _cp, _cp, _P(_Value), _ERR]),
    "tandem_batch_delete": (_int, [_vp, _cp, _cp, _ERR]),
    "tandem_db_write": (_int, [_vp, _vp, _ERR]),
    "tandem_get_json": (_int, [_OUTS, _P(_sz), _vp, _cp, _cp, _ERR]),
    "tandem_collections": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
    "tandem_iter_new": (_int, [_P(_vp), _vp, _cp, _cp, _ERR]),
    "tandem_iter_free": (None, [_vp]),
    "tandem_iter_next": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
    "tandem_conflicts_json": (_int, [_OUTS, _P(_sz), _vp, _cp, _cp, _ERR]),
    "tandem_schema_set": (_int, [_vp, _cp, _cp, _P(_i64), _ERR]),
    "tandem_schema_get": (_int, [_OUTS, _P(_sz), _P(_i64), _vp, _cp, _ERR]),
    "tandem_changes": (_int, [_OUTS, _P(_sz), _P(_u64), _vp, _u64, _sz, _ERR]),
    "tandem_watch_new": (_int, [_P(_vp), _vp, _u64, _CHANGE_FN, _vp, _ERR]),
    "tandem_watch_free": (None, [_vp]),
    "tandem_watch_fd": (_int, [_P(_int), _vp, _ERR]),
    "tandem_watch_drain": (_int, [_OUTS, _P(_sz), _P(_u64), _vp, _ERR]),
    "tandem_invite": (_int, [_OUTS, _P(_sz), _vp, _P(_cp), _sz, _int, _ERR]),
    "tandem_invite_role": (_int, [_OUTS, _P(_sz), _vp, _P(_cp), _sz, _int, _cp, _ERR]),
    "tandem_set_role": (_int, [_vp, _cp, _cp, _ERR]),
    "tandem_join": (_int, [_vp, _cp, _sz, _ERR]),
    "tandem_join_cancel": (_int, [_vp, _ERR]),
    "tandem_devices": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
    "tandem_revoke": (_int, [_vp, _cp, _ERR]),
    "tandem_backup": (_int, [_vp, _cp, _ERR]),
    "tandem_restore": (_int, [_cp, _cp, _ERR]),
    "tandem_check": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
    "tandem_attach": (_int, [_OUTS, _P(_sz), _vp, _cp, _cp, _cp, _READ_FN, _vp, _cp, _ERR]),
    "tandem_blob_read": (_int, [_vp, _cp, _u64, _WRITE_FN, _vp, _ERR]),
    "tandem_blob_info": (_int, [_OUTS, _P(_sz), _vp, _cp, _ERR]),
    "tandem_node_new": (_int, [_P(_vp), _vp, _P(_NodeOptions), _EVENT_FN, _vp, _ERR]),
    "tandem_node_start": (_int, [_vp, _ERR]),
    "tandem_node_stop": (_int, [_vp, _ERR]),
    "tandem_node_wait": (_int, [_vp, _int, _ERR]),
    "tandem_node_free": (None, [_vp]),
    "tandem_node_status": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
    "tandem_node_listen_address": (_int, [_OUTS, _vp, _ERR]),
    "tandem_node_event_fd": (_int, [_P(_int), _vp, _ERR]),
    "tandem_node_drain_events": (_int, [_OUTS, _P(_sz), _vp, _ERR]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(_lib, _name)
    _f.restype = _res
    _f.argtypes = _args
