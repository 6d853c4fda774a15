#include "tandem/engine/field.h"

#include <algorithm>
#include <limits>
#include <tuple>

namespace tandem::engine {

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kRegister:
      return "register";
    case Kind::kCounter:
      return "counter";
    case Kind::kSet:
      return "set";
  }
  return "?";
}

bool MarkerLess(const Marker& a, const Marker& b) {
  if (a.hlc != b.hlc) return a.hlc < b.hlc;
  if (a.kind != b.kind) return a.kind < b.kind;
  return CompareValues(a.value, b.value) < 0;
}

namespace {

// The dot-store join for dot -> payload maps: keep what both have, and what one has
// that the other's context does not cover (the other has not seen it yet).
bool JoinMarkers(std::map<Dot, Marker>& a, const VersionVector& actx,
                 const std::map<Dot, Marker>& b, const VersionVector& bctx) {
  bool changed = false;
  for (auto it = a.begin(); it != a.end();) {
    auto jt = b.find(it->first);
    if (jt == b.end()) {
      if (bctx.Covers(it->first)) {
        it = a.erase(it);
        changed = true;
        continue;
      }
    } else if (!(it->second == jt->second) && MarkerLess(it->second, jt->second)) {
      it->second = jt->second;
      changed = true;
    }
    ++it;
  }
  for (const auto& [dot, m] : b) {
    if (!actx.Covers(dot) && a.emplace(dot, m).second) changed = true;
  }
  return changed;
}

bool JoinDots(std::set<Dot>& a, const VersionVector& actx, const std::set<Dot>& b,
              const VersionVector& bctx) {
  bool changed = false;
  for (auto it = a.begin(); it != a.end();) {
    if (!b.count(*it) && bctx.Covers(*it)) {
      it = a.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  for (const Dot& d : b)
    if (!actx.Covers(d) && a.insert(d).second) changed = true;
  return changed;
}

bool JoinTotals(std::map<ReplicaId, PnTotals>& a, const std::map<ReplicaId, PnTotals>& b) {
  bool changed = false;
  for (const auto& [r, t] : b) {
    if (t.pos == 0 && t.neg == 0) continue;  // zero totals are never stored
    auto& e = a[r];
    if (t.pos > e.pos) e.pos = t.pos, changed = true;
    if (t.neg > e.neg) e.neg = t.neg, changed = true;
  }
  return changed;
}

uint64_t SatAdd(uint64_t a, uint64_t b) {
  uint64_t r = a + b;
  return r < a ? std::numeric_limits<uint64_t>::max() : r;
}

// An operation replaces every marker it observed and records its own dot.
void Begin(FieldState& s, const Dot& dot, Hlc hlc, Kind kind, Value v) {
  if (s.markers.size() == 1) {  // the usual case: the one marker's node, reused
    auto node = s.markers.extract(s.markers.begin());
    node.key() = dot;
    node.mapped() = Marker{hlc, kind, std::move(v)};
    s.markers.insert(std::move(node));
  } else {
    s.markers.clear();
    s.markers.emplace(dot, Marker{hlc, kind, std::move(v)});
  }
  s.ctx.Raise(dot.replica, dot.seq);
}

// The counter's baseline catches up with every total observed: a reset.
void ResetCounter(FieldState& s) {
  for (const auto& [r, t] : s.counter) {
    if (t.pos == 0 && t.neg == 0) continue;
    auto& b = s.counter_base[r];
    b.pos = std::max(b.pos, t.pos);
    b.neg = std::max(b.neg, t.neg);
  }
}

auto WinKey(const Dot& d, const Marker& m) { return std::tie(m.hlc, d.replica, d.seq); }

}  // namespace

bool FieldState::operator==(const FieldState& o) const {
  if (!(ctx == o.ctx) || !(markers == o.markers) || counter != o.counter ||
      counter_base != o.counter_base || elements.size() != o.elements.size())
    return false;
  auto it = o.elements.begin();
  for (const auto& [v, dots] : elements) {
    if (!SameValue(v, it->first) || dots != it->second) return false;
    ++it;
  }
  return true;
}

Hlc FieldState::MaxHlc() const {
  Hlc h = 0;
  for (const auto& [d, m] : markers) h = std::max(h, m.hlc);
  return h;
}

bool Join(FieldState& into, const FieldState& other) {
  bool changed = JoinMarkers(into.markers, into.ctx, other.markers, other.ctx);
  // Elements: join each element's dot set; an element with no dots left is gone.
  for (auto it = into.elements.begin(); it != into.elements.end();) {
    auto jt = other.elements.find(it->first);
    static const std::set<Dot> kNone;
    if (JoinDots(it->second, into.ctx, jt == other.elements.end() ? kNone : jt->second, other.ctx))
      changed = true;
    if (it->second.empty()) {
      it = into.elements.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [v, dots] : other.elements) {
    if (into.elements.count(v)) continue;
    std::set<Dot> kept;
    for (const Dot& d : dots)
      if (!into.ctx.Covers(d)) kept.insert(d);
    if (!kept.empty()) {
      into.elements.emplace(v, std::move(kept));
      changed = true;
    }
  }
  if (JoinTotals(into.counter, other.counter)) changed = true;
  if (JoinTotals(into.counter_base, other.counter_base)) changed = true;
  if (!into.ctx.Covers(other.ctx)) {
    into.ctx.Merge(other.ctx);
    changed = true;
  }
  return changed;
}

void ApplyPut(FieldState& s, const Dot& dot, Hlc hlc, Value v) {
  Begin(s, dot, hlc, Kind::kRegister, std::move(v));
  s.elements.clear();
  ResetCounter(s);
}

void ApplyIncr(FieldState& s, const Dot& dot, Hlc hlc, int64_t by) {
  Begin(s, dot, hlc, Kind::kCounter, Value{});
  s.elements.clear();
  auto& t = s.counter[dot.replica];
  if (by >= 0) {
    t.pos = SatAdd(t.pos, static_cast<uint64_t>(by));
  } else {
    t.neg = SatAdd(t.neg, static_cast<uint64_t>(-(by + 1)) + 1);  // -INT64_MIN safely
  }
  if (t.pos == 0 && t.neg == 0) s.counter.erase(dot.replica);  // incr by 0
}

void ApplyAdd(FieldState& s, const Dot& dot, Hlc hlc, Value element) {
  Begin(s, dot, hlc, Kind::kSet, Value{});
  ResetCounter(s);
  s.elements[std::move(element)] = {dot};  // the observed adds are subsumed by this one
}

void ApplyRemove(FieldState& s, const Dot& dot, Hlc hlc, const Value& element) {
  Begin(s, dot, hlc, Kind::kSet, Value{});
  ResetCounter(s);
  s.elements.erase(element);
}

void ApplyDelete(FieldState& s, const Dot& dot) {
  s.markers.clear();
  s.elements.clear();
  ResetCounter(s);
  s.ctx.Raise(dot.replica, dot.seq);
}

void ClearForOwnOperation(FieldState& s, const ReplicaId& r) {
  auto small = [](const Value& v) {
    if (const auto* t = std::get_if<std::string>(&v)) return t->size() <= 128;
    if (const auto* b = std::get_if<Bytes>(&v)) return b->data.size() <= 128;
    return true;
  };
  if (s.markers.size() == 1 && small(s.markers.begin()->second.value) && s.elements.empty() &&
      s.counter.empty() && s.counter_base.empty() && s.ctx.size() == 1 &&
      s.ctx.entries().begin()->first == r)
    return;
  s = FieldState{};
}

__int128 CounterSum(const FieldState& s) {
  __int128 sum = 0;
  for (const auto& [r, t] : s.counter) {
    PnTotals b;
    if (auto it = s.counter_base.find(r); it != s.counter_base.end()) b = it->second;
    sum += static_cast<__int128>(t.pos) - static_cast<__int128>(b.pos);
    sum -= static_cast<__int128>(t.neg) - static_cast<__int128>(b.neg);
  }
  return sum;
}

std::optional<FieldValue> Read(const FieldState& s) {
  if (s.markers.empty()) return std::nullopt;
  auto win = s.markers.begin();
  for (auto it = s.markers.begin(); it != s.markers.end(); ++it)
    if (WinKey(it->first, it->second) > WinKey(win->first, win->second)) win = it;
  FieldValue fv;
  fv.kind = win->second.kind;
  switch (fv.kind) {
    case Kind::kRegister:
      fv.scalar = win->second.value;
      break;
    case Kind::kCounter: {
      __int128 sum = CounterSum(s);
      const __int128 lo = std::numeric_limits<int64_t>::min();
      const __int128 hi = std::numeric_limits<int64_t>::max();
      fv.count = static_cast<int64_t>(sum < lo ? lo : (sum > hi ? hi : sum));
      break;
    }
    case Kind::kSet:
      for (const auto& [v, dots] : s.elements) fv.set.push_back(v);
      break;
  }
  return fv;
}

bool FieldValue::operator==(const FieldValue& o) const {
  if (kind != o.kind || !SameValue(scalar, o.scalar) || count != o.count ||
      set.size() != o.set.size())
    return false;
  for (size_t i = 0; i < set.size(); ++i)
    if (!SameValue(set[i], o.set[i])) return false;
  return true;
}

std::vector<Sibling> Siblings(const FieldState& s) {
  // Winner first: the greatest (hlc, replica, seq). The markers are sorted by reference
  // and copied once, in order.
  std::vector<const std::pair<const Dot, Marker>*> order;
  for (const auto& entry : s.markers) order.push_back(&entry);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return std::tie(a->second.hlc, a->first.replica, a->first.seq) >
           std::tie(b->second.hlc, b->first.replica, b->first.seq);
  });
  std::vector<Sibling> out;
  out.reserve(order.size());
  for (const auto* e : order)
    out.push_back(Sibling{e->first, e->second.hlc, e->second.kind, e->second.value, false});
  if (!out.empty()) out.front().winner = true;
  return out;
}

bool IsConflict(const std::vector<Sibling>& sibs) {
  if (sibs.size() < 2) return false;
  for (const auto& s : sibs)
    if (s.kind != sibs.front().kind) return true;
  return sibs.front().kind == Kind::kRegister;
}

bool RecordState::Live() const {
  for (const auto& [name, f] : fields)
    if (f.Live()) return true;
  return false;
}

bool Join(RecordState& into, const RecordState& other) {
  bool changed = false;
  for (const auto& [name, f] : other.fields) {
    auto it = into.fields.find(name);
    if (it == into.fields.end()) {
      into.fields.emplace(name, f);
      changed = true;
    } else if (Join(it->second, f)) {
      changed = true;
    }
  }
  return changed;
}

void ApplyDelete(RecordState& r, const Dot& dot) {
  for (auto& [name, f] : r.fields) ApplyDelete(f, dot);
}

std::optional<Record> Read(const std::string& id, const RecordState& r) {
  Record rec;
  rec.id = id;
  for (const auto& [name, f] : r.fields)
    if (auto v = Read(f)) rec.fields.emplace(name, std::move(*v));
  if (rec.fields.empty()) return std::nullopt;
  return rec;
}

bool JoinChanges(const FieldState& into, const FieldState& other) {
  if (!into.ctx.Covers(other.ctx)) return true;
  // As JoinMarkers, JoinDots and JoinTotals would find it.
  for (const auto& [dot, m] : into.markers) {
    auto jt = other.markers.find(dot);
    if (jt == other.markers.end() ? other.ctx.Covers(dot)
                                  : !(m == jt->second) && MarkerLess(m, jt->second))
      return true;
  }
  for (const auto& [dot, m] : other.markers)
    if (!into.ctx.Covers(dot) && !into.markers.count(dot)) return true;
  static const std::set<Dot> kNone;
  for (const auto& [v, dots] : into.elements) {
    auto jt = other.elements.find(v);
    const std::set<Dot>& theirs = jt == other.elements.end() ? kNone : jt->second;
    for (const Dot& d : dots)
      if (!theirs.count(d) && other.ctx.Covers(d)) return true;
  }
  for (const auto& [v, dots] : other.elements) {
    auto it = into.elements.find(v);
    for (const Dot& d : dots)
      if (!into.ctx.Covers(d) && (it == into.elements.end() || !it->second.count(d))) return true;
  }
  auto grows = [](const std::map<ReplicaId, PnTotals>& a, const std::map<ReplicaId, PnTotals>& b) {
    for (const auto& [r, t] : b) {
      auto it = a.find(r);
      const PnTotals have = it == a.end() ? PnTotals{} : it->second;
      if (t.pos > have.pos || t.neg > have.neg) return true;
    }
    return false;
  };
  return grows(into.counter, other.counter) || grows(into.counter_base, other.counter_base);
}

namespace {
// A current operation of `r` numbered in (after, upto].
bool CarriesEventsIn(const FieldState& s, const ReplicaId& r, uint64_t after, uint64_t upto) {
  if (s.ctx.Get(r) <= after) return false;  // no event of r past `after` reached this state
  auto in = [&](const Dot& dot) { return dot.replica == r && dot.seq > after && dot.seq <= upto; };
  for (const auto& [dot, m] : s.markers)
    if (in(dot)) return true;
  for (const auto& [v, dots] : s.elements)
    for (const auto& dot : dots)
      if (in(dot)) return true;
  return false;
}
}  // namespace

bool CarriesEventsAfter(const FieldState& s, const ReplicaId& r, uint64_t seq) {
  return CarriesEventsIn(s, r, seq, std::numeric_limits<uint64_t>::max());
}

bool RemovesOnlyByEventsAfter(const FieldState& s, const FieldState* ours, const ReplicaId& r,
                              uint64_t seq) {
  if (s.ctx.Get(r) <= seq) return false;
  auto fresh = [&](const Dot& dot) {
    return dot.replica != r && (!ours || !ours->ctx.Covers(dot));
  };
  for (const auto& [dot, m] : s.markers)
    if (fresh(dot)) return false;
  for (const auto& [v, dots] : s.elements)
    for (const auto& dot : dots)
      if (fresh(dot)) return false;
  return true;
}

bool ReliesOnEventsAfter(const FieldState& s, const FieldState* ours, const ReplicaId& r,
                         uint64_t seq) {
  return CarriesEventsAfter(s, r, seq) || RemovesOnlyByEventsAfter(s, ours, r, seq);
}

bool ReliesOnEventsIn(const FieldState& s, const FieldState* ours, const ReplicaId& r,
                      uint64_t after, uint64_t upto) {
  if (upto <= after) return false;
  return CarriesEventsIn(s, r, after, upto) ||
         (s.ctx.Get(r) <= upto && RemovesOnlyByEventsAfter(s, ours, r, after));
}

bool IsTombstone(const FieldState& s) { return s.markers.empty() && s.elements.empty(); }

bool Collectable(const FieldState& s, const VersionVector& absorbed) {
  return IsTombstone(s) && s.counter.empty() && s.counter_base.empty() && absorbed.Covers(s.ctx);
}

bool IsNormal(const FieldState& s) {
  auto dot_ok = [&](const Dot& d) { return d.seq >= 1 && s.ctx.Covers(d); };
  for (const auto& [dot, m] : s.markers)
    if (!dot_ok(dot)) return false;
  for (const auto& [element, dots] : s.elements) {
    if (dots.empty()) return false;
    for (const Dot& d : dots)
      if (!dot_ok(d)) return false;
  }
  for (const auto* totals : {&s.counter, &s.counter_base})
    for (const auto& [r, t] : *totals)
      if ((!t.pos && !t.neg) || !s.ctx.Get(r)) return false;
  return true;
}

namespace {
// A dot of `s` that `collected` covers and `held` does not hold: as a marker, or (with
// `element`) as a dot of that element.
bool GoneFrom(const FieldState& held, const VersionVector& collected, const Dot& d,
              const Value* element) {
  if (!collected.Covers(d)) return false;
  if (!element) return !held.markers.contains(d);
  const auto same = held.elements.find(*element);
  return same == held.elements.end() || !same->second.contains(d);
}
}  // namespace

bool DropCollectedNotIn(FieldState& s, const VersionVector& collected, const FieldState& held) {
  const size_t markers = s.markers.size();
  std::erase_if(s.markers,
                [&](const auto& m) { return GoneFrom(held, collected, m.first, nullptr); });
  bool dropped = s.markers.size() != markers;
  for (auto it = s.elements.begin(); it != s.elements.end();) {
    dropped |= std::erase_if(it->second, [&](const Dot& d) {
                 return GoneFrom(held, collected, d, &it->first);
               }) > 0;
    it = it->second.empty() ? s.elements.erase(it) : std::next(it);
  }
  return dropped;
}

bool HoldsCollectedNotIn(const FieldState& s, const VersionVector& collected,
                         const FieldState& held) {
  for (const auto& [dot, m] : s.markers)
    if (GoneFrom(held, collected, dot, nullptr)) return true;
  for (const auto& [element, dots] : s.elements)
    for (const Dot& d : dots)
      if (GoneFrom(held, collected, d, &element)) return true;
  return false;
}

// Held nothing of, a field loses everything collected.
bool HoldsCollected(const FieldState& s, const VersionVector& collected) {
  return HoldsCollectedNotIn(s, collected, FieldState{});
}

void DropCollected(FieldState& s, const VersionVector& collected) {
  DropCollectedNotIn(s, collected, FieldState{});
}

}  // namespace tandem::engine
