#include "tandem/storage/lmdb_store.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::storage {

namespace fs = std::filesystem;
using engine::FieldKey;
using engine::FieldState;
using engine::RecordState;
using engine::ReplicaId;
using engine::ReplicaMeta;

namespace {

constexpr uint32_t kLmdbMagic = 0xBEEFC0DE;
constexpr off_t kLockFileBytes = 32 << 10;        // LMDB needs 16,512 for 256 readers
constexpr size_t kMaxMapBytes = size_t{1} << 40;  // 1 TiB of address space at most

// LMDB reports a short write (what a full disk gives) as EIO. If the filesystem of `dir`
// is (nearly) out of space, say that instead: the fix is to free space, not to replace
// the disk.
Status DiskError(int rc, const std::string& what, const std::string& dir) {
  if (rc == EIO || rc == ENOSPC || rc == EDQUOT) {
    struct statvfs vfs;
    if (::statvfs(dir.c_str(), &vfs) == 0) {
      const uint64_t free_bytes = uint64_t{vfs.f_bavail} * vfs.f_frsize;
      if (rc != EIO || free_bytes < (uint64_t{1} << 20))
        return Status::Io(what + ": no space left on the disk holding " + dir + " (" +
                          std::to_string(free_bytes / 1024) +
                          " KiB free); free some space and try again");
    }
  }
  return Status();
}

Status LmdbError(int rc, const std::string& what) {
  if (rc == MDB_MAP_FULL || rc == MDB_MAP_RESIZED)
    return Status::Busy(what + ": map full, growing");
  if (rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_PAGE_NOTFOUND ||
      rc == MDB_VERSION_MISMATCH)
    return Status::Corrupt(what + ": " + mdb_strerror(rc));
  return Status::Io(what + ": " + mdb_strerror(rc));
}

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

std::string EncodeMeta(const ReplicaMeta& m) {
  std::string out;
  engine::Writer w(&out);
  w.U8(1);
  w.Raw(std::string_view(reinterpret_cast<const char*>(m.id.bytes.data()), 16));
  w.Fixed64(m.clock);
  engine::EncodeVersionVector(m.vv, w);
  return out;
}

Result<ReplicaMeta> DecodeMeta(std::string_view in) {
  engine::Reader r(in);
  ReplicaMeta m;
  if (r.U8() != 1) r.Fail("unknown replica meta version");
  std::string_view id = r.Raw(16);
  if (r.ok()) m.id = ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(id.data()));
  m.clock = r.Fixed64();
  m.vv = engine::DecodeVersionVector(r);
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("replica meta");
  return m;
}

// Where a replica's data file lives: its device, inode and, where the filesystem keeps
// it, birth time (24 bytes, little-endian). The birth time tells a new file that reused
// a deleted one's inode number (`rm data.mdb; cp old data.mdb`) from the original.
Result<std::string> Fingerprint(const std::string& dir) {
  struct statx st;
  const std::string path = dir + "/data.mdb";
  if (::statx(AT_FDCWD, path.c_str(), 0, STATX_INO | STATX_BTIME, &st) != 0)
    return Status::Io("stat " + path + ": " + strerror(errno));
  // The device number is not stable across boots on some systems (btrfs subvolumes, LVM,
  // USB disks): with a birth time, inode and birth time alone identify the file.
  const bool btime = st.stx_mask & STATX_BTIME;
  const uint64_t fields[3] = {
      btime ? 0 : (uint64_t{st.stx_dev_major} << 32) | st.stx_dev_minor, st.stx_ino,
      btime ? static_cast<uint64_t>(st.stx_btime.tv_sec) * 1'000'000'000 + st.stx_btime.tv_nsec
            : 0};
  std::string out(sizeof fields, '\0');
  std::memcpy(out.data(), fields, sizeof fields);
  return out;
}

}  // namespace

ReplicaId RandomReplicaId() {
  ReplicaId id;
  do {
    ssize_t n = getrandom(id.bytes.data(), id.bytes.size(), 0);
    if (n != 16) abort();  // getrandom of 16 bytes cannot fail short on Linux >= 3.17
  } while (id.IsZero());
  return id;
}

