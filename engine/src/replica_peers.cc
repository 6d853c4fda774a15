// What this replica knows of its peers: their sync states, and what they hold of ours.
#include "tandem/engine/replica.h"

namespace tandem::engine {

Result<uint64_t> Replica::CountUnheld(const PeerState& peer, size_t max_checked, bool* exact) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  uint64_t last = 0;
  TANDEM_RETURN_IF_ERROR(txn->LastLogSeq(&last));
  // Log positions are dense when written and thin out as fields change again, so the
  // newest max_checked entries start at or after last - max_checked.
  const uint64_t since = last > max_checked ? last - max_checked : 0;
  *exact = true;
  if (since > 0) {
    bool older = false;
    TANDEM_RETURN_IF_ERROR(txn->ScanLog(0, [&](uint64_t seq, const FieldKey&) {
      older = seq <= since;
      return false;
    }));
    *exact = !older;
  }
  uint64_t n = 0;
  TANDEM_RETURN_IF_ERROR(txn->ScanLogDeltas(
      since, UINT64_MAX,
      [&](uint64_t seq, const FieldKey& k, FieldState* f, const ReadTxn::LargeState* l) {
        const bool damaged = l && l->damaged;  // withheld from every peer: not held there
        if ((!f && !damaged) || !peer.delivery.Allows(k.collection)) return true;  // stale
        if (seq <= peer.delivered) return true;
        if (damaged || !peer.vv.Covers(f->ctx)) ++n;
        return true;
      }));
  return n;
}

Result<bool> Replica::Holds(std::string_view c, std::string_view id, const PeerState& peer) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  RecordState r;
  uint64_t latest = 0;
  TANDEM_RETURN_IF_ERROR(txn->GetRecord(c, id, &r, &latest));
  if (r.fields.empty())
    return Status::NotFound("not found: " + std::string(c) + "/" + std::string(id));
  if (peer.delivery.Allows(std::string(c)) && latest <= peer.delivered) return true;
  for (const auto& [name, f] : r.fields)
    if (!peer.vv.Covers(f.ctx)) return false;
  return true;
}

Status Replica::RecordDelivery(const ReplicaId& peer, uint64_t cursor,
                               const CollectionFilter& delivery) {
  bool wrote = false;
  Status st = Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    PeerState ps;
    TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
    if (ps.delivered == cursor && ps.delivery == delivery) return Status::Ok();
    ps.delivered = cursor;
    ps.delivery = delivery;
    TANDEM_RETURN_IF_ERROR(txn->PutPeer(peer, ps));
    wrote = true;
    return txn->Commit();
  });
  if (st.ok() && wrote) Committed();
  return st;
}

Result<PeerState> Replica::Peer(const ReplicaId& peer) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  PeerState ps;
  TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
  return ps;
}

Result<std::vector<std::pair<ReplicaId, PeerState>>> Replica::Peers() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  std::vector<std::pair<ReplicaId, PeerState>> out;
  TANDEM_RETURN_IF_ERROR(txn->ListPeers(&out));
  return out;
}

}  // namespace tandem::engine
