// Write limits: which replicas' events each receiver refuses in which collection (write
// cutoffs and windows, from the statements), the admission of incoming writes by them,
// and the judgement of held changes. See group.h, "The trust set".
#include <algorithm>

#include "tandem/net/group.h"
#include "trust_internal.h"

namespace tandem::net {

Result<WriteLimits> WriteLimitsOf(engine::Replica& r, const Authority& a) {
  WriteLimits out;
  if (a.legacy) return out;
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  std::map<engine::ReplicaId, std::string> bindings;
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasByDevice(r, &bindings));
  out.hold_unbound = a.bindings_required;
  out.bound = BoundToMembers(bindings, a);  // a revoked device's too: its cutoff applies
  out.bound.insert(meta.id);
  // A name no permit uses, standing for every other collection.
  const std::string others(1, '\0');
  std::set<std::string> named{kSchemasCollection};
  for (const auto& p : a.permits)
    if (p.collection != kAnyCollection) named.insert(p.collection);
  for (const auto& entry : replicas) {
    // Named, not structured bindings: clang 14 cannot capture those in the lambda.
    const std::string& device = entry.first;
    const std::vector<engine::ReplicaId>& ids = entry.second;
    const Standing* d = a.Find(device);
    if (!d || d->founder) continue;
    // What it wrote while a permission it got back was away, for its own replicas (a
    // statement for a role names every replica of the role's devices); a revoked
    // device's too, since its revocation cutoff refuses only what came after.
    auto windows = [&](WriteLimits::Windows* into, const std::string& c) {
      const auto& of = d->WriteWindows(c);
      for (const auto& id : ids) {
        auto w = of.find(id);
        if (id == meta.id || w == of.end()) continue;
        auto& to = (*into)[id];
        to.insert(to.end(), w->second.begin(), w->second.end());
      }
    };
    for (const auto& c : named) windows(&out.named_windows[c], c);
    windows(&out.other_windows, others);
    // Where it may not write, its write cutoff. A revoked device's revocation cutoff
    // applies too, and where its write permission was away when it was revoked, that
    // write cutoff still does (what it wrote there before the revocation's cutoff stays
    // refused, as it was before the revocation).
    auto away = [&](const std::string& c) -> const std::map<engine::ReplicaId, uint64_t>* {
      if (!d->revoked) return a.LevelOf(device, c) == Level::kWrite ? nullptr : &d->WriteCutoff(c);
      auto it = d->write_cutoffs.find(c == others ? kAnyCollection : c);
      return it == d->write_cutoffs.end() ? nullptr : &it->second;
    };
    auto limit = [&](std::map<engine::ReplicaId, uint64_t>* into, const std::string& c) {
      const auto* cutoff = away(c);
      if (!cutoff) return;
      for (const auto& id : ids) {
        if (id == meta.id) continue;
        auto cut = cutoff->find(id);
        (*into)[id] = cut == cutoff->end() ? 0 : cut->second;
      }
    };
    for (const auto& c : named) limit(&out.named[c], c);
    limit(&out.others, others);
  }
  return out;
}

engine::Admission AdmitWrite(const engine::FieldDelta& d, const engine::FieldState* ours,
                             const WriteLimits& limits) {
  // Tandem's own collections that every device writes for itself, each checked where it
  // is read (signed statements, bindings, reports): taken from anyone. Any other name
  // with the prefix (schemas, or one nobody defined) is judged as a data collection is,
  // so that a device without write permission cannot fill every device through it.
  const std::string& c = d.key.collection;
  if (c == kDevicesCollection || c == kBindingsCollection || c == kReportsCollection ||
      c == kStatementsCollection)
    return engine::Admission::kAccept;
  for (const auto& [id, cutoff] : limits.For(d.key.collection))
    if (engine::ReliesOnEventsAfter(d.state, ours, id, cutoff)) return engine::Admission::kRefuse;
  for (const auto& [id, windows] : limits.WindowsFor(d.key.collection))
    for (const EventWindow& w : windows)
      if (engine::ReliesOnEventsIn(d.state, ours, id, w.after, w.upto))
        return engine::Admission::kRefuse;
  // Events of a replica no binding names cannot be judged: whose device wrote them? (A
  // build of its own may write under an id it made up.) Held until a binding arrives,
  // by the same tests as a cutoff at 0.
  if (limits.hold_unbound)
    for (const auto& [id, n] : d.state.ctx.entries())
      if (!limits.bound.count(id) && engine::ReliesOnEventsAfter(d.state, ours, id, 0))
        return engine::Admission::kHold;
  return engine::Admission::kAccept;
}

Result<engine::Replica::Judged> JudgeHeldChanges(engine::Replica& r, const Authority& a,
                                                 const engine::CollectionFilter& receive) {
  TANDEM_ASSIGN_OR_RETURN(auto cutoffs, RevocationCutoffs(r, a));
  TANDEM_ASSIGN_OR_RETURN(auto limits, WriteLimitsOf(r, a));
  return JudgeHeldChanges(r, cutoffs, limits, receive);
}

Result<engine::Replica::Judged> JudgeHeldChanges(
    engine::Replica& r, const std::map<engine::ReplicaId, uint64_t>& cutoffs,
    const WriteLimits& limits, const engine::CollectionFilter& receive) {
  return r.JudgeHeld([&](const engine::FieldDelta& d, const engine::FieldState* ours) {
    if (!receive.Allows(d.key.collection)) return engine::Admission::kFilter;  // stays held
    for (const auto& [id, cutoff] : cutoffs)
      if (engine::ReliesOnEventsAfter(d.state, ours, id, cutoff)) return engine::Admission::kRefuse;
    return AdmitWrite(d, ours, limits);
  });
}

}  // namespace tandem::net