// A persistent table of interned values (replica ids, names), indices 0.. in an LMDB
// database with integer keys, cached here. Only a write transaction adds entries; they
// stay pending until it commits and vanish from the cache if it aborts.
template <typename T>
class InternTable {
 public:
  // The index of v, adding it (pending) if new. Only inside a write transaction.
  template <typename K>
  uint64_t Intern(const K& v) {
    std::lock_guard lock(mu_);
    auto it = index_.find(v);
    if (it != index_.end()) return it->second;
    assert(writer_ && "tables grow only inside a write transaction");
    uint64_t idx = values_.size();
    values_.push_back(T(v));
    index_.emplace(T(v), idx);
    pending_.push_back(idx);
    return idx;
  }
  template <typename K>
  std::optional<uint64_t> Find(const K& v) const {
    std::lock_guard lock(mu_);
    auto it = index_.find(v);
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  uint64_t size() const {
    std::lock_guard lock(mu_);
    return values_.size();
  }
  bool At(uint64_t index, T* out) const {
    std::lock_guard lock(mu_);
    if (index >= values_.size()) return false;
    *out = values_[index];
    return true;
  }
  // Loads entries another process (or an earlier run) added.
  Status Refresh(MDB_txn* txn, MDB_dbi dbi, const char* what) {
    MDB_stat st;
    int rc = mdb_stat(txn, dbi, &st);
    if (rc) return LmdbError(rc, what);
    std::lock_guard lock(mu_);
    if (st.ms_entries <= values_.size() - pending_.size()) return Status::Ok();
    MDB_cursor* cur;
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) return LmdbError(rc, what);
    values_.clear();
    index_.clear();
    pending_.clear();
    MDB_val k, v;
    Status status;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      uint64_t idx;
      T value;
      if (k.mv_size != 8 || !FromBytes(View(v), &value)) {
        status = Status::Corrupt(std::string(what) + " has a malformed entry");
        break;
      }
      std::memcpy(&idx, k.mv_data, 8);
      if (idx != values_.size() || !index_.emplace(value, idx).second) {
        status = Status::Corrupt(std::string(what) + " has a gap or a duplicate");
        break;
      }
      values_.push_back(std::move(value));
    }
    mdb_cursor_close(cur);
    return status;
  }
  void BeginWriter() {
    std::lock_guard lock(mu_);
    writer_ = true;
  }
  // Returns an LMDB error code (the caller notes MDB_MAP_FULL so the map grows).
  int FlushPending(MDB_txn* txn, MDB_dbi dbi) {
    std::lock_guard lock(mu_);
    for (uint64_t idx : pending_) {
      std::string bytes = ToBytes(values_[idx]);
      MDB_val k{8, &idx}, v = Val(bytes);
      int rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);
      if (rc) return rc;
    }
    return 0;
  }
  void EndWriter(bool committed) {
    std::lock_guard lock(mu_);
    if (!committed) {
      for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
        index_.erase(values_[*it]);
        values_.pop_back();
      }
    }
    pending_.clear();
    writer_ = false;
  }

 private:
  static std::string ToBytes(const ReplicaId& id) {
    return std::string(reinterpret_cast<const char*>(id.bytes.data()), 16);
  }
  static std::string ToBytes(const std::string& s) { return s; }
  static bool FromBytes(std::string_view b, ReplicaId* out) {
    if (b.size() != 16) return false;
    *out = ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(b.data()));
    return true;
  }
  static bool FromBytes(std::string_view b, std::string* out) {
    *out = std::string(b);
    return !b.empty();
  }

  mutable std::mutex mu_;
  std::vector<T> values_;
  std::map<T, uint64_t, std::less<>> index_;  // transparent: look up string_views as they are
  std::vector<uint64_t> pending_;
  bool writer_ = false;
};

// The engine's view of the replica table.
class LmdbReplicaTable : public engine::ReplicaTable {
 public:
  uint64_t IndexOf(const ReplicaId& id) override { return t.Intern(id); }
  bool IdAt(uint64_t index, ReplicaId* out) const override { return t.At(index, out); }
  InternTable<ReplicaId> t;
};

struct LmdbStore::Impl {
  MDB_env* env = nullptr;
  std::string dir;
  MDB_dbi meta = 0, fields = 0, log = 0, replicas = 0, names_db = 0, peers = 0;
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
    std::string k = CollectionPrefix(*c);
    k.append(rec);
    k.push_back('\0');
    PutVarint(&k, *f);
    return k;
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
  std::shared_mutex resize_mu;  // transactions hold it shared; growing takes it whole
  std::mutex grow_mu;
  bool must_grow = false;
  size_t map_bytes = 0;

