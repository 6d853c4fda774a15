// The LMDB store's insides, shared by its source files (one per responsibility):
//   lmdb_store.cc  the environment: opening and creating, the map, transactions
//   log.cc         the change log: its live entries, compaction, repack
//   backup.cc      backup and restore of a replica directory
//   check.cc       the integrity check
// and headers of their own for the LMDB value helpers (lmdb_val.h), the interned tables
// (intern_table.h) and the two field tables read as one (fields_cursor.h).
#pragma once

#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "field_value.h"
#include "fields_cursor.h"
#include "intern_table.h"
#include "lmdb_val.h"
#include "log_run.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {

namespace fs = std::filesystem;
using engine::FieldKey;
using engine::FieldState;
using engine::RecordState;
using engine::ReplicaId;
using engine::ReplicaMeta;

inline constexpr size_t kMaxMapBytes = size_t{1} << 40;  // 1 TiB of address space at most

// A write error on a (nearly) full filesystem as a message that says so; OK otherwise.
Status DiskError(int rc, const std::string& what, const std::string& dir);
std::string EncodeMeta(const ReplicaMeta& m);
Result<ReplicaMeta> DecodeMeta(std::string_view in);
// The gaps the change log skipped (meta `log-gaps`): (from, to) pairs, ascending, no
// entry strictly between.
using LogGaps = std::vector<std::pair<uint64_t, uint64_t>>;
std::string EncodeLogGaps(const LogGaps& gaps);
Result<LogGaps> DecodeLogGaps(std::string_view in);
// Meta `collected-in` (format 14): version 1, then per collection (ascending, each named
// once, at most ReadTxn::kMaxCollectedIn) its name and vector.
std::string EncodeCollectedIn(const engine::ReadTxn::CollectedIn& in);
Result<engine::ReadTxn::CollectedIn> DecodeCollectedIn(std::string_view in);

// fcntl(fd, cmd) with a lock of `type` on the first byte of lock.mdb, where LMDB holds a
// shared lock in every process that has the environment open; *out gets what F_GETLK
// reports. False if fcntl fails.
inline bool FirstByteLock(int fd, int cmd, short type, struct flock* out = nullptr) {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = 0;
  l.l_len = 1;
  const bool ok = ::fcntl(fd, cmd, &l) == 0;
  if (out) *out = l;
  return ok;
}

struct LmdbStore::Impl {
  MDB_env* env = nullptr;
  std::string dir;
  // A copy opened to be read (Options::inspect): it keeps its original's replica id, so
  // every write transaction is refused (BeginTxn).
  bool inspected_copy = false;
  // A replica on a read-only medium opened to be read (Options::inspect): the environment
  // is read-only and has no lock file; every write transaction is refused (BeginTxn).
  bool read_only = false;
  MDB_dbi meta = 0, fields = 0, log = 0, replicas = 0, names_db = 0, peers = 0;
  // Field values written since the last fold, over `fields`: a key in both has its value
  // here (FieldValue, FieldsCursor, FoldFresh).
  MDB_dbi fresh = 0;
  // Blob entries (key: a state letter, 'b' complete, 'w' wanted, 'p' pending, then the
  // 32-byte hash; value: EncodeBlobInfo) and chunks (key: the chunk's hash).
  MDB_dbi blobs = 0, chunks = 0;
  LmdbReplicaTable table;
  // Collection and field names, interned: a stored key is
  // varint(collection index) record \0 varint(field index).
  InternTable<std::string> names;

  static void PutVarint(std::string* out, uint64_t v) { engine::Writer(out).Varint(v); }

  Status RefreshTables(MDB_txn* txn) {
    TANDEM_RETURN_IF_ERROR(table.t.Refresh(txn, replicas, "replica table"));
    return names.Refresh(txn, names_db, "name table");
  }

