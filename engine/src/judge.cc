// Judging incoming field states by their collection's rules (schemas: docs/schema.md),
// as JoinInto does before it applies them.
#include <algorithm>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {
using RulesRead = std::map<std::string, std::shared_ptr<const CollectionRules>>;
}  // namespace

Result<const CollectionRules*> Replica::RulesOf(ReadTxn& txn, const std::string& collection,
                                                RulesRead* rules) {
  auto it = rules->find(collection);
  if (it == rules->end()) {
    TANDEM_ASSIGN_OR_RETURN(auto found, ReadRules(txn, collection));
    it = rules->emplace(collection, std::move(found)).first;
  }
  return it->second.get();
}

Result<std::string> Replica::Judge(ReadTxn& txn, const FieldDelta& d, const FieldState* have,
                                   RulesRead* rules) {
  TANDEM_ASSIGN_OR_RETURN(const CollectionRules* r, RulesOf(txn, d.key.collection, rules));
  if (!r) return std::string();
  // Only what is new here: operations this replica has already seen were judged then.
  auto seen = [&](const Dot& dot) { return have && have->ctx.Covers(dot); };
  Hlc newest = 0;
  for (const auto& [dot, m] : d.state.markers) {
    if (seen(dot)) continue;
    newest = std::max(newest, m.hlc);
    Status st = r->CheckIncoming(d.key.field, m.kind, m.value, m.hlc, false);
    if (!st.ok()) return st.message();
  }
  for (const auto& [element, dots] : d.state.elements) {
    bool fresh = false;
    Hlc own = 0;  // the timestamp of an add whose marker is still there
    for (const auto& dot : dots) {
      fresh = fresh || !seen(dot);
      if (auto m = d.state.markers.find(dot); m != d.state.markers.end())
        own = std::max(own, m->second.hlc);
    }
    if (!fresh) continue;
    // Without its own marker, an element's time is known only to be at most the
    // field's newest change.
    Status st = own ? r->CheckIncoming(d.key.field, Kind::kSet, element, own, false)
                    : r->CheckIncoming(d.key.field, Kind::kSet, element,
                                       newest ? newest : d.state.MaxHlc(), true);
    if (!st.ok()) return st.message();
  }
  return std::string();
}

Result<std::string> Replica::JudgeInPieces(WriteTxn& txn, const FieldDelta& d,
                                           const FieldState* have, RulesRead* rules) {
  TANDEM_ASSIGN_OR_RETURN(const CollectionRules* rp, RulesOf(txn, d.key.collection, rules));
  if (!rp) return std::string();
  // As Judge: only what is new here. The outline has every marker's timestamp; the values
  // come a piece at a time.
  const CollectionRules& r = *rp;
  auto seen = [&](const Dot& dot) { return have && have->ctx.Covers(dot); };
  Hlc newest = 0;
  for (const auto& [dot, m] : d.state.markers)
    if (!seen(dot)) newest = std::max(newest, m.hlc);
  if (!newest) newest = d.state.MaxHlc();
  std::string why;
  StateItems items;
  items.only = true;  // the outline is d.state
  items.marker = [&](const Dot& dot, const Marker& m) {
    if (!why.empty() || seen(dot)) return;
    if (Status st = r.CheckIncoming(d.key.field, m.kind, m.value, m.hlc, false); !st.ok())
      why = st.message();
  };
  items.element = [&](const Value& element, const std::set<Dot>& dots) {
    if (!why.empty() || std::all_of(dots.begin(), dots.end(), seen)) return;
    Hlc own = 0;
    for (const auto& dot : dots)
      if (auto m = d.state.markers.find(dot); m != d.state.markers.end())
        own = std::max(own, m->second.hlc);
    Status st = own ? r.CheckIncoming(d.key.field, Kind::kSet, element, own, false)
                    : r.CheckIncoming(d.key.field, Kind::kSet, element, newest, true);
    if (!st.ok()) why = st.message();
  };
  TANDEM_RETURN_IF_ERROR(ReadInPieces(txn, *d.pieces, items));
  return why;
}

}  // namespace tandem::engine
