#include "tandem/storage/lmdb_store.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "lmdb_internal.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::storage {

namespace {
constexpr uint32_t kLmdbMagic = 0xBEEFC0DE;
constexpr off_t kLockFileBytes = 32 << 10;  // LMDB needs 16,512 for 256 readers
}  // namespace

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

namespace {

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

uint64_t FirstLogSeq(uint64_t newest) {
  const uint64_t now_us =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  return std::max(newest, now_us) + 1;
}

namespace {

class LmdbReadTxn : public engine::ReadsThrough<engine::ReadTxn, LmdbReader> {
 public:
  LmdbReadTxn(LmdbStore::Impl* impl, MDB_txn* txn, std::shared_lock<std::shared_mutex> lock)
      : ReadsThrough(impl, txn), lock_(std::move(lock)), txn_(txn) {}
  ~LmdbReadTxn() override { mdb_txn_abort(txn_); }
  Status ScanLogFields(uint64_t since, const engine::ReadTxn::LogFieldFn& fn) override {
    return reader_.ScanLogFields(since, fn);
  }
  Status CountLog(uint64_t since, uint64_t cap, uint64_t* out) override {
    return reader_.CountLog(since, cap, out);
  }

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
    auto key = Key(k, false);
    if (!key) return Status::Ok();
    last_key_ = std::move(*key);
    last_field_ = k;
    // Past the end of the table (a bulk load, records with ascending ids): no such field,
    // and the PutField that follows appends without searching.
    TANDEM_RETURN_IF_ERROR(LoadFieldsEnd());
    if (last_key_ > *fields_end_) {
      last_old_seq_ = 0;
      last_seq_known_ = true;
      return Status::Ok();
    }
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
  Status ScanLogFields(uint64_t since, const engine::ReadTxn::LogFieldFn& fn) override {
    return reader_.ScanLogFields(since, fn);
  }
  Status CountLog(uint64_t since, uint64_t cap, uint64_t* out) override {
    return reader_.CountLog(since, cap, out);
  }
  Status PutPeer(const ReplicaId& peer, const engine::PeerState& state) override {
    // A peer's state that says where its log ended needs format 3.
    if (state.mark) TANDEM_RETURN_IF_ERROR(RaiseFormat());
    if (state.pieces) TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatBlobs));
    std::string v = engine::EncodePeerState(state);
    MDB_val k{16, const_cast<uint8_t*>(peer.bytes.data())}, val = Val(v);
    int rc = mdb_put(txn_, impl_->peers, &k, &val, 0);
    return rc ? impl_->Note(rc, "write peer") : Status::Ok();
  }