  std::string CollectionPrefix(uint64_t coll) const {
    std::string k;
    PutVarint(&k, coll);
    return k;
  }
  // The stored key of a field; nullopt if a name was never stored (so neither was the
  // field), unless `intern` adds it.
  std::optional<std::string> Key(std::string_view coll, std::string_view rec,
                                 std::string_view field, bool intern) {
    std::optional<uint64_t> c, f;
    if (intern) {
      c = names.Intern(coll);
      f = names.Intern(field);
    } else {
      c = names.Find(coll);
      f = names.Find(field);
      if (!c || !f) return std::nullopt;
    }
    return KeyOf(*c, rec, *f);
  }
  static std::string KeyOf(uint64_t coll, std::string_view rec, uint64_t field) {
    std::string k;
    AppendKey(&k, coll, rec, field);
    return k;
  }
  static void AppendKey(std::string* out, uint64_t coll, std::string_view rec, uint64_t field) {
    // Built on the stack and appended at once (each append costs a call): a key is
    // built for every write.
    char buf[96];
    if (rec.size() > sizeof buf - 21) {
      PutVarint(out, coll);
      out->append(rec);
      out->push_back('\0');
      PutVarint(out, field);
      return;
    }
    size_t n = engine::PutVarint(buf, coll);
    std::memcpy(buf + n, rec.data(), rec.size());
    n += rec.size();
    buf[n++] = '\0';
    n += engine::PutVarint(buf + n, field);
    out->append(buf, n);
  }
  std::optional<std::string> RecordPrefix(std::string_view coll, std::string_view rec) {
    auto c = names.Find(coll);
    if (!c) return std::nullopt;
    std::string k = CollectionPrefix(*c);
    k.append(rec);
    k.push_back('\0');
    return k;
  }
  bool DecodeKey(std::string_view key, FieldKey* out) const {
    engine::Reader r(key);
    uint64_t c = r.Varint();
    if (!r.ok() || !names.At(c, &out->collection)) return false;
    std::string_view rest = key.substr(key.size() - r.remaining());
    size_t nul = rest.find('\0');
    if (nul == std::string_view::npos || nul == 0) return false;
    out->record = std::string(rest.substr(0, nul));
    engine::Reader fr(rest.substr(nul + 1));
    uint64_t f = fr.Varint();
    return fr.ok() && fr.remaining() == 0 && names.At(f, &out->field);
  }
  // Commit latencies (LmdbStore::CommitLatencies), lock-free.
  struct Histogram {
    std::array<std::atomic<uint64_t>, LmdbStore::CommitLatency::kBounds.size() + 1> buckets{};
    std::atomic<uint64_t> count{0}, sum_ns{0};
    void Observe(double seconds) {
      size_t i = 0;
      while (i < LmdbStore::CommitLatency::kBounds.size() &&
             seconds > LmdbStore::CommitLatency::kBounds[i])
        ++i;
      buckets[i].fetch_add(1, std::memory_order_relaxed);
      count.fetch_add(1, std::memory_order_relaxed);
      sum_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
    }
  } commits;
  // Where this process's change-log entries start (Options::first_log_seq); applied by
  // the first transaction that writes the log and commits.
  std::function<uint64_t(uint64_t)> first_log_seq;
  size_t compact_floor = kCompactFloor, compact_slice = kCompactSlice;  // Options
  size_t fold_floor = kFoldFloor, fold_slice = kFoldSlice;              // Options
  std::string fold_at;  // where the next fold starts (FoldFresh); only write transactions touch it
  std::atomic<bool> log_started{false};
  // The format version as read at open, or as this process last wrote it (RaiseFormat).
  std::atomic<uint32_t> format{0};
  std::shared_mutex resize_mu;  // transactions hold it shared; growing takes it whole
  std::mutex grow_mu;
  bool must_grow = false;
  size_t map_bytes = 0;

  // lock.mdb, open until the environment is closed: closing any descriptor of it would
  // drop the process's fcntl locks on it, LMDB's among them (HoldAlone).
  int lock_fd = -1;
  // data.mdb, holding a shared flock while the environment is open (GuardLockFile).
  int data_lock_fd = -1;

  ~Impl() {
    if (env) mdb_env_close(env);
    if (lock_fd >= 0) ::close(lock_fd);
    if (data_lock_fd >= 0) ::close(data_lock_fd);
  }