  ~Impl() {
    if (env) mdb_env_close(env);
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
    MDB_envinfo info;
    mdb_env_info(env, &info);
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

namespace {

// Read operations shared by read and write transactions.
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

  // Splits a stored field value into its log seq and state bytes.
  static Status SplitValue(std::string_view v, uint64_t* seq, std::string_view* state) {
    engine::Reader r(v);
    *seq = r.Varint();
    if (!r.ok() || *seq == 0) return Status::Corrupt("field entry without a change-log seq");
    *state = v.substr(v.size() - r.remaining());
    return Status::Ok();
  }

  Status DecodeField(const MDB_val& v, FieldState* out, uint64_t* seq = nullptr) {
    uint64_t s;
    std::string_view state;
    TANDEM_RETURN_IF_ERROR(SplitValue(View(v), &s, &state));
    if (seq) *seq = s;
    TANDEM_ASSIGN_OR_RETURN(*out, engine::DecodeFieldState(state, impl_->table));
    return Status::Ok();
  }

  Status GetField(const FieldKey& key, std::optional<FieldState>* out) {
    out->reset();
    auto k = impl_->Key(key.collection, key.record, key.field, false);
    if (!k) return Status::Ok();
    MDB_val kv = Val(*k), v;
    int rc = mdb_get(txn_, impl_->fields, &kv, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return LmdbError(rc, "read field");
    FieldState s;
    TANDEM_RETURN_IF_ERROR(
        DecodeField(v, &s).With(key.collection + "/" + key.record + "." + key.field));
    *out = std::move(s);
    return Status::Ok();
  }

  // Calls fn(key, value) for keys >= start with the prefix, until fn returns false.
  template <typename Fn>
  Status ScanPrefix(const std::string& prefix, const std::string& start, Fn fn) {
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->fields, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    MDB_val k = Val(start), v;
    Status st;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      std::string_view key = View(k);
      if (key.substr(0, prefix.size()) != prefix) break;
      bool go = true;
      st = fn(key, v, &go);
      if (!st.ok() || !go) break;
    }
    mdb_cursor_close(cur);
    if (st.ok() && rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan");
    return st;
  }

  Status GetRecord(std::string_view c, std::string_view r, RecordState* out, uint64_t* latest) {
    if (out) out->fields.clear();
    if (latest) *latest = 0;
    auto prefix = impl_->RecordPrefix(c, r);
    if (!prefix) return Status::Ok();
    return ScanPrefix(*prefix, *prefix, [&](std::string_view key, const MDB_val& v, bool*) {
      if (!out) {  // the seqs alone
        uint64_t seq = 0;
        std::string_view ignored;
        TANDEM_RETURN_IF_ERROR(SplitValue(View(v), &seq, &ignored));
        if (latest) *latest = std::max(*latest, seq);
        return Status::Ok();
      }
      FieldKey k;
      if (!impl_->DecodeKey(key, &k)) return Status::Corrupt("malformed field key");
      FieldState s;
      uint64_t seq = 0;
      TANDEM_RETURN_IF_ERROR(DecodeField(v, &s, &seq));
      if (latest) *latest = std::max(*latest, seq);
      out->fields.emplace(std::move(k.field), std::move(s));
      return Status::Ok();
    });
  }

  Status ScanRecords(std::string_view c, std::string_view after,
                     const engine::ReadTxn::RecordFn& fn) {
    auto coll = impl_->names.Find(c);
    if (!coll) return Status::Ok();
    std::string prefix = impl_->CollectionPrefix(*coll);
    // Past every field of `after`: after \x01 sorts above after \0 ...
    std::string start = prefix + std::string(after) + (after.empty() ? "" : "\x01");
    std::string current;
    RecordState state;
    bool stopped = false;
    TANDEM_RETURN_IF_ERROR(
        ScanPrefix(prefix, start, [&](std::string_view key, const MDB_val& v, bool* go) {
          FieldKey k;
          if (!impl_->DecodeKey(key, &k)) return Status::Corrupt("malformed field key");
          if (k.record != current && !state.fields.empty()) {
            if (!fn(current, state)) {
              stopped = true;
              *go = false;
              return Status::Ok();
            }
            state.fields.clear();
          }
          current = std::move(k.record);
          FieldState s;
          TANDEM_RETURN_IF_ERROR(DecodeField(v, &s));
          state.fields.emplace(std::move(k.field), std::move(s));
          return Status::Ok();
        }));
    if (!stopped && !state.fields.empty()) fn(current, state);
    return Status::Ok();
  }

  Status ListCollections(std::vector<std::string>* out) {
    out->clear();
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->fields, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    // Names are few: probe each one as a collection prefix.
    const uint64_t n = impl_->names.size();
    for (uint64_t i = 0; i < n; ++i) {
      std::string prefix = impl_->CollectionPrefix(i);
      MDB_val k = Val(prefix), v;
      rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
      if (rc == 0 && View(k).substr(0, prefix.size()) == prefix) {
        std::string name;
        impl_->names.At(i, &name);
        out->push_back(std::move(name));
      } else if (rc && rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        return LmdbError(rc, "list collections");
      }
    }
    mdb_cursor_close(cur);
    std::sort(out->begin(), out->end());
    return Status::Ok();
  }

  Status ScanLog(uint64_t since, const engine::ReadTxn::LogFn& fn) {
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->log, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    if (since == UINT64_MAX) return Status::Ok();  // nothing can come after
    uint64_t start = since + 1;
    MDB_val k{8, &start}, v;
    Status st;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      uint64_t seq;
      if (k.mv_size != 8) {
        st = Status::Corrupt("change-log key has the wrong size");
        break;
      }
      std::memcpy(&seq, k.mv_data, 8);
      FieldKey key;
      if (!impl_->DecodeKey(View(v), &key)) {
        st = Status::Corrupt("change-log entry names a malformed key");
        break;
      }
      if (!fn(seq, key)) break;
    }
    mdb_cursor_close(cur);
    if (st.ok() && rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan log");
    return st;
  }

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

  Status LastLogSeq(uint64_t* out) {
    *out = 0;
    MDB_cursor* cur;
    int rc = mdb_cursor_open(txn_, impl_->log, &cur);
    if (rc) return LmdbError(rc, "open cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8) std::memcpy(out, k.mv_data, 8);
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "read log");
    return Status::Ok();
  }

 protected:
  LmdbStore::Impl* impl_;
  MDB_txn* txn_;
};

class LmdbReadTxn : public engine::ReadsThrough<engine::ReadTxn, LmdbReader> {
 public:
  LmdbReadTxn(LmdbStore::Impl* impl, MDB_txn* txn, std::shared_lock<std::shared_mutex> lock)
      : ReadsThrough(impl, txn), lock_(std::move(lock)), txn_(txn) {}
  ~LmdbReadTxn() override { mdb_txn_abort(txn_); }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  MDB_txn* txn_;
};

class LmdbWriteTxn : public engine::ReadsThrough<engine::WriteTxn, LmdbReader> {
 public:
  LmdbWriteTxn(LmdbStore::Impl* impl, MDB_txn* txn, std::shared_lock<std::shared_mutex> lock)
      : ReadsThrough(impl, txn), lock_(std::move(lock)), impl_(impl), txn_(txn) {}
  ~LmdbWriteTxn() override {
    if (txn_) {
      CloseCursors();
      mdb_txn_abort(txn_);
      impl_->table.t.EndWriter(false);
      impl_->names.EndWriter(false);
    }
  }
  // Remembers the field's change-log seq, so the PutField that usually follows needs no
  // second lookup.
  Status GetField(const FieldKey& k, std::optional<FieldState>* out) override {
    out->reset();
    last_seq_known_ = false;
    auto key = impl_->Key(k.collection, k.record, k.field, false);
    if (!key) return Status::Ok();
    last_key_ = std::move(*key);
    last_field_ = k;
    MDB_val kv = Val(last_key_), v;
    // Through a cursor: the PutField that follows finds the cursor on the right page and
    // skips the descent, as do neighbouring keys written in order.
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fields, &fields_cur_));
    int rc = mdb_cursor_get(fields_cur_, &kv, &v, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND) {
      last_old_seq_ = 0;
      last_seq_known_ = true;
      return Status::Ok();
    }
    if (rc) return LmdbError(rc, "read field");
    FieldState s;
    TANDEM_RETURN_IF_ERROR(reader_.DecodeField(v, &s, &last_old_seq_));
    last_seq_known_ = true;
    *out = std::move(s);
    return Status::Ok();
  }
  Status PutPeer(const ReplicaId& peer, const engine::PeerState& state) override {
    std::string v = engine::EncodePeerState(state);
    MDB_val k{16, const_cast<uint8_t*>(peer.bytes.data())}, val = Val(v);
    int rc = mdb_put(txn_, impl_->peers, &k, &val, 0);
    return rc ? impl_->Note(rc, "write peer") : Status::Ok();
  }

  Status PutMeta(const ReplicaMeta& meta) override {
    std::string v = EncodeMeta(meta);
    MDB_val k = Val("replica"), val = Val(v);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write meta") : Status::Ok();
  }

  Status PutOrigin(const std::string& fingerprint) {
    MDB_val k = Val("origin"), val = Val(fingerprint);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write origin") : Status::Ok();
  }
  Status GetOrigin(std::string* out) { return reader_.GetOrigin(out); }

  Status PutField(const FieldKey& key, const FieldState& state) override {
    const bool same = last_seq_known_ && key == last_field_;
    std::string k = same ? last_key_ : *impl_->Key(key.collection, key.record, key.field, true);
    MDB_val kv = Val(k), old;
    uint64_t old_seq = 0;
    int rc;
    if (same) {
      old_seq = last_old_seq_;
    } else {
      rc = mdb_get(txn_, impl_->fields, &kv, &old);
      if (rc == 0) {
        std::string_view ignored;
        TANDEM_RETURN_IF_ERROR(LmdbReader::SplitValue(View(old), &old_seq, &ignored));
      } else if (rc != MDB_NOTFOUND) {
        return impl_->Note(rc, "read field");
      }
    }
    last_seq_known_ = false;
    // Read the newest log seq before removing this field's old entry: if that entry is
    // the newest, removing it first would hand the same seq out again, and a peer whose
    // cursor is at that seq would never see this change.
    if (!last_seq_) TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&last_seq_));
    if (old_seq) {
      MDB_val ok{8, &old_seq};
      rc = mdb_del(txn_, impl_->log, &ok, nullptr);
      if (rc && rc != MDB_NOTFOUND) return impl_->Note(rc, "write log");
    }
    uint64_t seq = ++last_seq_;
    value_.clear();
    engine::Writer w(&value_);
    w.Varint(seq);
    engine::EncodeFieldState(state, impl_->table, &value_);
    MDB_val val = Val(value_);
    kv = Val(k);
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fields, &fields_cur_));
    if ((rc = mdb_cursor_put(fields_cur_, &kv, &val, 0))) return impl_->Note(rc, "write field");
    MDB_val lk{8, &seq}, lv = Val(k);
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->log, &log_cur_));
    if ((rc = mdb_cursor_put(log_cur_, &lk, &lv, MDB_APPEND))) return impl_->Note(rc, "write log");
    return Status::Ok();
  }

  Status OpenCursor(MDB_dbi dbi, MDB_cursor** cur) {
    if (*cur) return Status::Ok();
    int rc = mdb_cursor_open(txn_, dbi, cur);
    return rc ? LmdbError(rc, "open cursor") : Status::Ok();
  }
  void CloseCursors() {
    if (fields_cur_) mdb_cursor_close(fields_cur_);
    if (log_cur_) mdb_cursor_close(log_cur_);
    fields_cur_ = log_cur_ = nullptr;
  }

  Status Commit() override {
    CloseCursors();
    // New interned names and replica ids go in last; they can be what fills the map.
    if (int rc = impl_->table.t.FlushPending(txn_, impl_->replicas))
      return impl_->Note(rc, "replica table");
    if (int rc = impl_->names.FlushPending(txn_, impl_->names_db))
      return impl_->Note(rc, "name table");
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    impl_->table.t.EndWriter(rc == 0);
    impl_->names.EndWriter(rc == 0);
    return rc ? impl_->Note(rc, "commit") : Status::Ok();
  }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  LmdbStore::Impl* impl_;
  MDB_txn* txn_;
  uint64_t last_seq_ = 0;
  std::string value_;
  MDB_cursor* fields_cur_ = nullptr;
  MDB_cursor* log_cur_ = nullptr;
  FieldKey last_field_;
  std::string last_key_;  // the field GetField read last, and its change-log seq
  uint64_t last_old_seq_ = 0;
  bool last_seq_known_ = false;
};

