// A field state that goes in pieces, copied once from the store into a spool that every
// session sending it reads (Replica::SpoolDelta).
#include "tandem/engine/codec.h"
#include "tandem/engine/memory_store.h"  // EncodeFieldKey
#include "tandem/engine/replica.h"

namespace tandem::engine {

// One field state at one log position, copied (filled) by the first session that needs
// it while the others wait on `mu`. Held by the sessions that read it (DeltaInfo::spool
// shares its ownership), listed in Replica::spools_ until the last lets it go.
struct Replica::SharedSpool {
  std::mutex mu;
  bool filled = false;
  uint64_t size = 0;
  BlobHash digest{};
  uint64_t items = 0;
  std::unique_ptr<Spool> spool;
};

namespace {
// What a spool holds, a chunk at a time.
class SpoolReader : public Reader::More {
 public:
  SpoolReader(Spool& spool, uint64_t size) : spool_(spool), size_(size) {}
  bool Append(std::string* out) override {
    if (offset_ >= size_ || !status_.ok()) return false;
    const size_t before = out->size();
    status_ = spool_.Read(offset_, kBlobChunkBytes, out);
    if (status_.ok() && out->size() == before)
      status_ = Status::Corrupt("a spool ends before its size");
    offset_ += out->size() - before;
    return status_.ok();
  }
  size_t left() const override { return static_cast<size_t>(size_ - offset_); }
  const Status& status() const { return status_; }

 private:
  Spool& spool_;
  uint64_t size_;
  uint64_t offset_ = 0;
  Status status_;
};
}  // namespace

Result<std::optional<Replica::DeltaInfo>> Replica::SpoolDelta(const FieldKey& key, uint64_t seq,
                                                              uint64_t max, uint64_t max_items) {
  std::optional<DeltaInfo> out;
  uint64_t size = 0, at = 0;
  std::string part;
  // Each read in a transaction of its own (a long one would pin the map, which another
  // writer may need to grow), checking that the field stays at `seq`: the same bytes.
  auto read = [&](uint64_t offset, size_t n, bool check) -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
    part.clear();
    Status st = txn->ReadDelta(key, offset, n, check, &size, &at, &part);
    if (st.code() == Code::kNotFound || (st.ok() && at != seq)) return Status::NotFound("moved");
    return st;
  };
  Status st = read(0, 0, false);  // where it is, and its size
  if (st.code() == Code::kNotFound) return out;
  TANDEM_RETURN_IF_ERROR(st);
  out = DeltaInfo{size, {}, nullptr};
  if (size > max) return out;  // withheld: not copied
  std::shared_ptr<SharedSpool> shared;
  const std::pair<std::string, uint64_t> at_seq{EncodeFieldKey(key), seq};
  {
    std::lock_guard lock(spools_mu_);
    if (auto it = items_counted_.find(at_seq);
        it != items_counted_.end() && it->second > max_items) {
      out->items = it->second;
      return out;  // withheld: not copied
    }
    for (auto it = spools_.begin(); it != spools_.end();)
      it = it->second.expired() ? spools_.erase(it) : std::next(it);
    auto& slot = spools_[at_seq];
    shared = slot.lock();
    if (!shared) slot = shared = std::make_shared<SharedSpool>();
  }
  std::lock_guard fill(shared->mu);
  if (!shared->filled) {
    st = read(0, 0, true);  // checked once against its checksum
    if (st.code() == Code::kNotFound) return std::optional<DeltaInfo>();
    TANDEM_RETURN_IF_ERROR(st);
    // Into a spool of the store's (a file), or held in memory where it cannot open or
    // write one (a full disk, say), as the state would be without a spool.
    bool full = false;
    BlobHash digest{};
    auto copy = [&](Spool& into) {
      uint64_t offset = 0;
      full = false;
      digest = hash_([&](std::string_view* next) {
        if (offset >= size || !st.ok() || full) return false;
        st = read(offset, kBlobChunkBytes, false);
        if (!st.ok() || part.empty()) return false;
        if (!into.Append(part).ok()) {
          full = true;
          return false;
        }
        offset += part.size();
        *next = part;
        return true;
      });
      return offset;
    };
    auto spooled = store_->OpenSpool();
    std::unique_ptr<Spool> spool =
        spooled.ok() ? std::move(*spooled) : std::unique_ptr<Spool>(new MemorySpool);
    uint64_t copied = copy(*spool);
    if (full && spooled.ok()) {
      spool = std::make_unique<MemorySpool>();
      copied = copy(*spool);
    }
    if (st.code() == Code::kNotFound) return std::optional<DeltaInfo>();
    TANDEM_RETURN_IF_ERROR(st);
    if (full || copied != size)
      return Status::Corrupt("a field state read in parts came out short");
    // Its items counted, none kept: how much its outline costs a receiver.
    SpoolReader more(*spool, size);
    Reader r({}, &more);
    uint64_t items = 0;
    StateItems count;
    count.only = true;
    count.marker = [&](const Dot&, const Marker&) { ++items; };
    count.element = [&](const Value&, const std::set<Dot>& dots) { items += dots.size(); };
    const bool outlined = OutlineDelta(r, &count).ok();
    TANDEM_RETURN_IF_ERROR(more.status());
    shared->items = outlined ? items : 0;  // unread, the receiver judges it
    std::lock_guard lock(spools_mu_);
    if (items_counted_.size() >= kCountsKept) items_counted_.clear();
    items_counted_[at_seq] = shared->items;
    shared->size = size;
    shared->digest = digest;
    shared->spool = std::move(spool);
    shared->filled = true;
  }
  // What was filled at this position is what the field holds there: the same bytes.
  out = DeltaInfo{shared->size, shared->digest, std::shared_ptr<Spool>(shared, shared->spool.get()),
                  shared->items};
  return out;
}

}  // namespace tandem::engine