  Status TakeQuarantineId(uint64_t* out) override {
    MDB_val k = Val("quarantine-last"), v;
    uint64_t last = 0;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == 0 && v.mv_size == 8) std::memcpy(&last, v.mv_data, 8);
    if (rc && rc != MDB_NOTFOUND) return impl_->Note(rc, "read quarantine id");
    *out = ++last;
    v = MDB_val{8, &last};
    rc = mdb_put(txn_, impl_->meta, &k, &v, 0);
    return rc ? impl_->Note(rc, "write quarantine id") : Status::Ok();
  }
  Status PutQuarantine(uint64_t id, std::string_view entry) override {
    std::string key = LmdbReader::QuarantineKey(id);
    MDB_val k = Val(key), val = Val(entry);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write quarantine") : Status::Ok();
  }
  Status DeleteQuarantine(uint64_t id) override {
    std::string key = LmdbReader::QuarantineKey(id);
    MDB_val k = Val(key);
    int rc = mdb_del(txn_, impl_->meta, &k, nullptr);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    return rc ? impl_->Note(rc, "delete quarantine") : Status::Ok();
  }

  Status DeleteField(const FieldKey& key, bool* deleted) override {
    *deleted = false;
    auto k = Key(key, false);
    if (!k) return Status::Ok();  // a name never written: no such field
    MDB_val kv = Val(*k), v;
    int rc = mdb_get(txn_, impl_->fields, &kv, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return impl_->Note(rc, "read field");
    uint64_t seq = 0;
    std::string_view ignored;
    TANDEM_RETURN_IF_ERROR(LmdbReader::SplitValue(View(v), &seq, &ignored));
    uint64_t newest = last_seq_;
    if (!newest) TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&newest));
    if (seq == newest) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatCollected));
    if ((rc = mdb_del(txn_, impl_->fields, &kv, nullptr))) return impl_->Note(rc, "delete field");
    MDB_val lk{8, &seq};
    rc = mdb_del(txn_, impl_->log, &lk, nullptr);
    if (rc && rc != MDB_NOTFOUND) return impl_->Note(rc, "delete log entry");
    // What this transaction remembered of the table may name the key just removed.
    last_seq_known_ = false;
    if (fields_end_ && *fields_end_ == *k) fields_end_.reset();
    *deleted = true;
    return Status::Ok();
  }
  Status Repack() override {
    CloseCursors();
    fields_end_.reset();
    last_seq_known_ = false;
    return RepackFieldsAndLog(*impl_, txn_);
  }
  Status PutCollected(const engine::VersionVector& collected) override {
    TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatCollected));
    std::string v;
    engine::Writer w(&v);
    w.U8(1);
    engine::EncodeVersionVector(collected, w);
    MDB_val k = Val("collected"), val = Val(v);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write collected") : Status::Ok();
  }

  Status PutBlob(const engine::BlobHash& h, const engine::BlobInfo& info) override {
    TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatBlobs));
    return PutBlobEntry(*impl_, txn_, h, info);
  }
  Status DeleteBlob(const engine::BlobHash& h) override {
    return DeleteBlobEntries(*impl_, txn_, h);
  }
  Status PutChunk(const engine::BlobHash& h, std::string_view bytes) override {
    TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatBlobs));
    return PutChunkEntry(*impl_, txn_, h, bytes);
  }
  Status DeleteChunk(const engine::BlobHash& h) override {
    return DeleteChunkEntry(*impl_, txn_, h);
  }

  // Records that no entry will ever have a position strictly between `from` and `to`.
  Status AddLogGap(uint64_t from, uint64_t to) {
    std::vector<std::pair<uint64_t, uint64_t>> gaps;
    TANDEM_RETURN_IF_ERROR(reader_.GetLogGaps(&gaps));
    gaps.emplace_back(from, to);
    if (gaps.size() > kMaxLogGaps)
      gaps.erase(gaps.begin(),
                 gaps.begin() + static_cast<std::ptrdiff_t>(gaps.size() - kMaxLogGaps));
    std::string v = EncodeLogGaps(gaps);
    MDB_val k = Val("log-gaps"), val = Val(v);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write log gaps") : Status::Ok();
  }
  // Marks the replica as of this build's format, which older builds refuse: once, by
  // the first transaction that writes what they could not keep up to date or read.
  Status RaiseFormat(uint32_t to = kFormatMark) {
    if (raises_format_ >= to || impl_->format.load(std::memory_order_relaxed) >= to)
      return Status::Ok();
    // Another process may have raised it further since this one read it: never lower it.
    MDB_val k = Val("format"), v;
    uint32_t stored = 0;
    int rc = mdb_get(txn_, impl_->meta, &k, &v);
    if (rc == 0 && v.mv_size == 4) std::memcpy(&stored, v.mv_data, 4);
    if (rc && rc != MDB_NOTFOUND) return impl_->Note(rc, "read format version");
    if (stored >= to) {
      raises_format_ = stored;  // what this process knows of it, once this commits
      return Status::Ok();
    }
    v = MDB_val{4, &to};
    if ((rc = mdb_put(txn_, impl_->meta, &k, &v, 0)))
      return impl_->Note(rc, "write format version");
    raises_format_ = to;
    return Status::Ok();
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
    std::string k = same ? last_key_ : *Key(key, true);
    MDB_val kv = Val(k), old;
    uint64_t old_seq = 0;
    int rc;
    TANDEM_RETURN_IF_ERROR(LoadFieldsEnd());
    const bool append = k > *fields_end_;
    if (same) {
      old_seq = last_old_seq_;
    } else if (!append) {
      rc = mdb_get(txn_, impl_->fields, &kv, &old);
      if (rc == 0) {
        std::string_view ignored;
        TANDEM_RETURN_IF_ERROR(LmdbReader::SplitValue(View(old), &old_seq, &ignored));
      } else if (rc != MDB_NOTFOUND) {
        return impl_->Note(rc, "read field");
      }
    }
    last_seq_known_ = false;
    if (!last_seq_) {
      TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&last_seq_));
      if (!impl_->log_started.load(std::memory_order_relaxed)) {
        const uint64_t newest = last_seq_;
        last_seq_ = impl_->first_log_seq(newest) - 1;  // this process's first entry
        starts_log_ = true;
        if (last_seq_ > newest) TANDEM_RETURN_IF_ERROR(AddLogGap(newest, last_seq_ + 1));
      }
    }
    uint64_t seq = last_seq_ + 1;  // not const: MDB_val points at it
    value_.clear();
    engine::Writer w(&value_);
    w.Varint(seq);
    TANDEM_RETURN_IF_ERROR(engine::EncodeFieldState(state, impl_->table, &value_));
    // The field's previous entry stays, stale, until CompactLog: removing it here would
    // write a page of the log's past for every field overwritten.
    if (old_seq) left_stale_ = true;
    last_seq_ = seq;
    TANDEM_RETURN_IF_ERROR(LoadHull());
    if (!hull_->hull.Covers(state.ctx)) {
      hull_->hull.Merge(state.ctx);
      hull_dirty_ = true;
    }
    MDB_val val = Val(value_);
    kv = Val(k);
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fields, &fields_cur_));
    if ((rc = mdb_cursor_put(fields_cur_, &kv, &val, append ? MDB_APPEND : 0)))
      return impl_->Note(rc, "write field");
    MDB_val lk{8, &seq}, lv = Val(k);
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->log, &log_cur_));
    if ((rc = mdb_cursor_put(log_cur_, &lk, &lv, MDB_APPEND))) return impl_->Note(rc, "write log");
    if (append) fields_end_ = std::move(k);
    return Status::Ok();
  }

  Status GetLogHull(engine::LogHull* out) override {
    if (hull_) {
      *out = *hull_;
      return Status::Ok();
    }
    return reader_.GetLogHull(out);
  }
  Status CheckpointLog() override {
    TANDEM_RETURN_IF_ERROR(LoadHull());
    uint64_t last = 0;
    TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&last));
    const engine::LogHull before = *hull_;
    hull_->Checkpoint(last);
    if (!(*hull_ == before)) hull_dirty_ = true;
    return Status::Ok();
  }
  // The greatest key in `fields`, read once per transaction and kept as appends move it.
  Status LoadFieldsEnd() {
    if (fields_end_) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fields, &fields_cur_));
    MDB_val k, v;
    int rc = mdb_cursor_get(fields_cur_, &k, &v, MDB_LAST);
    if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "read fields");
    fields_end_ = rc ? std::string() : std::string(View(k));
    return Status::Ok();
  }
  // Read once per transaction, before this transaction's first change to the log.
  Status LoadHull() {
    if (hull_) return Status::Ok();
    engine::LogHull hull;
    LmdbReader::HullSource source;
    TANDEM_RETURN_IF_ERROR(reader_.GetLogHull(&hull, &source));
    // What GetLogHull rebuilt (a new base) is written back with this transaction. The
    // first write of a replica from before the hull was kept also raises its format: a
    // build that would not keep the hull up to date must not write here.
    hull_dirty_ = source != LmdbReader::HullSource::kStored;
    if (source == LmdbReader::HullSource::kNone) TANDEM_RETURN_IF_ERROR(RaiseFormat());
    hull_ = std::move(hull);
    return Status::Ok();
  }

  // The stored key of a field (Impl::Key), each name looked up in the shared table
  // once per transaction: a write transaction names few collections and fields.
  std::optional<std::string> Key(const FieldKey& k, bool intern) {
    const auto c = NameIndex(k.collection, intern), f = NameIndex(k.field, intern);
    if (!c || !f) return std::nullopt;
    return LmdbStore::Impl::KeyOf(*c, k.record, *f);
  }
  std::optional<uint64_t> NameIndex(const std::string& name, bool intern) {
    if (auto it = names_.find(name); it != names_.end()) return it->second;
    const auto idx = intern ? impl_->names.Intern(name) : impl_->names.Find(name);
    // Only names the table holds (one interned later in the transaction is found then).
    if (idx && names_.size() < kMaxNamesKept) names_.emplace(name, *idx);
    return idx;
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
    if (left_stale_) {
      TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatLazyLog));
      TANDEM_RETURN_IF_ERROR(CompactLog(*impl_, txn_));
    }
    if (hull_ && (last_seq_ || hull_dirty_)) {
      // Where the log ended when the hull was last kept up to date (GetLogHull).
      uint64_t end = last_seq_;
      if (!end) TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&end));
      MDB_val k = Val("log-hull-end"), v{8, &end};
      if (int rc = mdb_put(txn_, impl_->meta, &k, &v, 0)) return impl_->Note(rc, "write log hull");
    }
    if (hull_dirty_) {
      std::string h = engine::EncodeLogHull(*hull_);
      MDB_val k = Val("log-hull"), v = Val(h);
      if (int rc = mdb_put(txn_, impl_->meta, &k, &v, 0)) return impl_->Note(rc, "write log hull");
    }
    // New interned names and replica ids go in last; they can be what fills the map.
    if (int rc = impl_->table.t.FlushPending(txn_, impl_->replicas))
      return impl_->Note(rc, "replica table");
    if (int rc = impl_->names.FlushPending(txn_, impl_->names_db))
      return impl_->Note(rc, "name table");
    const auto t0 = std::chrono::steady_clock::now();
    int rc = mdb_txn_commit(txn_);
    if (rc == 0)
      impl_->commits.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    txn_ = nullptr;
    if (rc == 0 && starts_log_) impl_->log_started.store(true, std::memory_order_relaxed);
    if (rc == 0 && raises_format_) impl_->format.store(raises_format_, std::memory_order_relaxed);
    impl_->table.t.EndWriter(rc == 0);
    impl_->names.EndWriter(rc == 0);
    return rc ? impl_->Note(rc, "commit") : Status::Ok();
  }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  LmdbStore::Impl* impl_;
  MDB_txn* txn_;
  uint64_t last_seq_ = 0;  // the newest log position this transaction wrote (0: none yet)
  std::string value_;
  MDB_cursor* fields_cur_ = nullptr;
  MDB_cursor* log_cur_ = nullptr;
  bool left_stale_ = false;  // a field written again left its earlier log entry stale
  FieldKey last_field_;
  std::string last_key_;  // the field GetField read last, and its change-log seq
  uint64_t last_old_seq_ = 0;
  bool last_seq_known_ = false;
  std::optional<std::string> fields_end_;            // the greatest key in `fields` (LoadFieldsEnd)
  std::unordered_map<std::string, uint64_t> names_;  // NameIndex
  static constexpr size_t kMaxNamesKept = 256;
  std::optional<engine::LogHull> hull_;  // loaded by the first change to the log
  bool hull_dirty_ = false;
  bool starts_log_ = false;     // its positions start this process's (FirstLogSeq)
  uint32_t raises_format_ = 0;  // the format RaiseFormat wrote (0: none)
};

}  // namespace

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

