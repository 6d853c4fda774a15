// Anti-entropy digests: what a replica's field states mean, summed per collection
// (docs/design.md, Sync, "Comparing states").
#include <cstring>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

std::array<uint8_t, 16> Replica::FieldDigest(const FieldKey& key, const FieldState& s) const {
  std::array<uint8_t, 16> out{};
  // What collection may remove at any moment holds nothing: replicas that collected it
  // and replicas that did not yet mean the same.
  if (Collectable(s, s.ctx)) return out;
  // Its context narrowed to what its own operations name: two replicas that hold the
  // same operations of a field hold the same data, whatever else each has seen. (The
  // codec takes only a state whose dots and totals its context covers.)
  FieldState held;
  held.markers = s.markers;
  held.elements = s.elements;
  held.counter = s.counter;
  held.counter_base = s.counter_base;
  for (const auto& [dot, m] : held.markers) held.ctx.Raise(dot.replica, dot.seq);
  for (const auto& [v, dots] : held.elements)
    for (const auto& dot : dots) held.ctx.Raise(dot.replica, dot.seq);
  for (const auto* totals : {&held.counter, &held.counter_base})
    for (const auto& [r, t] : *totals) held.ctx.Raise(r, 1);
  auto bytes = EncodeDelta(key, held);
  // Else the state as it is (it cannot be sent either: nothing else has to match it).
  if (!bytes.ok()) bytes = EncodeDelta(key, s);
  if (!bytes.ok()) bytes = "unencodable " + key.Name();
  const BlobHash h = Hash(*bytes);
  std::memcpy(out.data(), h.data(), out.size());
  return out;
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
    TANDEM_RETURN_IF_ERROR(txn->ScanRecords(
        c, "",
        [&](const std::string& id, RecordState& r) {
          key.record = id;
          for (const auto& [name, f] : r.fields) {
            key.field = name;
            AddDigest(sum, FieldDigest(key, f));
          }
          return true;
        },
        &damaged));
    if (sum != std::array<uint8_t, 16>{}) out.sums.emplace(c, sum);
  }
  std::lock_guard<std::mutex> lock(digests_mu_);
  digests_.emplace(last, out);
  return out;
}

bool Replica::NoteDifference(const ReplicaId& peer, const VersionVector& vv) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  auto it = repaired_at_.find(peer);
  if (it != repaired_at_.end() && it->second == vv) return false;
  repair_due_.insert(peer);
  return true;
}

bool Replica::RepairDue(const ReplicaId* peer) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  return peer ? repair_due_.count(*peer) > 0 : !repair_due_.empty();
}

void Replica::Repaired(const ReplicaId& peer, const VersionVector& vv) {
  std::lock_guard<std::mutex> lock(digests_mu_);
  repair_due_.erase(peer);
  repaired_at_[peer] = vv;
}

}  // namespace tandem::engine
