// Anti-entropy digests: what a replica's field states mean, summed per collection
// (docs/design.md, Sync, "Comparing states").
#include <cstring>
#include <set>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {
// The bytes a field's share is the hash of, written as they come. Past kSpill they go to
// a spool (where the store has one), a part at a time, so that the share of a large state
// costs no copy of it in memory beside the state (and none of it for a state read a piece
// at a time, ReadTxn::ReadFieldItems).
class DigestBytes {
 public:
  static constexpr size_t kSpill = 1 << 20;
  // No store: in memory, whatever the size.
  DigestBytes(Store* store, std::string* buf) : store_(store), buf_(*buf), w_(buf) { buf_.clear(); }
  Writer& w() { return w_; }
  void Key(const FieldKey& key) {
    w_.LengthPrefixed(key.collection);
    w_.LengthPrefixed(key.record);
    w_.LengthPrefixed(key.field);
  }
  void Marker(const Dot& dot, const engine::Marker& m) {
    EncodeWholeMarker(dot, m, w_);
    Spill();
  }
  void Element(const Value& v, const std::set<Dot>& dots) {
    EncodeValue(v, w_);
    w_.Varint(dots.size());
    for (const auto& dot : dots) EncodeWholeDot(dot, w_);
    Spill();
  }
  void Totals(const std::map<ReplicaId, PnTotals>& totals) {
    w_.Varint(totals.size());
    for (const auto& [r, t] : totals) {
      Id(r);
      w_.Varint(t.pos);
      w_.Varint(t.neg);
    }
  }
  // False where a spool failed: the share means nothing.
  bool ok() const { return ok_; }
  std::array<uint8_t, 16> Hash(ContentHash hash) {
    uint64_t at = 0;
    bool tail = false;
    std::string part;
    const BlobHash h = hash([&](std::string_view* out) {
      if (spool_ && at < spooled_) {
        part.clear();
        if (!spool_->Read(at, kBlobChunkBytes, &part).ok() || part.empty()) {
          ok_ = false;
          return false;
        }
        at += part.size();
        *out = part;
        return true;
      }
      if (tail) return false;
      tail = true;
      *out = buf_;
      return true;
    });
    std::array<uint8_t, 16> out{};
    std::memcpy(out.data(), h.data(), out.size());
    return out;
  }

 private:
  void Id(const ReplicaId& r) {
    w_.Raw(std::string_view(reinterpret_cast<const char*>(r.bytes.data()), r.bytes.size()));
  }
  void Spill() {
    if (buf_.size() < kSpill || !ok_ || !store_) return;
    if (!spool_ && !tried_) {
      tried_ = true;
      auto s = store_->OpenSpool();
      if (s.ok()) spool_ = std::move(*s);
    }
    if (!spool_) return;  // none: in memory, as it comes
    if (!spool_->Append(buf_).ok()) {
      ok_ = false;
      return;
    }
    spooled_ += buf_.size();
    buf_.clear();
  }

  Store* store_;
  std::string& buf_;
  Writer w_;
  std::unique_ptr<Spool> spool_;
  uint64_t spooled_ = 0;
  bool tried_ = false, ok_ = true;
};
}  // namespace

std::array<uint8_t, 16> Replica::FieldDigest(const FieldKey& key, const FieldState& s,
                                             std::string* scratch) const {
  // What collection may remove at any moment holds nothing: replicas that collected it
  // and replicas that did not yet mean the same.
  if (Collectable(s, s.ctx)) return {};
  // The key and the state's operations, in map order (the same on every replica), without
  // its context: two replicas that hold the same operations of a field hold the same
  // data, whatever else each has seen. Written straight from the state.
  std::string local;
  for (Store* spill : {store_.get(), static_cast<Store*>(nullptr)}) {
    DigestBytes b(spill, scratch ? scratch : &local);
    b.Key(key);
    b.w().Varint(s.markers.size());
    for (const auto& [dot, m] : s.markers) b.Marker(dot, m);
    b.w().Varint(s.elements.size());
    for (const auto& [v, dots] : s.elements) b.Element(v, dots);
    b.Totals(s.counter);
    b.Totals(s.counter_base);
    auto out = b.Hash(hash_);
    if (b.ok()) return out;  // else again in memory: a spool failed
  }
  return {};  // (never: in memory nothing fails)
}

