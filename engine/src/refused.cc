// Records of field states refused for good, and the caps they put on watermark claims
// (Replica::NoteRefused, Replica::CapByRefused; docs/design.md, Sync).
#include <map>

#include "tandem/engine/replica.h"

namespace tandem::engine {

// A refused state may be the only copy on hand of other replicas' events: a revoked
// device that overwrote a member's value at its own replica carries the member's write
// in its context alone. So it is recorded, per field, with the newest event of each
// replica the refused context has seen and this replica's state of the field has not.
// For a replica whose current values it brings (the refused ones, and values concurrent
// with them, which travel only with them: a documented limit), only the events before
// the first of them: those may be writes others took, overwritten by the refused one (a
// till that wrote a price while it could, then again once it could not).
Status Replica::NoteRefused(WriteTxn& txn, const FieldDelta& d, const FieldState* ours) {
  std::map<ReplicaId, uint64_t> brought;  // replica -> its first current operation
  auto note = [&](const Dot& dot) {
    if (ours && ours->ctx.Covers(dot)) return;
    auto [it, fresh] = brought.emplace(dot.replica, dot.seq);
    if (!fresh) it->second = std::min(it->second, dot.seq);
  };
  for (const auto& [dot, m] : d.state.markers) note(dot);
  for (const auto& [element, dots] : d.state.elements)
    for (const auto& dot : dots) note(dot);
  VersionVector unseen;
  for (const auto& [r, n] : d.state.ctx.entries()) {
    auto b = brought.find(r);
    const uint64_t upto = b == brought.end() ? n : std::min(n, b->second - 1);
    if ((!ours || ours->ctx.Get(r) < upto) && upto) unseen.Raise(r, upto);
  }
  if (unseen.empty()) return Status::Ok();
  std::optional<VersionVector> had;
  TANDEM_RETURN_IF_ERROR(txn.GetRefused(d.key, &had));
  if (had) {
    if (had->Covers(unseen)) return Status::Ok();
    unseen.Merge(*had);
  }
  return txn.PutRefused(d.key, unseen);
}

// Until the field's state has seen what a refused state had, a claim takes each of those
// replicas only as far as that state has seen it. A record goes once the state (or the
// collected vector) has seen it all. And `from`, the peer of a session that refused and
// filtered nothing, leaves every record that names more of its events than it says it
// ever issued (its own entry of `vv`): a forged context, or one it lost in a rollback.
Status Replica::CapByRefused(WriteTxn& txn, VersionVector* vv, const ReplicaId* from) {
  const uint64_t issued = from ? vv->Get(*from) : 0;
  VersionVector collected;
  TANDEM_RETURN_IF_ERROR(txn.GetCollected(&collected));
  std::vector<std::pair<FieldKey, std::optional<VersionVector>>> rewrite;  // nullopt: delete
  Status st;
  TANDEM_RETURN_IF_ERROR(txn.ListRefused([&](const FieldKey& k, const VersionVector& unseen) {
    std::optional<FieldState> s;
    st = txn.GetFieldOrDamaged(k, &s, nullptr);  // damaged here: it has seen nothing
    if (!st.ok()) return false;
    VersionVector left;
    for (const auto& [r, n] : unseen.entries()) {
      const uint64_t seen = s ? s->ctx.Get(r) : 0;
      if (seen >= n || collected.Get(r) >= n || (from && r == *from && n > issued)) continue;
      left.Raise(r, n);
      vv->Cap(r, seen);
    }
    if (left.empty())
      rewrite.emplace_back(k, std::nullopt);
    else if (!(left == unseen))
      rewrite.emplace_back(k, std::move(left));
    return true;
  }));
  TANDEM_RETURN_IF_ERROR(st);
  for (const auto& [k, left] : rewrite)
    TANDEM_RETURN_IF_ERROR(left ? txn.PutRefused(k, *left) : txn.DeleteRefused(k));
  return Status::Ok();
}

}  // namespace tandem::engine