Status CheckEmptyOrMissing(const std::string& dir, const char* what) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return Status::Ok();
  if (!fs::is_directory(dir, ec)) return Status::Invalid(dir + " exists and is not a directory");
  if (!fs::is_empty(dir, ec))
    return Status::Invalid(std::string(what) + ": " + dir + " is not empty" +
                           (IsReplicaDir(dir) ? " (it already holds a replica)" : ""));
  return Status::Ok();
}

// Checks that data.mdb starts with an LMDB meta page before LMDB touches the directory.
Status ProbeDataFile(const std::string& dir) {
  std::string path = dir + "/data.mdb";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return Status::NotFound(dir + ": no such directory");
    if (!fs::is_directory(dir, ec)) return Status::Invalid(dir + " is not a directory");
    return Status::NotFound(dir + " is not a Tandem replica (no data.mdb; create one with init)");
  }
  char buf[24] = {};
  in.read(buf, sizeof buf);
  uint32_t magic;
  std::memcpy(&magic, buf + 16, 4);
  if (in.gcount() < 24 || magic != kLmdbMagic)
    return Status::Corrupt(path + " is damaged or not an LMDB file");
  return Status::Ok();
}

}  // namespace

LmdbStore::LmdbStore(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}
LmdbStore::~LmdbStore() = default;