Result<std::array<uint8_t, 16>> Replica::FieldDigestInPlace(ReadTxn& txn, const FieldKey& key,
                                                            const FieldState& outline,
                                                            std::string* scratch) const {
  if (Collectable(outline, outline.ctx)) return std::array<uint8_t, 16>{};
  // The same bytes, from the state as it is stored, a piece at a time.
  std::string local;
  for (Store* spill : {store_.get(), static_cast<Store*>(nullptr)}) {
    DigestBytes b(spill, scratch ? scratch : &local);
    b.Key(key);
    StateItems items;
    items.only = true;  // the outline is given
    items.markers = [&](uint64_t n) { b.w().Varint(n); };
    items.marker = [&](const Dot& d, const Marker& m) { b.Marker(d, m); };
    items.elements = [&](uint64_t n) { b.w().Varint(n); };
    items.element = [&](const Value& v, const std::set<Dot>& dots) { b.Element(v, dots); };
    TANDEM_RETURN_IF_ERROR(txn.ReadFieldItems(key, items));
    b.Totals(outline.counter);
    b.Totals(outline.counter_base);
    auto out = b.Hash(hash_);
    if (b.ok()) return out;  // else again in memory: a spool failed
  }
  return std::array<uint8_t, 16>{};  // (never: in memory nothing fails)
}

void Replica::AddDigest(std::array<uint8_t, 16>& sum, const std::array<uint8_t, 16>& add) {
  unsigned carry = 0;
  for (size_t i = 0; i < sum.size(); ++i) {  // little-endian, modulo 2^128
    const unsigned v = unsigned{sum[i]} + unsigned{add[i]} + carry;
    sum[i] = static_cast<uint8_t>(v);
    carry = v >> 8;
  }
}

Result<Replica::StateDigests> Replica::Digests() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  uint64_t last = 0;
  TANDEM_RETURN_IF_ERROR(txn->LastLogSeq(&last));
  ReplicaMeta meta;
  TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
  {
    std::lock_guard<std::mutex> lock(digests_mu_);
    if (digests_ && digests_->first == last && digests_->second.vv == meta.vv)
      return digests_->second;
  }
  StateDigests out;
  out.vv = meta.vv;
  LogHull hull;
  TANDEM_RETURN_IF_ERROR(txn->GetLogHull(&hull));
  out.hull = std::move(hull.hull);
  out.exact = true;
  std::vector<std::string> collections;
  TANDEM_RETURN_IF_ERROR(txn->ListCollections(&collections));
  const ReadTxn::DamagedFn damaged = [&](const FieldKey&, const Status&) { out.exact = false; };
  for (const auto& c : collections) {
    std::array<uint8_t, 16> sum{};
    FieldKey key{c, "", ""};
    std::string scratch;
    // A state stored out of line comes as its outline, its share read from where it lies.
    std::set<FieldKey> outlined;
    const ReadTxn::OutlineFn outlines = [&](const FieldKey& k) { outlined.insert(k); };
    Status bad;
    TANDEM_RETURN_IF_ERROR(txn->ScanRecords(
        c, "",
        [&](const std::string& id, RecordState& r) {
          key.record = id;
          for (const auto& [name, f] : r.fields) {
            key.field = name;
            if (!outlined.erase(key)) {
              AddDigest(sum, FieldDigest(key, f, &scratch));
              continue;
            }
            auto share = FieldDigestInPlace(*txn, key, f, &scratch);
            if (!share.ok()) {
              bad = share.status();
              return false;
            }
            AddDigest(sum, *share);
          }
          return true;
        },
        &damaged, &outlines));
    TANDEM_RETURN_IF_ERROR(bad);
    if (sum != std::array<uint8_t, 16>{}) out.sums.emplace(c, sum);
  }
  std::lock_guard<std::mutex> lock(digests_mu_);
  digests_.emplace(last, out);
  return out;
}

bool Replica::NoteDifference(const ReplicaId& peer, const Difference& differ) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  auto [it, fresh] = differed_.emplace(peer, differ);
  if (!fresh && it->second == differ) return false;
  it->second = differ;
  repair_due_.insert(peer);
  return true;
}

bool Replica::RepairDue(const ReplicaId* peer) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  return peer ? repair_due_.count(*peer) > 0 : !repair_due_.empty();
}

bool Replica::TakeRepair(const ReplicaId& peer) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  return repair_due_.erase(peer) > 0;
}

void Replica::ForgetDifference(const ReplicaId& peer) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  differed_.erase(peer);
}

}  // namespace tandem::engine
