// The transactions of an LmdbStore: reads, and writes that keep the change log, its
// hull and the format up to date (the writes that give a replica a new id or stamp
// where it lives are in identity.cc).
#include <lmdb.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "lmdb_internal.h"
#include "log_run.h"
#include "refused_record.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"
#include "tandem/storage/lmdb_store.h"
#include "txn_lookups.h"

namespace tandem::storage {

namespace {

class LmdbReadTxn : public engine::ReadsThrough<engine::ReadTxn, LmdbReader> {
 public:
  LmdbReadTxn(LmdbStore::Impl* impl, MDB_txn* txn, std::shared_lock<std::shared_mutex> lock)
      : ReadsThrough(impl, txn), lock_(std::move(lock)), txn_(txn) {}
  ~LmdbReadTxn() override { mdb_txn_abort(txn_); }
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
      : ReadsThrough(impl, txn), lock_(std::move(lock)), impl_(impl), txn_(txn) {
    last_key_.reserve(kKeyRoom);
  }
  ~LmdbWriteTxn() override {
    if (txn_) {
      CloseCursors();
      mdb_txn_abort(txn_);
      impl_->table.t.EndWriter(false);
      impl_->names.EndWriter(false);
    }
    if (held_alone_) impl_->ShareAgain();
  }
  // Remembers the field's change-log seq, so the PutField that usually follows needs no
  // second lookup.
  Status GetField(const FieldKey& k, std::optional<FieldState>* out) override {
    if (!broken_.ok()) return broken_;
    out->reset();
    last_seq_known_ = false;
    if (!keys_.KeyInto(k, false, &last_key_)) return Status::Ok();
    // Only what changed: a transaction's writes go through a record's fields in turn.
    if (last_field_.collection != k.collection) last_field_.collection = k.collection;
    if (last_field_.record != k.record) last_field_.record = k.record;
    last_field_.field = k.field;
    // Past the end of the table (a bulk load, records with ascending ids): no such field,
    // and the PutField that follows appends without searching.
    TANDEM_RETURN_IF_ERROR(LoadFieldsEnd());
    last_past_end_ = last_key_ > *fields_end_;
    if (last_past_end_) {
      last_old_seq_ = 0;
      last_old_entry_.reset();
      last_seq_known_ = true;
      return Status::Ok();
    }
    MDB_val kv = Val(last_key_), v;
    // Through cursors: the PutField that follows finds the cursor on the right page and
    // skips the descent, as do neighbouring keys written in order. `fresh` first.
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fresh, &fresh_cur_));
    int rc = mdb_cursor_get(fresh_cur_, &kv, &v, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND) {
      TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fields, &fields_cur_));
      kv = Val(last_key_);
      rc = mdb_cursor_get(fields_cur_, &kv, &v, MDB_SET_KEY);
    }
    if (rc == MDB_NOTFOUND) {
      last_old_seq_ = 0;
      last_old_entry_.reset();
      last_seq_known_ = true;
      return Status::Ok();
    }
    if (rc) return LmdbError(rc, "read field");
    FieldState s;
    TANDEM_RETURN_IF_ERROR(reader_.DecodeField(last_key_, v, &s, &last_old_seq_).With(k.Name()));
    last_old_entry_ = OutOfLineEntry(View(v));
    last_seq_known_ = true;
    *out = std::move(s);
    return Status::Ok();
  }
  // Reads of the log see this transaction's entries: the run it holds back goes first.
  Status ScanLogDeltas(uint64_t since, uint64_t large,
                       const engine::ReadTxn::LogDeltaFn& fn) override {
    TANDEM_RETURN_IF_ERROR(FlushRun());
    return reader_.ScanLogDeltas(since, large, fn);
  }
  Status CountLog(uint64_t since, uint64_t cap, uint64_t* out) override {
    TANDEM_RETURN_IF_ERROR(FlushRun());
    return reader_.CountLog(since, cap, out);
  }
  Status ScanLog(uint64_t since, const engine::ReadTxn::LogFn& fn) override {
    TANDEM_RETURN_IF_ERROR(FlushRun());
    return reader_.ScanLog(since, fn);
  }
  Status LastLogSeq(uint64_t* out) override {
    TANDEM_RETURN_IF_ERROR(FlushRun());
    return reader_.LastLogSeq(out);
  }
  Status PutPeer(const ReplicaId& peer, const engine::PeerState& state) override {
    // A peer's state that says where its log ended needs format 3.
    if (state.mark) TANDEM_RETURN_IF_ERROR(RaiseFormat());
    if (state.pieces) TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatBlobs));
    // Which collections a filtered session took, only as far as the format may say it;
    // else the state reads as none of them taken (the next filtered session re-reads).
    // Likewise a filter that leaves collections out (format 12): none taken, none
    // delivered (the status says less than the peer has).
    engine::PeerState older = state;
    bool allowed = false;
    if (older.delivery.Excludes()) {
      TANDEM_RETURN_IF_ERROR(FilterAllowed(older.delivery, &allowed));
      if (!allowed) older.delivery = engine::CollectionFilter::None();
    }
    if (older.filtered && !(older.received == engine::CollectionFilter::None())) {
      TANDEM_RETURN_IF_ERROR(FilterAllowed(older.received, &allowed));
      if (!allowed) older.received = engine::CollectionFilter::None();
    }
    std::string v = engine::EncodePeerState(older);
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
    // The entry's first byte is its version (engine::EncodeQuarantineEntry): 2, held; 3
    // and 4, a state in pieces.
    if (!entry.empty() && entry[0] == 2) TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatHeld));
    if (!entry.empty() && (entry[0] == 3 || entry[0] == 4)) {
      bool allowed = false;
      TANDEM_RETURN_IF_ERROR(FormatAllowed(kFormatHeldPieces, &allowed));
      if (!allowed)
        return Status::Unsupported(
            "a state in pieces cannot be held while another process has the replica open");
      if (entry[0] == 4) TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatHeld));
    }
    std::string key = LmdbReader::QuarantineKey(id);
    MDB_val k = Val(key), val = Val(entry);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write quarantine") : Status::Ok();
  }
  Status PutRefused(const FieldKey& field, const engine::VersionVector& unseen) override {
    const std::string k = RefusedRecordKey(field);
    const std::string v = EncodeRefusedRecord(field, unseen);
    MDB_val kv = Val(k), val = Val(v);
    int rc = mdb_put(txn_, impl_->meta, &kv, &val, 0);
    return rc ? impl_->Note(rc, "write refused field") : Status::Ok();
  }
  Status DeleteRefused(const FieldKey& field) override {
    const std::string k = RefusedRecordKey(field);
    MDB_val kv = Val(k);
    int rc = mdb_del(txn_, impl_->meta, &kv, nullptr);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    return rc ? impl_->Note(rc, "delete refused field") : Status::Ok();
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
    auto k = keys_.Key(key, false);
    if (!k) return Status::Ok();  // a name never written: no such field
    MDB_val kv = Val(*k), v;
    int rc = FieldValue(*impl_, txn_, kv, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc) return impl_->Note(rc, "read field");
    uint64_t seq = 0;
    TANDEM_RETURN_IF_ERROR(ValueSeq(View(v), &seq));
    const std::optional<engine::BlobHash> entry = OutOfLineEntry(View(v));
    uint64_t newest = last_seq_;
    if (!newest) TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&newest));
    if (seq == newest) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatCollected));
    TANDEM_RETURN_IF_ERROR(LoadLogEntries());
    // From both tables (a value under `fresh`'s would come back at the next fold): one
    // deletion without the other must not commit.
    for (MDB_dbi dbi : {impl_->fresh, impl_->fields}) {
      kv = Val(*k);
      rc = mdb_del(txn_, dbi, &kv, nullptr);
      if (rc && rc != MDB_NOTFOUND) return broken_ = impl_->Note(rc, "delete field");
    }
    if (entry) {
      if (Status st = DeleteBlobEntries(*impl_, txn_, *entry); !st.ok()) return broken_ = st;
    }
    // Its log entry, which may be in a run, is left stale for CompactLog.
    left_stale_ = true;
    // What this transaction remembered of the table may name the key just removed.
    last_seq_known_ = false;
    if (fields_end_ && *fields_end_ == *k) fields_end_.reset();
    *deleted = true;
    return Status::Ok();
  }
  Status Repack() override {
    TANDEM_RETURN_IF_ERROR(FlushRun());
    CloseCursors();
    fields_end_.reset();
    last_seq_known_ = false;
    uint64_t entries = 0;
    TANDEM_RETURN_IF_ERROR(RepackFieldsAndLog(*impl_, txn_, &entries));
    log_entries_ = entries;
    log_entries_dirty_ = true;
    return Status::Ok();
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

  Status RaiseCollectedIn(const std::string& collection, const engine::VersionVector& with,
                          bool* stored) override {
    TANDEM_RETURN_IF_ERROR(FormatAllowed(kFormatCollectedIn, stored));
    if (!*stored) return Status::Ok();
    engine::ReadTxn::CollectedIn in;
    TANDEM_RETURN_IF_ERROR(reader_.GetCollectedIn(&in));
    auto it = in.find(collection);
    if (it != in.end() && it->second.Covers(with)) return Status::Ok();
    if (it == in.end() && in.size() >= engine::ReadTxn::kMaxCollectedIn) {
      *stored = false;
      return Status::Ok();
    }
    in[collection].Merge(with);
    std::string v = EncodeCollectedIn(in);
    MDB_val k = Val("collected-in"), val = Val(v);
    int rc = mdb_put(txn_, impl_->meta, &k, &val, 0);
    return rc ? impl_->Note(rc, "write collected-in") : Status::Ok();
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
    uint32_t stored = 0;
    TANDEM_RETURN_IF_ERROR(StoredFormat(&stored));
    if (stored >= to) {
      raises_format_ = stored;  // what this process knows of it, once this commits
      return Status::Ok();
    }
    MDB_val k = Val("format"), v{4, &to};
    if (int rc = mdb_put(txn_, impl_->meta, &k, &v, 0))
      return impl_->Note(rc, "write format version");
    raises_format_ = to;
    return Status::Ok();
  }
  Status StoredFormat(uint32_t* out) { return reader_.GetFormat(out); }

  Status PutMeta(const ReplicaMeta& meta) override {
    // What filtered sessions bore out, only as far as the format may say it; else it is
    // left out (reports then wait for the version vector, as without it).
    ReplicaMeta older;
    const ReplicaMeta* put = &meta;
    if (!meta.absorbed.empty() || !meta.scope.Everything()) {
      bool allowed = false;
      TANDEM_RETURN_IF_ERROR(FilterAllowed(meta.scope, &allowed));
      if (!allowed) {
        older = meta;
        older.absorbed = engine::VersionVector{};
        older.scope = engine::CollectionFilter{};
        put = &older;
      }
    }
    std::string v = EncodeMeta(*put);
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
    return PutFieldOf(key, state.ctx, &state, nullptr);
  }
  Status PutField(const FieldKey& key, FieldState&& state) override {
    return PutFieldOf(key, state.ctx, &state, nullptr);
  }
  Status PutFieldOutOfLine(const FieldKey& key, const engine::VersionVector& ctx, uint8_t header,
                           const engine::BlobHash& entry, uint64_t at, bool* stored) override {
    *stored = false;
    if (!broken_.ok()) return broken_;
    // An older build could not read it: not while one may have the replica open.
    bool allowed = false;
    TANDEM_RETURN_IF_ERROR(FormatAllowed(kFormatOutOfLine, &allowed));
    if (!allowed) return Status::Ok();
    const std::string encoded = EncodeOutOfLine(header, ctx, replicas_, entry, at);
    const FieldState* none = nullptr;
    TANDEM_RETURN_IF_ERROR(PutFieldOf(key, ctx, none, &encoded));
    *stored = true;
    return Status::Ok();
  }
  // S is const FieldState, or FieldState to take apart as a large one is written; or,
  // with `encoded`, none: those bytes are the state (out of line), of context `ctx`.
  template <typename S>
  Status PutFieldOf(const FieldKey& key, const engine::VersionVector& ctx, S* state,
                    const std::string* encoded) {
    if (!broken_.ok()) return broken_;
    const bool same = last_seq_known_ && key == last_field_;
    if (!same) keys_.KeyInto(key, true, &last_key_);  // interning, it always gives the key
    const std::string& k = last_key_;
    MDB_val kv = Val(k), old;
    uint64_t old_seq = 0;
    std::optional<engine::BlobHash> old_entry;  // goes with the value it is replacing
    int rc;
    TANDEM_RETURN_IF_ERROR(LoadFieldsEnd());
    const bool append = same ? last_past_end_ : k > *fields_end_;
    if (same) {
      old_seq = last_old_seq_;
      old_entry = last_old_entry_;
    } else if (!append) {
      rc = FieldValue(*impl_, txn_, kv, &old);
      if (rc == 0) {
        TANDEM_RETURN_IF_ERROR(ValueSeq(View(old), &old_seq));
        old_entry = OutOfLineEntry(View(old));
      } else if (rc != MDB_NOTFOUND) {
        return impl_->Note(rc, "read field");
      }
    }
    last_seq_known_ = false;
    if (!last_seq_) {
      // Before this transaction's first run: LogEntries may count the stored entries.
      TANDEM_RETURN_IF_ERROR(LoadLogEntries());
      TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&last_seq_));
      if (!impl_->log_started.load(std::memory_order_relaxed)) {
        const uint64_t newest = last_seq_;
        last_seq_ = impl_->first_log_seq(newest) - 1;  // this process's first entry
        starts_log_ = true;
        if (last_seq_ > newest) TANDEM_RETURN_IF_ERROR(AddLogGap(newest, last_seq_ + 1));
      }
    }
    uint64_t seq = last_seq_ + 1;  // not const: MDB_val points at it
    // Checksummed (field_value.h): by XXH3 where the format may say so.
    bool fast = false;
    TANDEM_RETURN_IF_ERROR(FormatAllowed(kFormatFastSums, &fast));
    if (!fast) TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatChecksums));
    // A small state (most) is stored from the stack: a 0, the seq, the state, the sum.
    char small[1 + 10 + engine::kSmallEncoding + kValueChecksum];
    small[0] = 0;
    const size_t prefix = 1 + engine::PutVarint(small + 1, seq);
    size_t small_size = 0;
    if (encoded) {
      if (encoded->size() <= engine::kSmallEncoding) {
        std::memcpy(small + prefix, encoded->data(), encoded->size());
        ValueChecksum(k, small, prefix + encoded->size(), fast, small + prefix + encoded->size());
        small_size = prefix + encoded->size() + kValueChecksum;
      }
    } else if (engine::EncodesSmall(*state)) {
      TANDEM_ASSIGN_OR_RETURN(const size_t n,
                              engine::EncodeSmallFieldState(*state, replicas_, small + prefix));
      if (n) {
        ValueChecksum(k, small, prefix + n, fast, small + prefix + n);
        small_size = prefix + n + kValueChecksum;
      }
    }
    // Any other state (a set, a counter, long or many values: possibly large) is encoded
    // straight into the pages LMDB reserves for the value, after the same prefix:
    // built in a buffer first, it would be in memory twice until the commit.
    size_t large = 0;
    if (!small_size && encoded) {
      large = encoded->size();
    } else if (!small_size) {
      TANDEM_ASSIGN_OR_RETURN(large, engine::EncodedFieldStateSize(*state, replicas_));
    }
    // The field's previous entry stays, stale, until CompactLog: removing it here would
    // write a page of the log's past for every field overwritten.
    if (old_seq) left_stale_ = true;
    last_seq_ = seq;
    TANDEM_RETURN_IF_ERROR(LoadHull());
    if (!hull_->hull.Covers(ctx)) {
      hull_->hull.Merge(ctx);
      hull_dirty_ = true;
    }
    // The log entry joins the transaction's run, stored once it is full or at commit; a
    // full run goes first, so that no field is stored without its entry.
    if (!run_.Fits(k)) TANDEM_RETURN_IF_ERROR(FlushRun());
    MDB_val val =
        large ? MDB_val{prefix + large + kValueChecksum, nullptr} : MDB_val{small_size, small};
    kv = Val(k);
    // A write inside the table goes to `fresh` (FreshAllowed), but for a large value
    // (folding would copy it again), which leaves none there to hide it. (Where
    // FreshAllowed refuses, the format is below 10 and `fresh` is empty.)
    bool to_fresh = false;
    if (!append && !large) TANDEM_RETURN_IF_ERROR(FreshAllowed(&to_fresh));
    const bool unhide = !append && large;
    if (to_fresh) {
      ++wrote_fresh_;
    } else if (unhide) {
      rc = mdb_del(txn_, impl_->fresh, &kv, nullptr);
      if (rc && rc != MDB_NOTFOUND) return impl_->Note(rc, "write field");
      kv = Val(k);
    }
    MDB_cursor** cur = to_fresh ? &fresh_cur_ : &fields_cur_;
    TANDEM_RETURN_IF_ERROR(OpenCursor(to_fresh ? impl_->fresh : impl_->fields, cur));
    const unsigned flags = (append ? MDB_APPEND : 0) | (large ? MDB_RESERVE : 0);
    if ((rc = mdb_cursor_put(*cur, &kv, &val, flags))) {
      Status st = impl_->Note(rc, "write field");
      // Its value in `fresh` may be gone already: this transaction must not commit.
      if (unhide) broken_ = st;
      return st;
    }
    if (large) {
      char* p = static_cast<char*>(val.mv_data);
      std::memcpy(p, small, prefix);
      if (encoded) {
        std::memcpy(p + prefix, encoded->data(), large);
      } else if (Status st =
                     engine::EncodeFieldStateInto(std::move(*state), replicas_, p + prefix, large);
                 !st.ok()) {
        broken_ = st;  // the value is half written: this transaction must not commit
        return st;
      }
      ValueChecksum(k, p, prefix + large, fast, p + prefix + large);
    }
    // A value out of line that this one replaces takes its chunks' entry with it.
    if (old_entry) {
      if (Status st = DeleteBlobEntries(*impl_, txn_, *old_entry); !st.ok()) {
        broken_ = st;
        return st;
      }
    }
    run_.Add(seq, k);
    // The key is the table's end now; last_key_ is built again before it is read (by
    // GetField, or here: `same` needs GetField first).
    if (append) fields_end_->swap(last_key_);
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
    TANDEM_RETURN_IF_ERROR(FlushRun());
    TANDEM_RETURN_IF_ERROR(LoadHull());
    uint64_t last = 0;
    TANDEM_RETURN_IF_ERROR(reader_.LastLogSeq(&last));
    const engine::LogHull before = *hull_;
    hull_->Checkpoint(last);
    if (!(*hull_ == before)) hull_dirty_ = true;
    return Status::Ok();
  }
  // Whether what format `to` adds may be written, raising the format to it. Not while a
  // process that may be of an older build has the replica open, until the format says
  // it may: an older build reads and writes `fields` alone, and would read a field's
  // past in `fresh` and write over it unseen (format 10), or would refuse the records
  // formats 11 and 12 add. Builds that open the replica after the format is raised
  // refuse it; the transaction that raises it keeps every other process from opening
  // the replica until it ends (Impl::HoldAlone), so that none reads the format before
  // it. Else they are written as an older build reads them.
  Status FormatAllowed(uint32_t to, bool* out) {
    *out = raises_format_ >= to || impl_->format.load(std::memory_order_relaxed) >= to;
    if (*out) return Status::Ok();
    // Read once per transaction: no other process writes while this one is open.
    if (!stored_format_) {
      uint32_t stored = 0;
      TANDEM_RETURN_IF_ERROR(StoredFormat(&stored));
      stored_format_ = stored;
    }
    // Raised already (by another process of a newer build) needs no hold.
    if (*stored_format_ < to && !held_alone_) {
      if (hold_refused_) return Status::Ok();  // asked once per transaction
      held_alone_ = impl_->HoldAlone();
      hold_refused_ = !held_alone_;
      if (hold_refused_) return Status::Ok();
    }
    TANDEM_RETURN_IF_ERROR(RaiseFormat(to));
    *out = true;
    return Status::Ok();
  }
  // Whether values may go to `fresh` (format 10).
  Status FreshAllowed(bool* out) { return FormatAllowed(kFormatFresh, out); }
  // Whether a peer state of version 5 or meta of version 2 holding `f` may be written
  // (format 11; 12 for a filter that leaves collections out).
  Status FilterAllowed(const engine::CollectionFilter& f, bool* out) {
    return FormatAllowed(f.Excludes() ? kFormatExclusions : kFormatFiltered, out);
  }
  // The greatest key in `fields` and `fresh`, read once per transaction and kept as
  // appends move it: `fresh` holds none past it.
  Status LoadFieldsEnd() {
    if (fields_end_) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fields, &fields_cur_));
    TANDEM_RETURN_IF_ERROR(OpenCursor(impl_->fresh, &fresh_cur_));
    std::string end;
    end.reserve(kKeyRoom);
    for (MDB_cursor* cur : {fields_cur_, fresh_cur_}) {
      MDB_val k, v;
      int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
      if (rc && rc != MDB_NOTFOUND) return LmdbError(rc, "read fields");
      if (!rc && View(k) > end) end = View(k);
    }
    fields_end_ = std::move(end);
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

  Status OpenCursor(MDB_dbi dbi, MDB_cursor** cur) {
    if (*cur) return Status::Ok();
    int rc = mdb_cursor_open(txn_, dbi, cur);
    return rc ? LmdbError(rc, "open cursor") : Status::Ok();
  }
  void CloseCursors() {
    for (MDB_cursor** cur : {&fields_cur_, &fresh_cur_}) {
      if (*cur) mdb_cursor_close(*cur);
      *cur = nullptr;
    }
  }
  // Stores the run of log entries held back (log_run.h), at its first seq.
  Status FlushRun() {
    if (run_.empty()) return Status::Ok();
    TANDEM_CHECK(log_entries_, "the log is counted before its first run (PutField)");
    TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatLogRuns));
    uint64_t first = run_.first();
    MDB_val k{8, &first}, v = Val(run_.bytes());
    if (int rc = mdb_put(txn_, impl_->log, &k, &v, MDB_APPEND)) return impl_->Note(rc, "write log");
    *log_entries_ += run_.entries();
    log_entries_dirty_ = true;
    run_.Clear();
    return Status::Ok();
  }
  Status LoadLogEntries() {
    if (log_entries_) return Status::Ok();
    uint64_t n = 0;
    TANDEM_RETURN_IF_ERROR(reader_.LogEntries(&n));
    log_entries_ = n;
    return Status::Ok();
  }

  Status Commit() override {
    CloseCursors();
    if (!broken_.ok()) return broken_;
    TANDEM_RETURN_IF_ERROR(FlushRun());
    if (wrote_fresh_) TANDEM_RETURN_IF_ERROR(FoldFresh(*impl_, txn_, wrote_fresh_, false));
    if (left_stale_) {
      TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatLazyLog));
      TANDEM_RETURN_IF_ERROR(LoadLogEntries());
      const uint64_t before = *log_entries_;
      TANDEM_RETURN_IF_ERROR(CompactLog(*impl_, txn_, &*log_entries_));
      if (*log_entries_ != before) log_entries_dirty_ = true;
    }
    if (log_entries_dirty_) {
      // A build that does not keep the count must not write this log again.
      TANDEM_RETURN_IF_ERROR(RaiseFormat(kFormatLogRuns));
      MDB_val k = Val("log-entries"), v{8, &*log_entries_};
      if (int rc = mdb_put(txn_, impl_->meta, &k, &v, 0))
        return impl_->Note(rc, "write log entries");
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
    // The format is out: processes waiting to open the replica may go on and read it.
    if (held_alone_) {
      impl_->ShareAgain();
      held_alone_ = false;
    }
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
  Status broken_;          // a write failed half done: no more reads or writes, no commit
  MDB_cursor* fields_cur_ = nullptr;
  MDB_cursor* fresh_cur_ = nullptr;
  size_t wrote_fresh_ = 0;                 // field values this transaction put in `fresh`
  bool hold_refused_ = false;              // FormatAllowed found another process
  std::optional<uint32_t> stored_format_;  // as FormatAllowed read it
  bool held_alone_ = false;                // FormatAllowed holds the environment (HoldAlone)
  bool left_stale_ = false;                // a field written again left its earlier log entry stale
  LogRunWriter run_;                       // log entries not yet stored (FlushRun)
  std::optional<uint64_t> log_entries_;    // LmdbReader::LogEntries, kept up to date
  bool log_entries_dirty_ = false;
  FieldKey last_field_;
  // Room reserved in last_key_ and fields_end_, which an append swaps: strings held
  // outside the object (past the 15 bytes kept inside) swap as pointers.
  static constexpr size_t kKeyRoom = 64;
  std::string last_key_;  // the field GetField read last, and its change-log seq
  uint64_t last_old_seq_ = 0;
  std::optional<engine::BlobHash> last_old_entry_;  // its value's, if out of line
  bool last_seq_known_ = false;
  bool last_past_end_ = false;  // last_key_ lay past the table's end (with last_seq_known_)
  std::optional<std::string> fields_end_;  // the greatest key in `fields` and `fresh`
  KeyMaker keys_{*impl_};
  KeptReplicaTable replicas_{impl_->table};
  std::optional<engine::LogHull> hull_;  // loaded by the first change to the log
  bool hull_dirty_ = false;
  bool starts_log_ = false;     // its positions start this process's (FirstLogSeq)
  uint32_t raises_format_ = 0;  // the format RaiseFormat wrote (0: none)
};

}  // namespace

// Begins an LMDB transaction under the resize lock (held shared in *lock for its life),
// growing the map first if the last transaction filled it and adopting a size another
// process set; the intern tables are brought up to date.
static Status BeginTxn(LmdbStore::Impl* impl, unsigned flags, MDB_txn** out,
                       std::shared_lock<std::shared_mutex>* lock) {
  if (impl->read_only && !(flags & MDB_RDONLY))
    return Status::Invalid(impl->dir + " is on a read-only medium: it can be read, not written");
  if (impl->inspected_copy && !(flags & MDB_RDONLY))
    return Status::Invalid(impl->dir +
                           " is a copy of a replica, opened only to be read: it takes a replica "
                           "id of its own when a command that writes opens it");
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

Status GetOrigin(engine::WriteTxn& txn, std::string* out) {
  return static_cast<LmdbWriteTxn&>(txn).GetOrigin(out);
}

Status PutOrigin(engine::WriteTxn& txn, const std::string& fingerprint) {
  return static_cast<LmdbWriteTxn&>(txn).PutOrigin(fingerprint);
}

}  // namespace tandem::storage
