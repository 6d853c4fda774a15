#include "tandem/engine/memory_store.h"

#include "tandem/engine/codec.h"

namespace tandem::engine {

std::string EncodeFieldKey(const FieldKey& key) {
  std::string s;
  s.reserve(key.collection.size() + key.record.size() + key.field.size() + 2);
  s += key.collection;
  s.push_back('\0');
  s += key.record;
  s.push_back('\0');
  s += key.field;
  return s;
}

bool DecodeFieldKey(std::string_view s, FieldKey* out) {
  size_t a = s.find('\0');
  if (a == std::string_view::npos) return false;
  size_t b = s.find('\0', a + 1);
  if (b == std::string_view::npos || s.find('\0', b + 1) != std::string_view::npos) return false;
  out->collection = std::string(s.substr(0, a));
  out->record = std::string(s.substr(a + 1, b - a - 1));
  out->field = std::string(s.substr(b + 1));
  return true;
}

namespace {

using Data = MemoryStore::Data;

// Read operations over one immutable snapshot (or, for a writer, its private copy).
class MemoryReader {
 public:
  explicit MemoryReader(const Data* d) : d_(d) {}

  Status GetMeta(ReplicaMeta* out) {
    *out = d_->meta;
    return Status::Ok();
  }
  Status GetField(const FieldKey& key, std::optional<FieldState>* out) {
    out->reset();
    auto it = d_->fields.find(EncodeFieldKey(key));
    if (it == d_->fields.end()) return Status::Ok();
    TANDEM_ASSIGN_OR_RETURN(FieldState s, DecodeFieldState(it->second.second));
    *out = std::move(s);
    return Status::Ok();
  }
  Status ReadFieldItems(const FieldKey& key, const StateItems& items) {
    std::optional<FieldState> s;
    TANDEM_RETURN_IF_ERROR(GetField(key, &s));
    if (!s) return Status::NotFound("no such field");
    ForEachItem(*s, items);
    return Status::Ok();
  }
  Status ReadFieldOutline(const FieldKey&, const StateItems*, FieldState*) {
    return Status::Unsupported("a memory store keeps every state decoded");
  }
  Status GetRecord(std::string_view c, std::string_view r, RecordState* out, uint64_t* latest) {
    if (out) out->fields.clear();
    if (latest) *latest = 0;
    std::string prefix = std::string(c) + '\0' + std::string(r) + '\0';
    for (auto it = d_->fields.lower_bound(prefix);
         it != d_->fields.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      if (latest) *latest = std::max(*latest, it->second.first);
      if (!out) continue;
      TANDEM_ASSIGN_OR_RETURN(FieldState s, DecodeFieldState(it->second.second));
      out->fields.emplace(it->first.substr(prefix.size()), std::move(s));
    }
    return Status::Ok();
  }
  // Nothing is damaged here: `damaged` is never called.
  // Nor is anything out of line: `outlines` is never called.
  Status ScanRecords(std::string_view c, std::string_view after, const ReadTxn::RecordFn& fn,
                     const ReadTxn::DamagedFn* = nullptr, const ReadTxn::OutlineFn* = nullptr) {
    std::string prefix = std::string(c) + '\0';
    // The first key after every field of `after`: after \0 \xff... sorts past them.
    std::string start = prefix + std::string(after) + (after.empty() ? "" : std::string("\x01"));
    std::string current;
    RecordState state;
    for (auto it = d_->fields.lower_bound(start);
         it != d_->fields.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      FieldKey k;
      if (!DecodeFieldKey(it->first, &k)) return Status::Corrupt("bad key in memory store");
      if (k.record <= after && !after.empty()) continue;
      if (k.record != current && !state.fields.empty()) {
        if (!fn(current, state)) return Status::Ok();
        state.fields.clear();
      }
      current = k.record;
      TANDEM_ASSIGN_OR_RETURN(FieldState s, DecodeFieldState(it->second.second));
      state.fields.emplace(k.field, std::move(s));
    }
    if (!state.fields.empty()) fn(current, state);
    return Status::Ok();
  }
  Status ListCollections(std::vector<std::string>* out) {
    out->clear();
    for (const auto& [key, v] : d_->fields) {
      std::string c = key.substr(0, key.find('\0'));
      if (out->empty() || out->back() != c) out->push_back(c);
    }
    return Status::Ok();
  }
  Status ScanLog(uint64_t since, const ReadTxn::LogFn& fn) {
    for (auto it = d_->log.upper_bound(since); it != d_->log.end(); ++it) {
      FieldKey k;
      if (!DecodeFieldKey(it->second, &k)) return Status::Corrupt("bad key in memory log");
      if (!fn(it->first, k)) break;
    }
    return Status::Ok();
  }
  Status ScanLogDeltas(uint64_t since, uint64_t large, const ReadTxn::LogDeltaFn& fn) {
    for (auto it = d_->log.upper_bound(since); it != d_->log.end(); ++it) {
      FieldKey k;
      if (!DecodeFieldKey(it->second, &k)) return Status::Corrupt("bad key in memory log");
      auto f = d_->fields.find(it->second);
      if (f == d_->fields.end()) return Status::Corrupt("change log names a missing field");
      TANDEM_ASSIGN_OR_RETURN(FieldState s, DecodeFieldState(f->second.second));
      const uint64_t size =
          large == UINT64_MAX ? 0 : DeltaKeyPrefix(k).size() + f->second.second.size();
      if (size > large) {
        const ReadTxn::LargeState l{std::move(s.ctx), size};
        if (!fn(it->first, k, nullptr, &l)) break;
      } else if (!fn(it->first, k, &s, nullptr)) {
        break;
      }
    }
    return Status::Ok();
  }
  // Its fields are kept self-contained (EncodeFieldState), so a delta is their key and
  // those bytes.
  Status ReadDelta(const FieldKey& key, uint64_t offset, size_t n, bool, uint64_t* size,
                   uint64_t* seq, std::string* out) {
    auto f = d_->fields.find(EncodeFieldKey(key));
    if (f == d_->fields.end()) return Status::NotFound("no such field");
    const std::string prefix = DeltaKeyPrefix(key);
    *size = prefix.size() + f->second.second.size();
    *seq = f->second.first;
    AppendWindow(prefix, f->second.second, offset, n, out);
    return Status::Ok();
  }
  Status LastLogSeq(uint64_t* out) {
    *out = d_->last_log_seq;
    return Status::Ok();
  }
  Status InLogGap(uint64_t, bool* out) {
    *out = false;  // positions are dense: nothing is skipped
    return Status::Ok();
  }
  Status GetPeer(const ReplicaId& peer, PeerState* out) {
    auto it = d_->peers.find(peer);
    if (it == d_->peers.end()) {
      *out = PeerState{};
      return Status::Ok();
    }
    TANDEM_ASSIGN_OR_RETURN(*out, DecodePeerState(it->second));
    return Status::Ok();
  }
  Status ListPeers(std::vector<std::pair<ReplicaId, PeerState>>* out) {
    out->clear();
    for (const auto& [id, bytes] : d_->peers) {
      TANDEM_ASSIGN_OR_RETURN(PeerState p, DecodePeerState(bytes));
      out->emplace_back(id, std::move(p));
    }
    return Status::Ok();
  }
  Status ListQuarantine(const ReadTxn::QuarantineFn& fn) {
    for (const auto& [id, bytes] : d_->quarantine)
      if (!fn(id, bytes)) break;
    return Status::Ok();
  }
  Status ListRefused(const ReadTxn::RefusedFn& fn) {
    for (const auto& [k, unseen] : d_->refused) {
      FieldKey key;
      if (!DecodeFieldKey(k, &key)) return Status::Corrupt("bad key in memory store");
      if (!fn(key, unseen)) break;
    }
    return Status::Ok();
  }
  Status GetRefused(const FieldKey& key, std::optional<VersionVector>* out) {
    auto it = d_->refused.find(EncodeFieldKey(key));
    if (it == d_->refused.end())
      out->reset();
    else
      *out = it->second;
    return Status::Ok();
  }
  Status GetLogHull(LogHull* out) {
    *out = d_->log_hull;
    return Status::Ok();
  }
  Status GetCollected(VersionVector* out) {
    *out = d_->collected;
    return Status::Ok();
  }
  Status GetCollectedIn(ReadTxn::CollectedIn* out) {
    *out = d_->collected_in;
    return Status::Ok();
  }
  Status GetBlob(const BlobHash& h, std::optional<BlobInfo>* out) {
    out->reset();
    auto it = d_->blobs.find(h);
    if (it == d_->blobs.end()) return Status::Ok();
    TANDEM_ASSIGN_OR_RETURN(BlobInfo info, DecodeBlobInfo(it->second));
    *out = std::move(info);
    return Status::Ok();
  }
  Status ScanBlobs(bool wanted_only, const ReadTxn::BlobFn& fn) {
    for (const auto& [h, bytes] : d_->blobs) {
      TANDEM_ASSIGN_OR_RETURN(BlobInfo info, DecodeBlobInfo(bytes));
      if (wanted_only && info.state != BlobInfo::State::kWanted) continue;
      if (!fn(h, info)) break;
    }
    return Status::Ok();
  }
  Status GetChunk(const BlobHash& h, std::string* out, bool* found) {
    auto it = d_->chunks.find(h);
    *found = it != d_->chunks.end();
    if (*found) *out = *it->second;
    return Status::Ok();
  }
  Status ScanChunks(const BlobHash* after, const std::function<bool(const BlobHash&)>& fn) {
    for (auto it = after ? d_->chunks.upper_bound(*after) : d_->chunks.begin();
         it != d_->chunks.end(); ++it)
      if (!fn(it->first)) break;
    return Status::Ok();
  }

