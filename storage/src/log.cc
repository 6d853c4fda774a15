// The change log: reading its live entries, and its upkeep (compaction in slices, the
// repack that rewrites it whole). Its appends are LmdbWriteTxn::PutField's.
#include "lmdb_internal.h"

namespace tandem::storage {

namespace {

// Whether the entry `seq` of the log, naming the field key `fk`, is live: the field's
// stored value names that seq. `value` gets that stored value. A later write of the
// field appended another entry, or the field is gone: the entry is stale.
Status EntryLive(const LmdbStore::Impl& impl, MDB_txn* txn, uint64_t seq, const MDB_val& fk,
                 MDB_val* value, bool* live) {
  *live = false;
  MDB_val k = fk;
  int rc = mdb_get(txn, impl.fields, &k, value);
  if (rc == MDB_NOTFOUND) return Status::Ok();
  if (rc) return LmdbError(rc, "read field");
  uint64_t at;
  std::string_view ignored;
  TANDEM_RETURN_IF_ERROR(LmdbReader::SplitValue(View(*value), &at, &ignored));
  *live = at == seq;
  return Status::Ok();
}

Status LogSeq(const MDB_val& k, uint64_t* seq) {
  if (k.mv_size != 8) return Status::Corrupt("change-log key has the wrong size");
  std::memcpy(seq, k.mv_data, 8);
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
  uint64_t start = since + 1;
  MDB_val k{8, &start}, v;
  Status st;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    uint64_t seq;
    MDB_val value;
    bool live;
    if (!(st = LogSeq(k, &seq)).ok() || !(st = EntryLive(impl, txn, seq, v, &value, &live)).ok())
      break;
    if (!fn(seq, View(v), live ? &value : nullptr, &st)) break;
  }
  mdb_cursor_close(cur);
  if (st.ok() && rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan log");
  return st;
}

// Copies `from` into `to` in key order, appending (each page filled); with `live_only`,
// `from` is the log and its stale entries stay behind.
Status CopyTable(LmdbStore::Impl& impl, MDB_txn* txn, MDB_dbi from, MDB_dbi to, bool live_only,
                 const char* what) {
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn, from, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  MDB_val k, v;
  Status st;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (live_only) {
      uint64_t seq = 0;
      MDB_val value;
      bool live;
      if (!(st = LogSeq(k, &seq)).ok() || !(st = EntryLive(impl, txn, seq, v, &value, &live)).ok())
        break;
      if (!live) continue;
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

Status LmdbReader::ScanLogFields(uint64_t since, const engine::ReadTxn::LogFieldFn& fn) {
  return ScanEntries(
      *impl_, txn_, since, [&](uint64_t seq, std::string_view k, const MDB_val* value, Status* st) {
        FieldKey key;
        if (!impl_->DecodeKey(k, &key)) {
          *st = Status::Corrupt("change-log entry names a malformed key");
          return false;
        }
        if (!value) return fn(seq, key, nullptr);
        FieldState s;
        *st = DecodeField(*value, &s).With(key.collection + "/" + key.record + "." + key.field);
        return st->ok() && fn(seq, key, &s);
      });
}

Status LmdbReader::CountLog(uint64_t since, uint64_t cap, uint64_t* out) {
  *out = 0;
  if (since == UINT64_MAX || cap == 0) return Status::Ok();
  MDB_cursor* cur;
  int rc = mdb_cursor_open(txn_, impl_->log, &cur);
  if (rc) return LmdbError(rc, "open cursor");
  uint64_t start = since + 1;
  MDB_val k{8, &start}, v;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && ++*out < cap;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
  }
  mdb_cursor_close(cur);
  return rc && rc != MDB_NOTFOUND ? LmdbError(rc, "count log") : Status::Ok();
}

Status CompactLog(LmdbStore::Impl& impl, MDB_txn* txn) {
  MDB_stat log, fields;
  if (int rc = mdb_stat(txn, impl.log, &log)) return impl.Note(rc, "read log size");
  if (int rc = mdb_stat(txn, impl.fields, &fields)) return impl.Note(rc, "read fields size");
  const size_t stale = log.ms_entries > fields.ms_entries ? log.ms_entries - fields.ms_entries : 0;
  if (stale <= impl.compact_floor + fields.ms_entries / 4) return Status::Ok();
  MDB_val k = Val("log-compact-at"), v;
  uint64_t at = 0;
  int rc = mdb_get(txn, impl.meta, &k, &v);
  if (rc == 0 && v.mv_size == 8) std::memcpy(&at, v.mv_data, 8);
  if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "read log compaction");
  std::vector<uint64_t> drop;
  size_t seen = 0;
  uint64_t next = 0;  // the end: the next slice starts over
  TANDEM_RETURN_IF_ERROR(ScanEntries(
      impl, txn, at, [&](uint64_t seq, std::string_view, const MDB_val* value, Status*) {
        if (seen++ == impl.compact_slice) return false;
        next = seq;
        if (!value) drop.push_back(seq);
        return true;
      }));
  if (seen <= impl.compact_slice) next = 0;
  for (uint64_t seq : drop) {
    MDB_val lk{8, &seq};
    rc = mdb_del(txn, impl.log, &lk, nullptr);
    if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "compact log");
  }
  v = MDB_val{8, &next};
  if ((rc = mdb_put(txn, impl.meta, &k, &v, 0))) return impl.Note(rc, "compact log");
  return Status::Ok();
}

Status RepackFieldsAndLog(LmdbStore::Impl& impl, MDB_txn* txn) {
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
    TANDEM_RETURN_IF_ERROR(CopyTable(impl, txn, t.dbi, temp, t.dbi == impl.log, what.c_str()));
    if ((rc = mdb_drop(txn, t.dbi, 0))) return impl.Note(rc, what);
    TANDEM_RETURN_IF_ERROR(CopyTable(impl, txn, temp, t.dbi, false, what.c_str()));
    if ((rc = mdb_drop(txn, temp, 1))) return impl.Note(rc, what);
  }
  return Status::Ok();
}

}  // namespace tandem::storage