// Records where the replica's data file is now. kRekey (a copy, or a restore) also takes
// a new replica id in the same transaction, unless the origin is already this place:
// another process that opened the same copy at the same time did it. kForceRekey takes
// one whatever the origin says.
enum class Stamp { kAdopt, kRekey, kForceRekey };
static Status StampOrigin(LmdbStore& store, Stamp how, const Options& opt) {
  TANDEM_ASSIGN_OR_RETURN(std::string here, Fingerprint(store.dir()));
  Status st;
  for (int attempt = 0; attempt < 32; ++attempt) {
    st = [&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store.BeginWrite());
      auto* w = static_cast<LmdbWriteTxn*>(txn.get());
      std::string origin;
      TANDEM_RETURN_IF_ERROR(w->GetOrigin(&origin));
      if (origin == here && how != Stamp::kForceRekey) return Status::Ok();
      if (how != Stamp::kAdopt) {
        ReplicaMeta meta;
        TANDEM_RETURN_IF_ERROR(w->GetMeta(&meta));
        engine::TakeNewReplicaId(meta, opt.new_ids ? opt.new_ids : RandomReplicaId);
        TANDEM_RETURN_IF_ERROR(w->PutMeta(meta));
      }
      TANDEM_RETURN_IF_ERROR(w->PutOrigin(here));
      return w->Commit();
    }();
    if (st.code() != Code::kBusy) break;  // kBusy: the map grew; run it again
  }
  return st.With("record the replica's location");
}