 private:
  const Data* d_;
};

class MemoryReadTxn : public ReadsThrough<ReadTxn, MemoryReader> {
 public:
  explicit MemoryReadTxn(std::shared_ptr<const Data> d) : ReadsThrough(d.get()), d_(std::move(d)) {}

 private:
  std::shared_ptr<const Data> d_;  // keeps the snapshot alive
};

}  // namespace

class MemoryWriteTxn : public ReadsThrough<WriteTxn, MemoryReader> {
 public:
  MemoryWriteTxn(MemoryStore* store, std::shared_ptr<Data> d)
      : ReadsThrough(d.get()), store_(store), d_(std::move(d)) {}
  ~MemoryWriteTxn() override {
    if (!done_) {
      std::lock_guard lock(store_->mu_);
      store_->writer_active_ = false;
    }
  }
  Status PutMeta(const ReplicaMeta& meta) override {
    d_->meta = meta;
    return Status::Ok();
  }
  Status PutField(const FieldKey& key, const FieldState& state) override {
    std::string k = EncodeFieldKey(key);
    TANDEM_ASSIGN_OR_RETURN(std::string value, EncodeFieldState(state));
    auto& slot = d_->fields[k];
    if (slot.first) d_->log.erase(slot.first);
    slot.first = ++d_->last_log_seq;
    slot.second = std::move(value);
    d_->log[slot.first] = k;
    d_->log_hull.hull.Merge(state.ctx);
    return Status::Ok();
  }
  Status CheckpointLog() override {
    d_->log_hull.Checkpoint(d_->last_log_seq);
    return Status::Ok();
  }
  Status PutPeer(const ReplicaId& peer, const PeerState& state) override {
    d_->peers[peer] = EncodePeerState(state);
    return Status::Ok();
  }
  Status TakeQuarantineId(uint64_t* out) override {
    *out = ++d_->last_quarantine_id;
    return Status::Ok();
  }
  Status PutQuarantine(uint64_t id, std::string_view entry) override {
    d_->quarantine[id] = std::string(entry);
    return Status::Ok();
  }
  Status DeleteQuarantine(uint64_t id) override {
    d_->quarantine.erase(id);
    return Status::Ok();
  }
  Status PutRefused(const FieldKey& key, const VersionVector& unseen) override {
    d_->refused[EncodeFieldKey(key)] = unseen;
    return Status::Ok();
  }
  Status DeleteRefused(const FieldKey& key) override {
    d_->refused.erase(EncodeFieldKey(key));
    return Status::Ok();
  }
  Status DeleteField(const FieldKey& key, bool* deleted) override {
    *deleted = false;
    auto it = d_->fields.find(EncodeFieldKey(key));
    if (it == d_->fields.end() || it->second.first == d_->last_log_seq) return Status::Ok();
    d_->log.erase(it->second.first);
    d_->fields.erase(it);
    *deleted = true;
    return Status::Ok();
  }
  Status PutCollected(const VersionVector& collected) override {
    d_->collected = collected;
    return Status::Ok();
  }
  Status RaiseCollectedIn(const std::string& collection, const VersionVector& with,
                          bool* stored) override {
    *stored =
        d_->collected_in.count(collection) || d_->collected_in.size() < ReadTxn::kMaxCollectedIn;
    if (*stored) d_->collected_in[collection].Merge(with);
    return Status::Ok();
  }
  Status PutBlob(const BlobHash& h, const BlobInfo& info) override {
    d_->blobs[h] = EncodeBlobInfo(info);
    return Status::Ok();
  }
  Status DeleteBlob(const BlobHash& h) override {
    d_->blobs.erase(h);
    return Status::Ok();
  }
  Status PutChunk(const BlobHash& h, std::string_view bytes) override {
    auto& slot = d_->chunks[h];
    if (!slot || *slot != bytes) slot = std::make_shared<const std::string>(bytes);  // mends
    return Status::Ok();
  }
  Status DeleteChunk(const BlobHash& h) override {
    d_->chunks.erase(h);
    return Status::Ok();
  }
  Status Commit() override {
    std::lock_guard lock(store_->mu_);
    store_->current_ = std::move(d_);
    store_->writer_active_ = false;
    done_ = true;
    return Status::Ok();
  }

 private:
  MemoryStore* store_;
  std::shared_ptr<Data> d_;
  bool done_ = false;
};

MemoryStore::MemoryStore(const ReplicaId& id) {
  auto d = std::make_shared<Data>();
  d->meta.id = id;
  current_ = std::move(d);
}

Result<std::unique_ptr<ReadTxn>> MemoryStore::BeginRead() {
  std::lock_guard lock(mu_);
  return std::unique_ptr<ReadTxn>(new MemoryReadTxn(current_));
}

Result<std::unique_ptr<WriteTxn>> MemoryStore::BeginWrite() {
  std::lock_guard lock(mu_);
  if (writer_active_) return Status::Busy("another write transaction is open");
  writer_active_ = true;
  return std::unique_ptr<WriteTxn>(new MemoryWriteTxn(this, std::make_shared<Data>(*current_)));
}

}  // namespace tandem::engine