  // LMDB holds a shared fcntl lock on the first byte of lock.mdb in every process that
  // has the environment open, taken before it reads anything (mdb_env_open). HoldAlone
  // makes this process's lock exclusive if no other process holds one, so that none can
  // open the environment (they wait) until ShareAgain makes it shared again; false if
  // another process has it open, or if it cannot tell. Record locks belong to the
  // process and the file: this converts LMDB's own lock, and never releases it.
  bool HoldAlone() const { return LockFirstByte(F_WRLCK); }
  void ShareAgain() const {
    if (!LockFirstByte(F_RDLCK))  // a downgrade conflicts with nothing: only EINTR
      LockFirstByte(F_RDLCK);
  }
  bool LockFirstByte(short type) const {
    return lock_fd >= 0 && FirstByteLock(lock_fd, F_SETLK, type);
  }

  // Grows the map if a transaction filled it. Called with no transaction of ours open.
  Status MaybeGrow() {
    std::lock_guard g(grow_mu);
    if (!must_grow) return Status::Ok();
    // Growing needs every transaction of this process closed. Wait a little for them,
    // but never block: a caller holding a read snapshot on this very thread would
    // deadlock. It gets kBusy (and Replica retries) instead.
    std::unique_lock lock(resize_mu, std::defer_lock);
    for (int i = 0; i < 200 && !lock.try_lock(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!lock.owns_lock())
      return Status::Busy("the map must grow, but a transaction of this process is open");
    MDB_envinfo info{};
    if (int rc = mdb_env_info(env, &info)) return LmdbError(rc, "read the map size");
    size_t want = std::max(info.me_mapsize * 2, map_bytes * 2);
    if (want > kMaxMapBytes) return Status::Io("replica map would exceed 1 TiB");
    int rc = mdb_env_set_mapsize(env, want);
    if (rc) return LmdbError(rc, "grow map");
    map_bytes = want;
    must_grow = false;
    return Status::Ok();
  }

  // Adopts a size another process set (MDB_MAP_RESIZED).
  Status AdoptSize() {
    std::unique_lock lock(resize_mu);
    int rc = mdb_env_set_mapsize(env, 0);
    if (rc) return LmdbError(rc, "adopt map size");
    return Status::Ok();
  }

  Status Note(int rc, const std::string& what) {
    if (rc == MDB_MAP_FULL) {
      std::lock_guard g(grow_mu);
      must_grow = true;
    }
    if (Status full = DiskError(rc, what, dir); !full.ok()) return full;
    return LmdbError(rc, what);
  }
};

// Read operations shared by read and write transactions.
// FieldValue (fields_cursor.h) in the replica's two tables.
inline int FieldValue(const LmdbStore::Impl& impl, MDB_txn* txn, MDB_val key, MDB_val* value) {
  return FieldValue(txn, impl.fresh, impl.fields, key, value);
}

class LmdbReader {
 public:
  LmdbReader(LmdbStore::Impl* impl, MDB_txn* txn) : impl_(impl), txn_(txn) {}