Result<std::unique_ptr<LmdbStore>> Open(const std::string& dir, const Options& opt, bool create,
                                        bool stamp) {
  enum { kSameOrigin, kNoOrigin, kMoved } origin = kSameOrigin;
  auto impl = std::make_unique<LmdbStore::Impl>();
  int rc = mdb_env_create(&impl->env);
  if (rc) return LmdbError(rc, "create environment");
  mdb_env_set_maxdbs(impl->env, 8);
  mdb_env_set_maxreaders(impl->env, 256);
  unsigned flags = MDB_NOTLS;
  if (opt.durability == Durability::kRelaxed) flags |= MDB_NOSYNC;
  const bool had_lock = fs::exists(dir + "/lock.mdb");
  impl->dir = dir;
  // LMDB maps lock.mdb and writes it through the mapping: a sparse file on a full disk
  // kills the process with SIGBUS. So its blocks are allocated first (LMDB keeps a
  // larger lock file as it is, with room for more readers).
  {
    const std::string lock = dir + "/lock.mdb";
    int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::Io("open " + lock + ": " + strerror(errno));
    struct stat st;
    int err = ::fstat(fd, &st) != 0 ? errno : 0;
    if (!err && st.st_size < kLockFileBytes) err = ::posix_fallocate(fd, 0, kLockFileBytes);
    ::close(fd);
    if (err) {
      if (!had_lock) ::unlink(lock.c_str());
      if (Status full = DiskError(err, "open " + dir, dir); !full.ok()) return full;
      return Status::Io("allocate " + lock + ": " + strerror(err));
    }
  }
  // Adopt the size on disk if it is larger than the initial size asked for.
  std::error_code ec;
  size_t on_disk = create ? 0 : static_cast<size_t>(fs::file_size(dir + "/data.mdb", ec));
  impl->map_bytes = std::max(opt.initial_map_bytes, ec ? 0 : on_disk);
  mdb_env_set_mapsize(impl->env, impl->map_bytes);
  rc = mdb_env_open(impl->env, dir.c_str(), flags, 0644);
  if (rc) {
    if (!had_lock) fs::remove(dir + "/lock.mdb", ec);  // leave it as we found it
    if (create) fs::remove(dir + "/data.mdb", ec);
    if (Status full = DiskError(rc, "open " + dir, dir); !full.ok()) return full;
    return LmdbError(rc, "open " + dir);
  }
  int dead = 0;
  mdb_reader_check(impl->env, &dead);  // clear slots of killed processes

  MDB_txn* txn;
  if ((rc = mdb_txn_begin(impl->env, nullptr, create ? 0 : MDB_RDONLY, &txn)))
    return LmdbError(rc, "begin");
  unsigned dbflags = create ? MDB_CREATE : 0;
  rc = mdb_dbi_open(txn, "meta", dbflags, &impl->meta);
  if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return Status::NotFound(dir + " holds an LMDB environment but not a Tandem replica");
  }
  if (!rc) rc = mdb_dbi_open(txn, "fields", dbflags, &impl->fields);
  if (!rc) rc = mdb_dbi_open(txn, "log", dbflags | MDB_INTEGERKEY, &impl->log);
  if (!rc) rc = mdb_dbi_open(txn, "replicas", dbflags | MDB_INTEGERKEY, &impl->replicas);
  if (!rc) rc = mdb_dbi_open(txn, "names", dbflags | MDB_INTEGERKEY, &impl->names_db);
  if (!rc) rc = mdb_dbi_open(txn, "peers", dbflags, &impl->peers);
  if (rc) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "open databases in " + dir);
  }
  MDB_val k = Val("format"), v;
  if (create) {
    uint32_t format = kFormatVersion;
    v = MDB_val{4, &format};
    rc = mdb_put(txn, impl->meta, &k, &v, 0);
    ReplicaMeta meta;
    meta.id = opt.replica_id ? *opt.replica_id : RandomReplicaId();
    std::string m = EncodeMeta(meta);
    MDB_val mk = Val("replica"), mv = Val(m);
    if (!rc) rc = mdb_put(txn, impl->meta, &mk, &mv, 0);
    auto here = Fingerprint(dir);
    if (!here.ok()) {
      mdb_txn_abort(txn);
      return here.status();
    }
    MDB_val ok = Val("origin"), ov = Val(*here);
    if (!rc) rc = mdb_put(txn, impl->meta, &ok, &ov, 0);
    if (!rc)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc) return impl->Note(rc, "initialise " + dir);
  } else {
    rc = mdb_get(txn, impl->meta, &k, &v);
    if (rc || v.mv_size != 4) {
      mdb_txn_abort(txn);
      return Status::Corrupt(dir + ": replica format version is missing");
    }
    uint32_t format;
    std::memcpy(&format, v.mv_data, 4);
    if (format > kFormatVersion) {
      mdb_txn_abort(txn);
      return Status::Unsupported(dir + " was written by a newer Tandem (format " +
                                 std::to_string(format) + "; this build reads up to " +
                                 std::to_string(kFormatVersion) + ")");
    }
    Status st = impl->RefreshTables(txn);
    ReplicaMeta meta;
    MDB_val mk = Val("replica"), mv;
    if (st.ok()) {
      rc = mdb_get(txn, impl->meta, &mk, &mv);
      if (rc)
        st = Status::Corrupt(dir + ": replica meta is missing");
      else if (auto m = DecodeMeta(View(mv)); !m.ok())
        st = m.status();
    }
    if (st.ok()) {
      MDB_val ok = Val("origin"), ov;
      rc = mdb_get(txn, impl->meta, &ok, &ov);
      auto here = Fingerprint(dir);
      if (!here.ok())
        st = here.status();
      else
        origin = rc == MDB_NOTFOUND ? kNoOrigin : View(ov) == *here ? kSameOrigin : kMoved;
    }
    // Committing (not aborting) keeps the database handles opened in this transaction.
    if (st.ok()) {
      if ((rc = mdb_txn_commit(txn))) st = LmdbError(rc, "open " + dir);
    } else {
      mdb_txn_abort(txn);
    }
    TANDEM_RETURN_IF_ERROR(st.With(dir));
  }
  auto store = std::unique_ptr<LmdbStore>(new LmdbStore(dir, std::move(impl)));
  // A replica from before origins were recorded adopts where it is; one that is not
  // where it was created is a copy, and takes a new replica id.
  if (stamp && origin != kSameOrigin)
    TANDEM_RETURN_IF_ERROR(
        StampOrigin(*store, origin == kMoved ? Stamp::kRekey : Stamp::kAdopt, opt));
  return store;
}

