// The change log: reading its live entries, and its upkeep (compaction in slices, the
// repack that rewrites it whole). Its appends are LmdbWriteTxn::PutField's.
#include "delta_read.h"
#include "lmdb_internal.h"
#include "log_run.h"

namespace tandem::storage {

namespace {

Status LogSeq(const MDB_val& k, uint64_t* seq) {
  if (k.mv_size != 8) return Status::Corrupt("change-log key has the wrong size");
  std::memcpy(seq, k.mv_data, 8);
  return Status::Ok();
}

// Puts `cur` on the stored entry that holds seq `start` (a run may begin before it) or,
// if none does, on the first after it. Returns what mdb_cursor_get does.
int SeekLog(MDB_cursor* cur, uint64_t start, MDB_val* k, MDB_val* v) {
  uint64_t s = start;
  *k = MDB_val{8, &s};
  const int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
  if (rc == 0 && k->mv_size == 8 && std::memcmp(k->mv_data, &start, 8) == 0) return 0;
  if (rc && rc != MDB_NOTFOUND) return rc;
  const int prc = mdb_cursor_get(cur, k, v, rc == 0 ? MDB_PREV : MDB_LAST);
  if (prc != MDB_NOTFOUND || rc == MDB_NOTFOUND) return prc;
  *k = MDB_val{8, &s};  // nothing before: the first entry after `start`
  return mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
}

// Whether the log's entry at `seq` names the field key `fk`.
Status LogNames(const LmdbStore::Impl& impl, MDB_txn* txn, uint64_t seq, std::string_view fk,
                bool* out) {
  *out = false;
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn, impl.log, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  MDB_val k, v;
  Status st;
  if ((rc = SeekLog(cur, seq, &k, &v)) == 0) {
    uint64_t key_seq = 0;
    st = LogSeq(k, &key_seq);
    if (st.ok())
      st = ForEachLogEntry(key_seq, View(v), [&](uint64_t s, std::string_view key) {
        if (s == seq) *out = key == fk;
        return s < seq;
      });
  }
  mdb_cursor_close(cur);
  if (!st.ok()) return st;
  return rc && rc != MDB_NOTFOUND ? LmdbError(rc, "read log") : Status::Ok();
}

// Whether the entry `seq` of the log, naming the field key `fk`, is live: the field's
// stored value names that seq. `value` gets that stored value. A later write of the
// field appended another entry, or the field is gone: the entry is stale.
Status EntryLive(const LmdbStore::Impl& impl, MDB_txn* txn, uint64_t seq, const MDB_val& fk,
                 MDB_val* value, bool* live) {
  *live = false;
  int rc = FieldValue(impl, txn, fk, value);
  if (rc == MDB_NOTFOUND) return Status::Ok();
  if (rc) return LmdbError(rc, "read field");
  uint64_t at = 0;
  bool suspect = !ValueSeq(View(*value), &at).ok() || at < seq;
  if (!suspect && at == seq) {
    *live = true;
    return Status::Ok();
  }
  // Stale as a later write leaves it: the value names a later entry of this field. A
  // value whose position bytes were damaged names another (or none), and its field would
  // drop out of every scan and compaction unseen, its events claimed in full: one that
  // fails its checksum is taken as live, so that the reader finds the damage.
  if (!suspect) {
    bool names = false;
    TANDEM_RETURN_IF_ERROR(LogNames(impl, txn, at, View(fk), &names));
    suspect = !names;
  }
  std::string_view state;
  *live = suspect && !SplitValue(View(fk), View(*value), &at, &state).ok();
  return Status::Ok();
}

// Log entries after `since`, ascending, until fn returns false: fn(seq, key bytes,
// value, &status) gets the field's stored value when the entry is live, null when it is
// stale. Stale entries are left for CompactLog, so that a write does not touch the page
// of the field's previous entry.
template <typename Fn>
Status ScanEntries(const LmdbStore::Impl& impl, MDB_txn* txn, uint64_t since, Fn fn) {
  if (since == UINT64_MAX) return Status::Ok();  // nothing can come after
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn, impl.log, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  const uint64_t start = since + 1;
  MDB_val k, v;
  Status st, inner;
  bool go = true;
  uint64_t prev = 0;
  for (rc = SeekLog(cur, start, &k, &v); rc == 0 && go;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    uint64_t key_seq = 0;
    if (!(st = LogSeq(k, &key_seq)).ok()) break;
    st = ForEachLogEntry(key_seq, View(v), [&](uint64_t seq, std::string_view fk) {
      // Ascending across stored entries too (a run reaching past the next is corrupt).
      if (seq <= prev) {
        inner = Status::Corrupt("change-log entries out of order at seq " + std::to_string(seq));
        return go = false;
      }
      prev = seq;
      if (seq < start) return true;
      MDB_val value;
      bool live;
      if (!(inner = EntryLive(impl, txn, seq, Val(fk), &value, &live)).ok() ||
          !fn(seq, fk, live ? &value : nullptr, &inner))
        go = false;
      return go;
    });
    if (st.ok()) st = inner;
    if (!st.ok() || !go) break;
  }
  mdb_cursor_close(cur);
  if (st.ok() && go && rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan log");
  return st;
}

// The entries of one stored log entry that are live, as a run (empty: none is);
// *examined and *dropped count its entries and the stale ones.
Status LiveOf(const LmdbStore::Impl& impl, MDB_txn* txn, const MDB_val& k, const MDB_val& v,
              LogRunWriter* live, size_t* examined, size_t* dropped, uint64_t* last) {
  uint64_t key_seq = 0;
  TANDEM_RETURN_IF_ERROR(LogSeq(k, &key_seq));
  live->Clear();
  Status inner;
  TANDEM_RETURN_IF_ERROR(ForEachLogEntry(key_seq, View(v), [&](uint64_t seq, std::string_view fk) {
    MDB_val value;
    bool is_live;
    if (!(inner = EntryLive(impl, txn, seq, Val(fk), &value, &is_live)).ok()) return false;
    ++*examined;
    *last = seq;
    if (is_live) {
      live->Add(seq, fk);
    } else {
      ++*dropped;
    }
    return true;
  }));
  return inner;
}

// Copies `from` into `to` in key order, appending (each page filled); with `live`, `from`
// is the log, its stale entries stay behind and *live gets how many entries were copied.
Status CopyTable(LmdbStore::Impl& impl, MDB_txn* txn, MDB_dbi from, MDB_dbi to, uint64_t* live,
                 const char* what) {
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn, from, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  MDB_val k, v;
  Status st;
  LogRunWriter run;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (live) {
      size_t examined = 0, dropped = 0;
      uint64_t last = 0;
      if (!(st = LiveOf(impl, txn, k, v, &run, &examined, &dropped, &last)).ok()) break;
      if (run.empty()) continue;
      *live += run.entries();
      if (dropped) {  // what is left, as a run at its first entry
        uint64_t first = run.first();
        MDB_val rk{8, &first}, rv = Val(run.bytes());
        if ((rc = mdb_put(txn, to, &rk, &rv, MDB_APPEND))) break;
        continue;
      }
    }
    if ((rc = mdb_put(txn, to, &k, &v, MDB_APPEND))) break;
  }
  mdb_cursor_close(cur);
  if (!st.ok()) return st;
  return rc && rc != MDB_NOTFOUND ? impl.Note(rc, what) : Status::Ok();
}

}  // namespace

Status LmdbReader::ScanLog(uint64_t since, const engine::ReadTxn::LogFn& fn) {
  return ScanEntries(*impl_, txn_, since,
                     [&](uint64_t seq, std::string_view k, const MDB_val* value, Status* st) {
                       if (!value) return true;
                       FieldKey key;
                       if (!impl_->DecodeKey(k, &key)) {
                         *st = Status::Corrupt("change-log entry names a malformed key");
                         return false;
                       }
                       return fn(seq, key);
                     });
}

Status LmdbReader::ScanLogDeltas(uint64_t since, uint64_t large,
                                 const engine::ReadTxn::LogDeltaFn& fn) {
  auto each = [&](uint64_t seq, std::string_view k, const MDB_val* value, Status* st) {
    FieldKey key;
    if (!impl_->DecodeKey(k, &key)) {
      *st = Status::Corrupt("change-log entry names a malformed key");
      return false;
    }
    if (!value) return fn(seq, key, nullptr, nullptr);
    // Damaged bytes are handed out as such, not as the end of the scan: a reader may pass
    // them by (the sync withholds that field and goes on with the others).
    auto unread = [&](const Status& why) {
      if (why.code() != Code::kCorrupt) {
        *st = why.With(key.Name());
        return false;
      }
      const engine::ReadTxn::LargeState damaged{{}, 0, true};
      return fn(seq, key, nullptr, &damaged);
    };
    // Its delta encoding is the stored state with a replica table (16 bytes a replica, a
    // context entry at least 2) and the key: of a value a sixteenth as long, never over
    // `large`. Else the context alone tells.
    // (One stored out of line is large, and its value short.)
    if (value->mv_size > large / 16 || LmdbReader::OutOfLineValue(View(*value))) {
      StoredDelta d;
      // Checked: its context decides whether it is skipped or withheld.
      if (Status c = DeltaOf(*impl_, *this, key, k, View(*value), true, &d); !c.ok())
        return unread(c);
      if (d.size() > large) {
        const engine::ReadTxn::LargeState l{std::move(d.ctx), d.size()};
        return fn(seq, key, nullptr, &l);
      }
    }
    FieldState s;
    if (Status c = DecodeField(k, *value, &s); !c.ok()) return unread(c);
    return fn(seq, key, &s, nullptr);
  };
  return ScanEntries(*impl_, txn_, since, each);
}

Status LmdbReader::CountLog(uint64_t since, uint64_t cap, uint64_t* out) {
  *out = 0;
  if (since == UINT64_MAX || cap == 0) return Status::Ok();
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn_, impl_->log, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  const uint64_t start = since + 1;
  MDB_val k, v;
  Status st;
  for (rc = SeekLog(cur, start, &k, &v); rc == 0 && *out < cap;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    uint64_t key_seq = 0;
    if (!(st = LogSeq(k, &key_seq)).ok()) break;
    st = ForEachLogEntry(key_seq, View(v), [&](uint64_t seq, std::string_view) {
      return seq < start || ++*out < cap;
    });
    if (!st.ok()) break;
  }
  mdb_cursor_close(cur);
  if (!st.ok()) return st;
  return rc && rc != MDB_NOTFOUND ? LmdbError(rc, "count log") : Status::Ok();
}

namespace {

// How many entries `fields` and `fresh` hold.
Status CountFieldTables(LmdbStore::Impl& impl, MDB_txn* txn, MDB_stat* fields, MDB_stat* fresh) {
  if (int rc = mdb_stat(txn, impl.fields, fields)) return impl.Note(rc, "read fields size");
  if (int rc = mdb_stat(txn, impl.fresh, fresh)) return impl.Note(rc, "read fields size");
  return Status::Ok();
}

}  // namespace

Status CompactLog(LmdbStore::Impl& impl, MDB_txn* txn, uint64_t* entries) {
  // The fields, counting a key in both tables twice: the stale entries are counted short
  // by at most what `fresh` holds.
  MDB_stat fields, fresh;
  TANDEM_RETURN_IF_ERROR(CountFieldTables(impl, txn, &fields, &fresh));
  const uint64_t held = uint64_t{fields.ms_entries} + fresh.ms_entries;
  const uint64_t stale = *entries > held ? *entries - held : 0;
  if (stale <= impl.compact_floor + held / 4) return Status::Ok();
  MDB_val k = Val("log-compact-at"), v;
  uint64_t at = 0;
  int rc = mdb_get(txn, impl.meta, &k, &v);
  if (rc == 0 && v.mv_size == 8) std::memcpy(&at, v.mv_data, 8);
  if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "read log compaction");
  // A slice: whole stored entries from the one holding at + 1, until compact_slice log
  // entries are examined. What is rewritten is noted first, and written after the scan.
  struct Rewrite {
    uint64_t key;
    std::string run;  // the live entries (empty: none)
    uint64_t first;
  };
  std::vector<Rewrite> rewrites;
  size_t examined = 0, dropped = 0;
  uint64_t next = 0;  // the end: the next slice starts over
  MDB_cursor* cur;
  if ((rc = mdb_cursor_open(txn, impl.log, &cur))) return LmdbError(rc, "open cursor");
  Status st;
  LogRunWriter live;
  for (rc = SeekLog(cur, at + 1, &k, &v); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (examined >= impl.compact_slice) break;
    size_t d = 0;
    uint64_t last = 0;
    if (!(st = LiveOf(impl, txn, k, v, &live, &examined, &d, &last)).ok()) break;
    next = last;
    if (!d) continue;
    dropped += d;
    uint64_t key_seq = 0;
    std::memcpy(&key_seq, k.mv_data, 8);
    rewrites.push_back(
        Rewrite{key_seq, live.empty() ? std::string() : std::string(live.bytes()), live.first()});
  }
  mdb_cursor_close(cur);
  if (!st.ok()) return st;
  if (rc == MDB_NOTFOUND)
    next = 0;
  else if (rc)
    return LmdbError(rc, "compact log");
  for (Rewrite& r : rewrites) {
    MDB_val lk{8, &r.key};
    rc = mdb_del(txn, impl.log, &lk, nullptr);
    if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "compact log");
    if (r.run.empty()) continue;
    MDB_val nk{8, &r.first}, nv = Val(r.run);
    if ((rc = mdb_put(txn, impl.log, &nk, &nv, 0))) return impl.Note(rc, "compact log");
  }
  *entries -= std::min<uint64_t>(*entries, dropped);
  k = Val("log-compact-at");
  v = MDB_val{8, &next};
  if ((rc = mdb_put(txn, impl.meta, &k, &v, 0))) return impl.Note(rc, "compact log");
  return Status::Ok();
}

