// Records of field states refused for good, and the caps they put on watermark claims
// (Replica::NoteRefused, Replica::CapByRefused; docs/design.md, Sync).
#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {
// `s` with only the current operation `dot` (a marker, or one dot of a set element).
FieldState OnlyOperation(const FieldState& s, const Dot& dot) {
  FieldState out;
  out.ctx = s.ctx;
  if (auto m = s.markers.find(dot); m != s.markers.end()) out.markers.emplace(dot, m->second);
  for (const auto& [element, dots] : s.elements)
    if (dots.count(dot)) out.elements.emplace(element, std::set<Dot>{dot});
  return out;
}
}  // namespace

// A refused state may be the only copy on hand of other replicas' events: a revoked
// device that overwrote a member's value at its own replica carries the member's write
// in its context alone. So it is recorded, per field, with the newest event of each
// replica the refused context has seen and this replica's state of the field has not.
// For a replica whose current values it brings, `admit` judges each value alone: the
// events up to its newest value that would be taken (a member's value concurrent with
// the refused one, which the member still sends), else those before its first refused
// value (a till that wrote a price while it could, which members took, then again once
// it could not). Refused values are never recorded: they arrive from nowhere else.
Status Replica::NoteRefused(WriteTxn& txn, const FieldDelta& d, const FieldState* ours,
                            const AdmitFn& admit) {
  std::map<ReplicaId, std::vector<uint64_t>> brought;  // replica -> its current operations
  auto note = [&](const Dot& dot) {
    if (!ours || !ours->ctx.Covers(dot)) brought[dot.replica].push_back(dot.seq);
  };
  for (const auto& [dot, m] : d.state.markers) note(dot);
  for (const auto& [element, dots] : d.state.elements)
    for (const auto& dot : dots) note(dot);
  VersionVector unseen;
  for (const auto& [r, n] : d.state.ctx.entries()) {
    uint64_t upto = n;
    if (auto b = brought.find(r); b != brought.end()) {
      std::vector<uint64_t>& seqs = b->second;
      std::sort(seqs.begin(), seqs.end());
      upto = seqs.back();
      for (uint64_t seq : seqs) {
        const FieldDelta alone{d.key, OnlyOperation(d.state, Dot{r, seq})};
        if (admit(alone, ours) == Admission::kRefuse) {
          upto = seq - 1;
          break;
        }
      }
      upto = std::min(upto, n);
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