Result<std::unique_ptr<LmdbStore>> CreateStore(const std::string& dir, const Options& opt) {
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dir, "init"));
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return Status::Io("create " + dir + ": " + ec.message());
  auto store = Open(dir, opt, true, true);
  if (!store.ok()) {
    // Leave nothing that a second try would refuse as a non-empty directory.
    fs::remove(dir + "/data.mdb", ec);
    fs::remove(dir + "/lock.mdb", ec);
    if (!existed) fs::remove(dir, ec);
  }
  return store;
}

Result<std::unique_ptr<LmdbStore>> OpenStore(const std::string& dir, const Options& opt) {
  TANDEM_RETURN_IF_ERROR(ProbeDataFile(dir));
  return Open(dir, opt, false, true);
}

bool IsReplicaDir(const std::string& dir) {
  std::error_code ec;
  return fs::exists(dir + "/data.mdb", ec);
}

// Begins an LMDB transaction under the resize lock (held shared in *lock for its life),
// growing the map first if the last transaction filled it and adopting a size another
// process set; the intern tables are brought up to date.
static Status BeginTxn(LmdbStore::Impl* impl, unsigned flags, MDB_txn** out,
                       std::shared_lock<std::shared_mutex>* lock) {
  TANDEM_RETURN_IF_ERROR(impl->MaybeGrow());
  const char* what = (flags & MDB_RDONLY) ? "begin read" : "begin write";
  for (int attempt = 0;; ++attempt) {
    *lock = std::shared_lock(impl->resize_mu);
    MDB_txn* txn;
    int rc = mdb_txn_begin(impl->env, nullptr, flags, &txn);
    if (rc == MDB_MAP_RESIZED && attempt < 3) {
      lock->unlock();
      TANDEM_RETURN_IF_ERROR(impl->AdoptSize());
      continue;
    }
    if (rc) return LmdbError(rc, what);
    Status st = impl->RefreshTables(txn);
    if (!st.ok()) {
      mdb_txn_abort(txn);
      return st;
    }
    *out = txn;
    return Status::Ok();
  }
}

uint64_t LmdbStore::LastTxnId() {
  MDB_envinfo info;
  mdb_env_info(impl_->env, &info);
  return info.me_last_txnid;
}

Result<std::unique_ptr<engine::ReadTxn>> LmdbStore::BeginRead() {
  MDB_txn* txn;
  std::shared_lock<std::shared_mutex> lock;
  TANDEM_RETURN_IF_ERROR(BeginTxn(impl_.get(), MDB_RDONLY, &txn, &lock));
  return std::unique_ptr<engine::ReadTxn>(new LmdbReadTxn(impl_.get(), txn, std::move(lock)));
}

Result<std::unique_ptr<engine::WriteTxn>> LmdbStore::BeginWrite() {
  MDB_txn* txn;
  std::shared_lock<std::shared_mutex> lock;
  TANDEM_RETURN_IF_ERROR(BeginTxn(impl_.get(), 0, &txn, &lock));
  impl_->table.t.BeginWriter();
  impl_->names.BeginWriter();
  return std::unique_ptr<engine::WriteTxn>(new LmdbWriteTxn(impl_.get(), txn, std::move(lock)));
}

Status Backup(LmdbStore& store, const std::string& dest, const std::vector<std::string>& files) {
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dest, "backup"));
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return Status::Io("create " + dest + ": " + ec.message());
  int rc = mdb_env_copy2(store.impl()->env, dest.c_str(), MDB_CP_COMPACT);
  if (rc) return LmdbError(rc, "backup to " + dest);
  for (const auto& src : files) {
    if (!fs::exists(src, ec)) continue;
    const std::string name = fs::path(src).filename().string();
    fs::copy_file(src, dest + "/" + name, ec);
    if (ec) return Status::Io("copy " + name + ": " + ec.message());
    fs::permissions(dest + "/" + name, fs::perms::owner_read | fs::perms::owner_write, ec);
  }
  return Status::Ok();
}