Status FoldFresh(LmdbStore::Impl& impl, MDB_txn* txn, size_t wrote, bool all) {
  MDB_stat fields, fresh;
  TANDEM_RETURN_IF_ERROR(CountFieldTables(impl, txn, &fields, &fresh));
  if (!all && fresh.ms_entries <= impl.fold_floor + fields.ms_entries / 16) return Status::Ok();
  const size_t slice = all ? SIZE_MAX : std::max(impl.fold_slice, wrote);
  // The slice is copied out before it is moved: pages of `fresh` read here may be freed
  // or spilled by the writes to `fields`.
  std::vector<std::pair<std::string, std::string>> moving;
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn, impl.fresh, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  // From fold_at to the end, then from the start back to fold_at; the next fold starts
  // where this one stops.
  const std::string from = all ? std::string() : impl.fold_at;
  std::string next;
  MDB_val k = Val(from), v;
  bool wrapped = from.empty();
  rc = mdb_cursor_get(cur, &k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE);
  for (;; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (rc == MDB_NOTFOUND && !wrapped) {
      wrapped = true;
      rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    if (rc == MDB_NOTFOUND || (rc == 0 && wrapped && !from.empty() && View(k) >= from)) {
      next = from;  // every entry taken
      break;
    }
    if (rc) break;
    if (moving.size() == slice) {
      next = std::string(View(k));
      break;
    }
    moving.emplace_back(View(k), View(v));
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "fold fresh fields");
  if ((rc = mdb_cursor_open(txn, impl.fields, &cur))) return LmdbError(rc, "open cursor");
  for (const auto& [key, value] : moving) {
    MDB_val mk = Val(key), mv = Val(value);
    if ((rc = mdb_cursor_put(cur, &mk, &mv, 0))) break;
    mk = Val(key);
    if ((rc = mdb_del(txn, impl.fresh, &mk, nullptr))) break;
  }
  mdb_cursor_close(cur);
  if (rc) return impl.Note(rc, "fold fresh fields");
  // A position only: a transaction that does not commit skips a slice until the next
  // round, which folds it.
  impl.fold_at = std::move(next);
  return Status::Ok();
}

Status RepackFieldsAndLog(LmdbStore::Impl& impl, MDB_txn* txn, uint64_t* entries) {
  TANDEM_RETURN_IF_ERROR(FoldFresh(impl, txn, 0, true));
  struct Table {
    MDB_dbi dbi;
    const char* temp;
    unsigned flags;
  };
  for (const Table& t : {Table{impl.fields, "repack-fields", 0u},
                         Table{impl.log, "repack-log", unsigned{MDB_INTEGERKEY}}}) {
    const std::string what = std::string("repack ") + t.temp;
    MDB_dbi temp;
    int rc = mdb_dbi_open(txn, t.temp, MDB_CREATE | t.flags, &temp);
    if (!rc) rc = mdb_drop(txn, temp, 0);  // left by a repack that failed: start empty
    if (rc) return impl.Note(rc, what);
    // Out to the copy, then back: the stale log entries stay behind.
    uint64_t live = 0;
    TANDEM_RETURN_IF_ERROR(
        CopyTable(impl, txn, t.dbi, temp, t.dbi == impl.log ? &live : nullptr, what.c_str()));
    if (t.dbi == impl.log) *entries = live;
    if ((rc = mdb_drop(txn, t.dbi, 0))) return impl.Note(rc, what);
    TANDEM_RETURN_IF_ERROR(CopyTable(impl, txn, temp, t.dbi, nullptr, what.c_str()));
    if ((rc = mdb_drop(txn, temp, 1))) return impl.Note(rc, what);
  }
  return Status::Ok();
}

}  // namespace tandem::storage
