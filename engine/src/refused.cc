// Records of field states refused for good, and the caps they put on watermark claims
// (Replica::NoteRefused, Replica::CapByRefused; docs/design.md, Sync).
#include <algorithm>
#include <map>

#include "tandem/engine/replica.h"

namespace tandem::engine {

// A refused state may be the only copy on hand of other replicas' events: a revoked
// device that overwrote a member's value at its own replica carries the member's write
// in its context alone. So it is recorded, per field, with the newest event of each
// replica the refused context has seen and this replica's state of the field has not.
// A replica whose current values the state brings is judged by `admit` on those values
// alone: one whose values would be taken (a member's value concurrent with the refused
// one, which the member itself still sends) is recorded up to its newest value; one
// whose values are refused is not recorded (they come from nowhere else; its earlier
// events on this field, taken by others before it overwrote them, are a documented
// limit: a context cannot say which of its events touched this field, so a record of
// them would hold its entry back for good). At most kProbed replicas are judged so.
Status Replica::NoteRefused(WriteTxn& txn, const FieldDelta& d, const FieldState* ours,
                            const AdmitFn& admit) {
  constexpr size_t kProbed = 16;
  // The replicas whose current operations ours has not seen, each with those alone and
  // the newest of them.
  struct Brought {
    FieldState alone;
    uint64_t newest = 0;
  };
  std::map<ReplicaId, Brought> brought;
  auto unseen_op = [&](const Dot& dot) -> Brought* {
    if (ours && ours->ctx.Covers(dot)) return nullptr;
    Brought& b = brought[dot.replica];
    b.newest = std::max(b.newest, dot.seq);
    return &b;
  };
  for (const auto& [dot, m] : d.state.markers)
    if (Brought* b = unseen_op(dot)) b->alone.markers.emplace(dot, m);
  for (const auto& [element, dots] : d.state.elements)
    for (const Dot& dot : dots)
      if (Brought* b = unseen_op(dot)) b->alone.elements[element].insert(dot);
  size_t probed = 0;
  VersionVector unseen;
  for (const auto& [r, n] : d.state.ctx.entries()) {
    uint64_t upto = n;
    if (auto b = brought.find(r); b != brought.end()) {
      upto = 0;
      if (++probed <= kProbed) {
        FieldDelta alone{d.key, std::move(b->second.alone)};
        alone.state.ctx = d.state.ctx;
        if (admit(alone, ours) != Admission::kRefuse) upto = std::min(b->second.newest, n);
      }
    }
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