  Status GetMeta(ReplicaMeta* out) {
    MDB_val k = Val("replica"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Corrupt("replica meta is missing");
    if (rc) return LmdbError(rc, "read meta");
    TANDEM_ASSIGN_OR_RETURN(*out, DecodeMeta(View(v)));
    return Status::Ok();
  }

  // The fingerprint recorded at creation (see Fingerprint); empty if there is none.
  Status GetOrigin(std::string* out) {
    out->clear();
    MDB_val k = Val("origin"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read origin");
    *out = std::string(View(v));
    return Status::Ok();
  }

  Status GetCollected(engine::VersionVector* out) {
    *out = engine::VersionVector();
    MDB_val k = Val("collected"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read collected");
    engine::Reader r(View(v));
    if (r.U8() != 1) r.Fail("unknown version");
    *out = engine::DecodeVersionVector(r);
    if (r.ok() && r.remaining()) r.Fail("trailing bytes");
    if (!r.ok()) return r.status().With("collected");
    return Status::Ok();
  }

  Status GetCollectedIn(engine::ReadTxn::CollectedIn* out) {
    out->clear();
    MDB_val k = Val("collected-in"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read collected-in");
    TANDEM_ASSIGN_OR_RETURN(*out, DecodeCollectedIn(View(v)));
    return Status::Ok();
  }
  // The stored format version (0 if missing or malformed).
  Status GetFormat(uint32_t* out) {
    MDB_val k = Val("format"), v;
    *out = 0;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == 0 && v.mv_size == 4) std::memcpy(out, v.mv_data, 4);
    if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "read format version");
    return Status::Ok();
  }

  static std::string BlobKey(char state, const engine::BlobHash& h) {
    std::string k(1, state);
    k.append(reinterpret_cast<const char*>(h.data()), h.size());
    return k;
  }
  static char BlobLetter(engine::BlobInfo::State s) {
    return s == engine::BlobInfo::State::kComplete ? 'b'
           : s == engine::BlobInfo::State::kWanted ? 'w'
           : s == engine::BlobInfo::State::kState  ? 's'
                                                   : 'p';
  }
  Status GetBlob(const engine::BlobHash& h, std::optional<engine::BlobInfo>* out) {
    out->reset();
    for (char state : {'b', 'w', 'p', 's'}) {
      std::string key = BlobKey(state, h);
      MDB_val k = Val(key), v;
      int rc = mdb_get(txn_, impl_->blobs, &k, &v);
      if (rc == MDB_NOTFOUND) continue;
      if (rc) return LmdbError(rc, "read blob entry");
      TANDEM_ASSIGN_OR_RETURN(engine::BlobInfo info, engine::DecodeBlobInfo(View(v)));
      if (BlobLetter(info.state) != state) return Status::Corrupt("blob entry under the wrong key");
      *out = std::move(info);
      return Status::Ok();
    }
    return Status::Ok();
  }
  Status ScanBlobs(bool wanted_only, const engine::ReadTxn::BlobFn& fn) {
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->blobs, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    std::string start = wanted_only ? "w" : "";
    MDB_val k = Val(start), v;
    Status st;
    for (rc = mdb_cursor_get(cur, &k, &v, start.empty() ? MDB_FIRST : MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      std::string_view key = View(k);
      if (wanted_only && key[0] != 'w') break;
      if (key.size() != 33) {
        st = Status::Corrupt("malformed blob key");
        break;
      }
      auto info = engine::DecodeBlobInfo(View(v));
      if (!info.ok()) {
        st = info.status();
        break;
      }
      engine::BlobHash h;
      std::memcpy(h.data(), key.data() + 1, 32);
      if (!fn(h, *info)) break;
    }
    mdb_cursor_close(cur);
    if (st.ok() && rc && rc != MDB_NOTFOUND) st = LmdbError(rc, "scan blobs");
    return st;
  }
  Status GetChunk(const engine::BlobHash& h, std::string* out, bool* found) {
    MDB_val k{h.size(), const_cast<uint8_t*>(h.data())}, v;
    int rc = mdb_get(txn_, impl_->chunks, &k, &v);
    *found = rc == 0;
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read chunk");
    out->assign(static_cast<const char*>(v.mv_data), v.mv_size);
    return Status::Ok();
  }
  Status ScanChunks(const engine::BlobHash* after,
                    const std::function<bool(const engine::BlobHash&)>& fn) {
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->chunks, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    MDB_val k{32, after ? const_cast<uint8_t*>(after->data()) : nullptr}, v;
    rc = mdb_cursor_get(cur, &k, &v, after ? MDB_SET_RANGE : MDB_FIRST);
    Status st;
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      if (k.mv_size != 32) {
        st = Status::Corrupt("malformed chunk key");
        break;
      }
      engine::BlobHash h;
      std::memcpy(h.data(), k.mv_data, 32);
      if (after && h == *after) continue;
      if (!fn(h)) break;
    }
    mdb_cursor_close(cur);
    if (st.ok() && rc && rc != MDB_NOTFOUND) st = LmdbError(rc, "scan chunks");
    return st;
  }

  Status DecodeField(std::string_view key, const MDB_val& v, FieldState* out,
                     uint64_t* seq = nullptr) {
    uint64_t s = 0;
    std::string_view state;
    TANDEM_RETURN_IF_ERROR(SplitValue(key, View(v), &s, &state));
    if (seq) *seq = s;
    return DecodeState(state, out);
  }
  // A stored state (past its seq), in line or out of line.
  Status DecodeState(std::string_view state, FieldState* out) {
    if (IsOutOfLine(state)) return DecodeOutOfLine(state, out);
    TANDEM_ASSIGN_OR_RETURN(*out, engine::DecodeFieldState(state, impl_->table));
    return Status::Ok();
  }

  // A stored state out of line (engine::kOutOfLine; out_of_line.cc): in the value, its
  // header with that bit, its context, the key of the blob entry (state kState) whose
  // chunks hold the bytes of a delta encoding of it, and where its markers start in them.
  static bool IsOutOfLine(std::string_view state) {
    return !state.empty() && (static_cast<uint8_t>(state[0]) & engine::kOutOfLine);
  }
  // Whether a stored field value holds its state out of line.
  static bool OutOfLineValue(std::string_view v) {
    uint64_t seq = 0;
    std::string_view state;
    return SplitUnchecked(v, &seq, &state).ok() && IsOutOfLine(state);
  }
  struct OutOfLine {
    std::string head;  // the state's header without the bit, and its context
    engine::VersionVector ctx;
    engine::BlobHash entry{};
    uint64_t at = 0;  // where its markers start in the entry's bytes
    engine::BlobInfo info;
    uint64_t size() const { return info.size - at; }  // of its bytes past the head
    // The chunk read last, kept: reads that are not aligned with the chunks (they start
    // at `at`) read and check each one once, not twice.
    mutable std::string chunk;
    mutable uint64_t chunk_index = UINT64_MAX;
  };
  Status ReadOutOfLine(std::string_view state, OutOfLine* out);
  // Appends bytes [offset, offset + n) of what lies out of line (from `at` on) to `out`
  // (fewer at its end), each chunk checked against its hash.
  Status ReadOutOfLineBytes(const OutOfLine& o, uint64_t offset, size_t n, std::string* out);
  // Reads and checks every chunk of it, as a checksum pass does for a value in line.
  Status CheckOutOfLine(const OutOfLine& o);
  // Makes chunk `i` of it o.chunk, checked against its hash (kept: unaligned reads).
  Status LoadOutOfLineChunk(const OutOfLine& o, uint64_t i);
  // With `outline`, to its outline (engine::OutlineFieldState), and `items` see it.
  Status DecodeOutOfLine(std::string_view state, FieldState* out, bool outline = false,
                         const engine::StateItems* items = nullptr);
  Status ReadFieldItems(const FieldKey& key, const engine::StateItems& items);
  Status ReadFieldOutline(const FieldKey& key, const engine::StateItems* items, FieldState* out);
  // A state stored in line read to its outline (engine::OutlineFieldState), `items` (if
  // not null) seeing each item, from its stored bytes: never decoded whole. Corrupt where
  // they are damaged or not in canonical order.
  Status OutlineInLine(std::string_view state, const engine::StateItems* items, FieldState* out);
  // A scan with outlines gives a state stored in line of more than this many bytes as its
  // outline too, as it does one stored out of line.
  static constexpr size_t kOutlineInLinePast = size_t{1} << 20;
  // The stored value of a field and the key it is stored under; NotFound if it has none.
  Status FindField(const FieldKey& key, std::string* stored_key, MDB_val* value) {
    auto k = impl_->Key(key.collection, key.record, key.field, false);
    if (!k) return Status::NotFound("no such field");
    MDB_val kv = Val(*k);
    int rc = FieldValue(*impl_, txn_, kv, value);
    if (rc == MDB_NOTFOUND) return Status::NotFound("no such field");
    if (rc) return LmdbError(rc, "read field");
    *stored_key = std::move(*k);
    return Status::Ok();
  }

  Status GetField(const FieldKey& key, std::optional<FieldState>* out) {
    out->reset();
    auto k = impl_->Key(key.collection, key.record, key.field, false);
    if (!k) return Status::Ok();
    MDB_val kv = Val(*k), v;
    int rc = FieldValue(*impl_, txn_, kv, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read field");
    FieldState s;
    TANDEM_RETURN_IF_ERROR(DecodeField(*k, v, &s).With(key.Name()));
    *out = std::move(s);
    return Status::Ok();
  }

  // Calls fn(key, value) for keys >= start with the prefix, until fn returns false.
  template <typename Fn>
  Status ScanPrefix(const std::string& prefix, const std::string& start, Fn fn) {
    FieldsCursor cur(txn_, impl_->fresh, impl_->fields);
    Status st;
    int rc;
    // Keys come in order. A damaged page (LMDB keeps no checksums) could hold a key that
    // sorts past the range, and the scan would end there as if the range did: a read
    // would return part of the data as the whole. So the key that ends the range must be
    // followed by a greater one, or, the last of all, be a key.
    auto damaged = [] {
      return Status::Corrupt(
          "the field tables are damaged (a key out of order or malformed): `tandem check` "
          "tells more; restore from a backup");
    };
    std::string last;
    for (rc = cur.Seek(start); rc == 0; rc = cur.Next()) {
      std::string_view key = View(cur.key());
      if (!last.empty() && key <= last) return damaged();
      if (key.substr(0, prefix.size()) != prefix) {
        if (key < start) return damaged();
        last.assign(key);
        FieldKey k;
        if ((rc = cur.Next()) == 0 && View(cur.key()) <= last) return damaged();
        if (rc == MDB_NOTFOUND && !impl_->DecodeKey(last, &k)) return damaged();
        break;
      }
      last.assign(key);
      bool go = true;
      st = fn(key, cur.value(), &go);
      if (!st.ok() || !go) break;
    }
    if (st.ok() && rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan");
    return st;
  }

  // A record's fields (or, with `out` null, its newest seq alone), and a collection's
  // records in id order (records.cc).
  Status GetRecord(std::string_view c, std::string_view r, RecordState* out, uint64_t* latest);
  Status ScanRecords(std::string_view c, std::string_view after,
                     const engine::ReadTxn::RecordFn& fn,
                     const engine::ReadTxn::DamagedFn* damaged = nullptr,
                     const engine::ReadTxn::OutlineFn* outlines = nullptr);
  Status ListCollections(std::vector<std::string>* out);

  // The change log's live entries after `since`, ascending, until fn returns false: each
  // field once, at its latest change (log.cc).
  Status ScanLog(uint64_t since, const engine::ReadTxn::LogFn& fn);
  // Every entry with its field's state (one lookup for both; a large state's context
  // alone); null for a stale one (log.cc).
  Status ScanLogDeltas(uint64_t since, uint64_t large, const engine::ReadTxn::LogDeltaFn& fn);
  // A field's delta encoding, a window at a time (delta_read.cc).
  Status ReadDelta(const FieldKey& key, uint64_t offset, size_t n, bool check, uint64_t* size,
                   uint64_t* seq, std::string* out);
  // Its entries after `since`, stale ones too, to `cap` at most: no field is read.
  Status CountLog(uint64_t since, uint64_t cap, uint64_t* out);

  Status GetPeer(const ReplicaId& peer, engine::PeerState* out) {
    MDB_val k{16, const_cast<uint8_t*>(peer.bytes.data())}, v;
    int rc = mdb_get(txn_, impl_->peers, &k, &v);
    if (rc == MDB_NOTFOUND) {
      *out = engine::PeerState{};
      return Status::Ok();
    }
    if (rc) return LmdbError(rc, "read peer");
    TANDEM_ASSIGN_OR_RETURN(*out, engine::DecodePeerState(View(v)));
    return Status::Ok();
  }

  Status ListPeers(std::vector<std::pair<ReplicaId, engine::PeerState>>* out) {
    out->clear();
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->peers, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    MDB_val k, v;
    Status st;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      auto p = engine::DecodePeerState(View(v));
      if (k.mv_size != 16 || !p.ok()) {
        st = Status::Corrupt("malformed peer entry");
        break;
      }
      out->emplace_back(ReplicaId::FromBytes(static_cast<const uint8_t*>(k.mv_data)), *p);
    }
    mdb_cursor_close(cur);
    return st;
  }

  // Quarantined field states live in `meta` under "quarantine/" + 8-byte big-endian id,
  // so that a replica needs no new table for them.
  static std::string QuarantineKey(uint64_t id) {
    std::string k = "quarantine/";
    for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((id >> (8 * i)) & 0xff));
    return k;
  }
  // Calls fn(key, value) for each `meta` entry whose key starts with `prefix`, in key
  // order, until it returns false or sets *st.
  using MetaFn = std::function<bool(std::string_view key, std::string_view value, Status* st)>;
  Status ScanMeta(std::string_view prefix, const MetaFn& fn, const char* what) {
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->meta, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    MDB_val k = Val(prefix), v;
    Status st;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      if (View(k).substr(0, prefix.size()) != prefix) break;
      if (!fn(View(k), View(v), &st) || !st.ok()) break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND && st.ok()) return LmdbError(rc, what);
    return st;
  }
  // Records in `meta` (meta_records.cc): changes held by quarantine, refused fields. A
  // damaged record of a refused field (one that does not decode, or sits under another
  // field's key) is passed over, and counted in *damaged (if not null) for Check; so is
  // one of a later version. GetRefused reads a damaged one as none.
  Status ListQuarantine(const engine::ReadTxn::QuarantineFn& fn);
  Status ListRefused(const engine::ReadTxn::RefusedFn& fn, uint64_t* damaged = nullptr);
  Status GetRefused(const FieldKey& field, std::optional<engine::VersionVector>* out);

  // A replica from before the hull was kept has none: it knows nothing of what its log
  // holds so far (LogHull::base). Nor does one whose log has moved since the hull was
  // last written (`log-hull-end`): a build that keeps no hull wrote to it meanwhile.
  // *source (if not null) says which: the stored hull as it is, or one to store again.
  enum class HullSource { kNone, kStale, kStored };
  Status GetLogHull(engine::LogHull* out, HullSource* source = nullptr) {
    *out = engine::LogHull{};
    uint64_t last = 0;
    TANDEM_RETURN_IF_ERROR(LastLogSeq(&last));
    MDB_val k = Val("log-hull"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (source) *source = HullSource::kNone;
    if (rc == MDB_NOTFOUND) {
      out->base = last;
      return Status::Ok();
    }
    if (rc) return LmdbError(rc, "read log hull");
    TANDEM_ASSIGN_OR_RETURN(*out, engine::DecodeLogHull(View(v)));
    MDB_val ek = Val("log-hull-end"), ev;
    rc = mdb_get(txn_, impl_->meta, &ek, &ev);
    if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "read log hull");
    uint64_t end = 0;
    if (rc == 0 && ev.mv_size == 8) std::memcpy(&end, ev.mv_data, 8);
    const bool stale = rc != 0 || ev.mv_size != 8 || end != last;
    if (stale) {
      out->base = std::max(out->base, last);
      out->checkpoints.clear();
    }
    if (source) *source = stale ? HullSource::kStale : HullSource::kStored;
    return Status::Ok();
  }

  Status GetLogGaps(LogGaps* out) {
    out->clear();
    MDB_val k = Val("log-gaps"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read log gaps");
    TANDEM_ASSIGN_OR_RETURN(*out, DecodeLogGaps(View(v)));
    return Status::Ok();
  }
  Status InLogGap(uint64_t seq, bool* out) {
    *out = false;
    LogGaps gaps;
    TANDEM_RETURN_IF_ERROR(GetLogGaps(&gaps));
    for (const auto& [from, to] : gaps)
      if (seq > from && seq < to) *out = true;
    return Status::Ok();
  }

  Status LastLogSeq(uint64_t* out) {
    *out = 0;
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->log, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    Status st;
    if (rc == 0 && k.mv_size != 8) st = Status::Corrupt("change-log key has the wrong size");
    if (rc == 0 && k.mv_size == 8) {
      uint64_t key_seq = 0;
      std::memcpy(&key_seq, k.mv_data, 8);
      st = ForEachLogEntry(key_seq, View(v), [&](uint64_t seq, std::string_view) {
        *out = seq;
        return true;
      });
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "read log");
    return st;
  }
  // How many entries the log holds, live or stale: meta `log-entries`, which every
  // transaction that writes a run keeps; a log without it holds one entry per stored
  // entry (as builds before format 7 wrote it).
  Status LogEntries(uint64_t* out) {
    MDB_val k = Val("log-entries"), v;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == 0) {
      if (v.mv_size != 8) return Status::Corrupt("meta log-entries has the wrong size");
      std::memcpy(out, v.mv_data, 8);
      return Status::Ok();
    }
    if (rc != MDB_NOTFOUND) return LmdbError(rc, "read log entries");
    MDB_stat st;
    if ((rc = mdb_stat(txn_, impl_->log, &st))) return LmdbError(rc, "read log size");
    *out = st.ms_entries;
    return Status::Ok();
  }

 protected:
  LmdbStore::Impl* impl_;
  MDB_txn* txn_;
};

// Writes to the blob tables, in a write transaction (blobs.cc).
Status PutBlobEntry(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h,
                    const engine::BlobInfo& info);
// The state bytes of a value stored out of line (LmdbReader::OutOfLine): `header` with
// engine::kOutOfLine, `ctx` against `table`, the entry that lists its chunks and where its
// markers start in them (out_of_line.cc).
std::string EncodeOutOfLine(uint8_t header, const engine::VersionVector& ctx,
                            engine::ReplicaTable& table, const engine::BlobHash& entry,
                            uint64_t at);
// The entry a stored field value names, if its state is out of line; read without the
// replica table, for what replaces or removes the value.
std::optional<engine::BlobHash> OutOfLineEntry(std::string_view value);
Status DeleteBlobEntries(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h);
Status PutChunkEntry(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h,
                     std::string_view bytes);
Status DeleteChunkEntry(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h);

// Upkeep of the change log, in a write transaction (log.cc). CompactLog removes stale
// entries (a later write of their field appended another, or the field is gone),
// Options::compact_slice examined at a time from where the last slice stopped (meta
// `log-compact-at`), wrapping at the end; only when the stale ones are more than
// Options::compact_floor and a quarter of the fields. So the log stays within about 1.25
// times the fields, and each slice rewrites a few pages of the log's past instead of one
// per overwrite. RepackFieldsAndLog rewrites both tables in key order, each page full,
// leaving every stale entry behind.
// Both take and update *entries, the count of the log's entries, live or stale (meta
// `log-entries`, LogEntries).
Status CompactLog(LmdbStore::Impl& impl, MDB_txn* txn, uint64_t* entries);
Status RepackFieldsAndLog(LmdbStore::Impl& impl, MDB_txn* txn, uint64_t* entries);
// Moves field values from `fresh` into `fields`, in key order from where the last fold
// stopped (Impl::fold_at, wrapping), in a write transaction: all of them if `all`, else
// once `fresh` holds more than Options::fold_floor and a sixteenth of the fields,
// Options::fold_slice of them or `wrote` (what the transaction put there) if more.
Status FoldFresh(LmdbStore::Impl& impl, MDB_txn* txn, size_t wrote, bool all);

// `dir` is missing or an empty directory; else kInvalidArgument naming `what`.
Status CheckEmptyOrMissing(const std::string& dir, const char* what);
// data.mdb starts with an LMDB meta page (checked before LMDB touches the directory).
Status ProbeDataFile(const std::string& dir);

// Where the replica's data file in `dir` lives (device, inode, birth time): what the
// `origin` meta entry records. On a filesystem that keeps no birth time (ext2, ext4 with
// 128-byte inodes; or with `without_birth_times`) a directory put where the original
// was deleted (`rm -rf DIR; cp -a COPY DIR`) may get the original's inode numbers back:
// there the third part is the change time of kOriginFile, an empty file made once and
// never written, which no copy keeps (a copy sets it to when it was made). With `make`,
// the file is made if it is missing; without, a missing one makes the third part zero.
// (A data file alone copied over the original, in place, keeps its inode and birth
// time on any filesystem: that is a rollback in place, caught at sync.)
inline constexpr const char* kOriginFile = "origin";
Result<std::string> Fingerprint(const std::string& dir, bool make, bool without_birth_times);
// Whether a recorded origin `was` says no more than `now` does about where the replica
// is: the same device and inode, and no birth time or origin file's change time (it was
// recorded before origin files, or a crash came between making the file and recording
// it). Such a replica adopts where it is.
bool AdoptsFrom(std::string_view was, std::string_view now);
// Records where the replica's data file is now. kRekey (a copy, or a restore) also takes
// a new replica id in the same transaction, unless the origin is already this place:
// another process that opened the same copy at the same time did it. kForceRekey takes
// one whatever the origin says.
enum class Stamp { kAdopt, kRekey, kForceRekey };
Status StampOrigin(LmdbStore& store, Stamp how, const Options& opt);
// The `origin` meta entry, through a write transaction of an LmdbStore's.
Status GetOrigin(engine::WriteTxn& txn, std::string* out);
Status PutOrigin(engine::WriteTxn& txn, const std::string& fingerprint);
// Opens (or with `create`, initialises) the environment; with `stamp`, a replica opened
// away from its origin takes a new id (see OpenStore).
Result<std::unique_ptr<LmdbStore>> Open(const std::string& dir, const Options& opt, bool create,
                                        bool stamp);

}  // namespace tandem::storage