Status Restore(const std::string& backup, const std::string& dir,
               const std::vector<std::string>& files) {
  {
    // Validate the backup fully (format, meta, every field) before making anything,
    // without changing it (no origin stamp, no new id).
    TANDEM_RETURN_IF_ERROR(ProbeDataFile(backup));
    TANDEM_ASSIGN_OR_RETURN(auto src, Open(backup, Options{}, false, /*stamp=*/false));
    TANDEM_RETURN_IF_ERROR(Check(*src).With("backup " + backup));
  }
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dir, "restore"));
  // Built beside `dir` (same filesystem, so the rename is atomic and keeps the inode the
  // origin records) and renamed into place last: a restore that fails or is killed
  // leaves no replica at `dir`. The new replica id is taken before anything else, so
  // even a leftover temporary directory never holds a clone of the backup's replica.
  fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  std::string tmp_name = ".";  // not "." + ...: g++ 12 warns (-Wrestrict) on that falsely
  tmp_name += target.filename().string() + ".restoring." + std::to_string(::getpid());
  const fs::path tmp = target.parent_path() / tmp_name;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(target.parent_path(), ec);
  fs::create_directory(tmp, ec);
  if (ec) return Status::Io("create " + tmp.string() + ": " + ec.message());
  Status st = [&]() -> Status {
    fs::copy_file(backup + "/data.mdb", tmp / "data.mdb", ec);
    if (ec) return Status::Io("copy data: " + ec.message());
    {
      TANDEM_ASSIGN_OR_RETURN(auto store, Open(tmp.string(), Options{}, false, false));
      // A new id whatever the backup's origin says (a backup from before origins has none).
      TANDEM_RETURN_IF_ERROR(StampOrigin(*store, Stamp::kForceRekey, Options{}));
    }
    for (const auto& name : files) {
      if (!fs::exists(backup + "/" + name, ec)) continue;
      const fs::path to = tmp / name;
      fs::copy_file(backup + "/" + name, to, ec);
      if (ec) return Status::Io("copy " + std::string(name) + ": " + ec.message());
      fs::permissions(to, fs::perms::owner_read | fs::perms::owner_write, ec);
      int fd = ::open(to.c_str(), O_RDONLY);
      if (fd < 0 || ::fsync(fd) != 0) {
        if (fd >= 0) ::close(fd);
        return Status::Io("fsync " + to.string() + ": " + strerror(errno));
      }
      ::close(fd);
    }
    // rename(2) replaces an empty directory, which CheckEmptyOrMissing allowed.
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      return Status::Io("rename " + tmp.string() + " to " + target.string() + ": " +
                        strerror(errno));
    int dfd = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
      ::fsync(dfd);  // the rename itself; failing here leaves a complete replica anyway
      ::close(dfd);
    }
    return Status::Ok();
  }();
  if (!st.ok()) fs::remove_all(tmp, ec);
  return st;
}

Status Check(LmdbStore& store, CheckReport* report) {
  CheckReport rep;
  auto* impl = store.impl();
  // One raw snapshot for everything (fields, log, tables, meta), so writers in other
  // processes cannot make a healthy replica look inconsistent.
  std::shared_lock lock(impl->resize_mu);
  MDB_txn* raw;
  int rc = mdb_txn_begin(impl->env, nullptr, MDB_RDONLY, &raw);
  if (rc) return LmdbError(rc, "begin check");
  LmdbReader reader(impl, raw);
  ReplicaMeta meta;
  Status first = impl->RefreshTables(raw);
  if (first.ok()) first = reader.GetMeta(&meta);
  if (!first.ok()) {
    mdb_txn_abort(raw);
    return first;
  }
  const uint64_t own = meta.vv.Get(meta.id);
  std::map<uint64_t, std::string> want;  // seq -> key, from the fields
  Status st;
  std::string last_record;
  MDB_cursor* cur = nullptr;
  rc = mdb_cursor_open(raw, impl->fields, &cur);
  MDB_val k, v;
  for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && st.ok();
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    std::string key(View(k));
    FieldKey fk;
    if (!impl->DecodeKey(key, &fk)) {
      st = Status::Corrupt("malformed field key");
      break;
    }
    std::string where = fk.collection + "/" + fk.record + "." + fk.field;
    if (Status kv = engine::ValidateKey(fk); !kv.ok()) {
      st = kv.With(where);
      break;
    }
    uint64_t seq;
    std::string_view bytes;
    st = LmdbReader::SplitValue(View(v), &seq, &bytes).With(where);
    if (!st.ok()) break;
    auto decoded = engine::DecodeFieldState(bytes, impl->table);
    if (!decoded.ok()) {
      st = decoded.status().With(where);
      break;
    }
    if (decoded->ctx.Get(meta.id) > own) {
      st = Status::Corrupt(where + " holds an event of ours past the version vector");
      break;
    }
    if (!want.emplace(seq, key).second) {
      st = Status::Corrupt(where + " shares change-log seq " + std::to_string(seq));
      break;
    }
    ++rep.fields;
    std::string rk = fk.collection + '\0' + fk.record;
    if (rk != last_record) ++rep.records, last_record = rk;
  }
  if (cur) mdb_cursor_close(cur);
  if (st.ok() && rc != MDB_NOTFOUND) st = LmdbError(rc, "check fields");
  if (st.ok()) {
    std::map<uint64_t, std::string> have;
    st = reader.ScanLog(0, [&](uint64_t seq, const FieldKey& key) {
      have.emplace(seq, impl->Key(key.collection, key.record, key.field, false).value_or(""));
      return true;
    });
    rep.log_entries = have.size();
    if (st.ok() && have != want) {
      st = Status::Corrupt("change log (" + std::to_string(have.size()) + " entries) and fields (" +
                           std::to_string(want.size()) + ") disagree");
    }
  }
  mdb_txn_abort(raw);
  TANDEM_RETURN_IF_ERROR(st);
  if (report) *report = rep;
  return Status::Ok();
}

}  // namespace tandem::storage
