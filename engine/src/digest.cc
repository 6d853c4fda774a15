// Anti-entropy digests: what a replica's field states mean, summed per collection
// (docs/design.md, Sync, "Comparing states").
#include <cstring>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

std::array<uint8_t, 16> Replica::FieldDigest(const FieldKey& key, const FieldState& s,
                                             std::string* scratch) const {
  std::array<uint8_t, 16> out{};
  // What collection may remove at any moment holds nothing: replicas that collected it
  // and replicas that did not yet mean the same.
  if (Collectable(s, s.ctx)) return out;
  // The key and the state's operations, in map order (the same on every replica), without
  // its context: two replicas that hold the same operations of a field hold the same
  // data, whatever else each has seen. Written straight from the state, nothing copied.
  std::string local;
  std::string& bytes = scratch ? *scratch : local;
  bytes.clear();
  Writer w(&bytes);
  w.LengthPrefixed(key.collection);
  w.LengthPrefixed(key.record);
  w.LengthPrefixed(key.field);
  auto id = [&](const ReplicaId& r) {
    w.Raw(std::string_view(reinterpret_cast<const char*>(r.bytes.data()), r.bytes.size()));
  };
  w.Varint(s.markers.size());
  for (const auto& [dot, m] : s.markers) {
    id(dot.replica);
    w.Varint(dot.seq);
    w.Fixed64(m.hlc);
    w.U8(static_cast<uint8_t>(m.kind));
    EncodeValue(m.value, w);
  }
  w.Varint(s.elements.size());
  for (const auto& [v, dots] : s.elements) {
    EncodeValue(v, w);
    w.Varint(dots.size());
    for (const auto& dot : dots) {
      id(dot.replica);
      w.Varint(dot.seq);
    }
  }
  for (const auto* totals : {&s.counter, &s.counter_base}) {
    w.Varint(totals->size());
    for (const auto& [r, t] : *totals) {
      id(r);
      w.Varint(t.pos);
      w.Varint(t.neg);
    }
  }
  const BlobHash h = Hash(bytes);
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
    std::string scratch;
    TANDEM_RETURN_IF_ERROR(txn->ScanRecords(
        c, "",
        [&](const std::string& id, RecordState& r) {
          key.record = id;
          for (const auto& [name, f] : r.fields) {
            key.field = name;
            AddDigest(sum, FieldDigest(key, f, &scratch));
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