LmdbStore::LmdbStore(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}
LmdbStore::~LmdbStore() = default;

Status TakeNewId(LmdbStore& store, const Options& opt, const engine::ReplicaId& only_if) {
  Status st;
  for (int attempt = 0; attempt < 32; ++attempt) {
    st = [&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store.BeginWrite());
      auto* w = static_cast<LmdbWriteTxn*>(txn.get());
      ReplicaMeta meta;
      TANDEM_RETURN_IF_ERROR(w->GetMeta(&meta));
      // Another process replaced it first, or it issued something meanwhile: keep it.
      if (meta.id != only_if || meta.vv.Get(meta.id) != 0) return Status::Ok();
      engine::TakeNewReplicaId(meta, opt.new_ids ? opt.new_ids : RandomReplicaId);
      TANDEM_RETURN_IF_ERROR(w->PutMeta(meta));
      return w->Commit();
    }();
    if (st.code() != Code::kBusy) break;  // kBusy: the map grew; run it again
  }
  return st.With("take a new replica id");
}

Status StampOrigin(LmdbStore& store, Stamp how, const Options& opt) {
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
  impl->first_log_seq = opt.first_log_seq ? opt.first_log_seq : FirstLogSeq;
  impl->compact_floor = opt.compact_floor;
  impl->compact_slice = std::max<size_t>(opt.compact_slice, 1);
  int rc = mdb_env_create(&impl->env);
  if (rc) return LmdbError(rc, "create environment");
  if ((rc = mdb_env_set_maxdbs(impl->env, 16)) || (rc = mdb_env_set_maxreaders(impl->env, 256)))
    return LmdbError(rc, "configure environment");
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
  if ((rc = mdb_env_set_mapsize(impl->env, impl->map_bytes)))
    return LmdbError(rc, "set the map size of " + dir);
  rc = mdb_env_open(impl->env, dir.c_str(), flags, 0644);
  if (rc) {
    if (!had_lock) fs::remove(dir + "/lock.mdb", ec);  // leave it as we found it
    if (create) fs::remove(dir + "/data.mdb", ec);
    if (Status full = DiskError(rc, "open " + dir, dir); !full.ok()) return full;
    return LmdbError(rc, "open " + dir);
  }
  int dead = 0;
  // Clears the reader slots of killed processes.
  if ((rc = mdb_reader_check(impl->env, &dead)))
    return LmdbError(rc, "check the readers of " + dir);

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
  // The blob tables came later: a replica from before has none until opened below.
  bool blob_tables = true;
  if (!rc) rc = mdb_dbi_open(txn, "blobs", dbflags, &impl->blobs);
  if (!rc) rc = mdb_dbi_open(txn, "chunks", dbflags, &impl->chunks);
  if (rc == MDB_NOTFOUND && !create) {
    blob_tables = false;
    rc = 0;
  }
  if (rc) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "open databases in " + dir);
  }
  MDB_val k = Val("format"), v;
  if (create) {
    uint32_t format = kFormatMark;  // 4 once something is collected (RaiseFormat)
    impl->format = format;
    v = MDB_val{4, &format};
    rc = mdb_put(txn, impl->meta, &k, &v, 0);
    ReplicaMeta meta;
    meta.id = opt.replica_id ? *opt.replica_id : opt.new_ids ? opt.new_ids() : RandomReplicaId();
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
    std::string hull = engine::EncodeLogHull(engine::LogHull{});
    MDB_val hk = Val("log-hull"), hv = Val(hull);
    if (!rc) rc = mdb_put(txn, impl->meta, &hk, &hv, 0);
    uint64_t end = 0;
    MDB_val ek = Val("log-hull-end"), ev{8, &end};
    if (!rc) rc = mdb_put(txn, impl->meta, &ek, &ev, 0);
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
    impl->format = format;
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
  if (!blob_tables) {
    if ((rc = mdb_txn_begin(impl->env, nullptr, 0, &txn))) return impl->Note(rc, "open " + dir);
    rc = mdb_dbi_open(txn, "blobs", MDB_CREATE, &impl->blobs);
    if (!rc) rc = mdb_dbi_open(txn, "chunks", MDB_CREATE, &impl->chunks);
    if (!rc)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc) return impl->Note(rc, "add the blob tables to " + dir);
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

}  // namespace tandem::storage
