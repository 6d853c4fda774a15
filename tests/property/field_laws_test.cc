// Lattice laws and codec round trips for field states.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "gen.h"
#include "tandem/engine/codec.h"

namespace tandem::engine {
namespace {

using testing::GenFieldStates;
using testing::GenValue;
using testing::SmallId;

FieldState Joined(FieldState a, const FieldState& b) {
  Join(a, b);
  return a;
}

RC_GTEST_PROP(FieldLaws, JoinIsCommutative, ()) {
  auto s = GenFieldStates(3);
  RC_ASSERT(Joined(s[0], s[1]) == Joined(s[1], s[0]));
  RC_ASSERT(Read(Joined(s[0], s[1])) == Read(Joined(s[1], s[0])));
}

RC_GTEST_PROP(FieldLaws, JoinIsAssociative, ()) {
  auto s = GenFieldStates(3);
  RC_ASSERT(Joined(Joined(s[0], s[1]), s[2]) == Joined(s[0], Joined(s[1], s[2])));
}

RC_GTEST_PROP(FieldLaws, JoinIsIdempotent, ()) {
  auto s = GenFieldStates(3);
  RC_ASSERT(Joined(s[0], s[0]) == s[0]);
  FieldState j = Joined(s[0], s[1]);
  FieldState again = j;
  RC_ASSERT(!Join(again, s[1]));  // reports "no change" and changes nothing
  RC_ASSERT(again == j);
}

RC_GTEST_PROP(FieldLaws, JoinIsAnUpperBound, ()) {
  auto s = GenFieldStates(2);
  FieldState j = Joined(s[0], s[1]);
  RC_ASSERT(Joined(j, s[0]) == j);
  RC_ASSERT(Joined(j, s[1]) == j);
}

// Joined into nothing, a normal state is itself (a replica holding nothing of a field
// writes such a state as it came; the field-state fuzz target checks decoded states).
RC_GTEST_PROP(FieldLaws, TheEmptyStateIsTheJoinsIdentity, ()) {
  const FieldState s = GenFieldStates(3)[0];
  RC_ASSERT(IsNormal(s));
  FieldState into;
  RC_ASSERT(Join(into, s) == !(s == FieldState{}));
  RC_ASSERT(into == s);
}

// A state ClearForOwnOperation leaves stands for the empty state: an operation of r's
// on it leaves what it leaves on the empty state. Half the states are what a write of
// r's to a field that held nothing leaves, which it keeps.
RC_GTEST_PROP(FieldLaws, ClearForOwnOperationStandsForTheEmptyState, ()) {
  const ReplicaId r = SmallId(0);
  FieldState s;
  if (*rc::gen::arbitrary<bool>()) {
    s = GenFieldStates(3)[0];
  } else {
    const Value v = *rc::gen::oneOf(GenValue(), rc::gen::just(Value{std::string(129, 'l')}));
    ApplyPut(s, Dot{r, *rc::gen::inRange<uint64_t>(1, 5)}, MakeHlc(999, 0), v);
  }
  const Dot dot{r, s.ctx.Get(r) + *rc::gen::inRange<uint64_t>(1, 3)};
  const Hlc hlc = MakeHlc(1000, *rc::gen::inRange<uint16_t>(0, 3));
  ClearForOwnOperation(s, r);
  FieldState empty;
  const int op = *rc::gen::inRange(0, 4);
  for (FieldState* into : {&s, &empty}) {
    switch (op) {
      case 0:
        ApplyPut(*into, dot, hlc, Value{std::string("v")});
        break;
      case 1:
        ApplyIncr(*into, dot, hlc, 2);
        break;
      case 2:
        ApplyAdd(*into, dot, hlc, Value{int64_t{1}});
        break;
      default:
        ApplyRemove(*into, dot, hlc, Value{int64_t{1}});
    }
  }
  RC_ASSERT(s == empty);
}

// HoldsCollected says exactly when DropCollected drops something.
RC_GTEST_PROP(FieldLaws, HoldsCollectedIsWhetherDropCollectedDropsAnything, ()) {
  const FieldState s = GenFieldStates(3)[0];
  VersionVector g;  // over the replicas the history used, each up to about its length
  for (int r = 0; r < 3; ++r) g.Raise(SmallId(r), *rc::gen::inRange<uint64_t>(0, 12));
  FieldState dropped = s;
  DropCollected(dropped, g);
  RC_ASSERT(HoldsCollected(s, g) == !(dropped == s));
}

// JoinChanges says exactly when Join changes its target: states of one history joined
// into one another, into themselves and into a join of two of them.
RC_GTEST_PROP(FieldLaws, JoinChangesIsWhetherJoinChangesAnything, ()) {
  const std::vector<FieldState> s = GenFieldStates(3);
  FieldState joined01 = s[0];
  Join(joined01, s[1]);
  const FieldState& both = joined01;
  for (const FieldState* into : {&s[0], &s[1], &both})
    for (const FieldState* other : {&s[0], &s[1], &s[2], &both}) {
      FieldState joined = *into;
      const bool changed = Join(joined, *other);
      RC_ASSERT(JoinChanges(*into, *other) == changed);
      RC_ASSERT(changed == !(joined == *into));
    }
  // And states of the same context that lost an operation (as one a collection dropped it
  // from): joined in, the operation goes.
  for (const FieldState* into : {&s[0], &s[1], &both}) {
    FieldState no_marker = *into, no_dot = *into;
    if (!no_marker.markers.empty()) no_marker.markers.erase(no_marker.markers.begin());
    if (!no_dot.elements.empty()) {
      auto first = no_dot.elements.begin();
      first->second.erase(first->second.begin());
      if (first->second.empty()) no_dot.elements.erase(first);
    }
    for (const FieldState* other : {&no_marker, &no_dot}) {
      FieldState joined = *into;
      const bool changed = Join(joined, *other);
      RC_ASSERT(JoinChanges(*into, *other) == changed);
      RC_ASSERT(changed == !(*other == *into));
    }
  }
}

// The state a mutation leaves is its delta: joined into the state it came from, or into
// any replica, it has the effect of the mutation.
RC_GTEST_PROP(FieldLaws, DeltaJoinEqualsMutation, ()) {
  auto s = GenFieldStates(3);
  const int kind = *rc::gen::inRange(0, 5);
  // Replica 5 never appears in the history, so its dot is fresh.
  Dot dot{SmallId(5), 1};
  Hlc hlc = MakeHlc(5000, 0);
  FieldState mutated = s[0];
  Value v = *testing::GenValue();
  Value e = *testing::GenElement();
  int64_t by = *rc::gen::inRange<int64_t>(-9, 10);
  auto apply = [&](FieldState& f) {
    switch (kind) {
      case 0:
        ApplyPut(f, dot, hlc, v);
        break;
      case 1:
        ApplyIncr(f, dot, hlc, by);
        break;
      case 2:
        ApplyAdd(f, dot, hlc, e);
        break;
      case 3:
        ApplyRemove(f, dot, hlc, e);
        break;
      default:
        ApplyDelete(f, dot);
        break;
    }
  };
  apply(mutated);
  RC_ASSERT(Joined(s[0], mutated) == mutated);
  // A replica that has seen s[0] (it joined it) and then receives the delta reaches the
  // same state as one that applied the operation after joining.
  FieldState other = Joined(s[1], s[0]);
  FieldState expect = other;
  Join(expect, mutated);
  FieldState via_delta = Joined(Joined(s[1], s[0]), mutated);
  RC_ASSERT(via_delta == expect);
  // And the operation's effect shows: its marker is present (not a delete).
  if (kind != 4) RC_ASSERT(via_delta.markers.count(dot) == 1);
}

// Whole records: the join of records is the join of their fields, so the laws carry over;
// checked here on records whose fields come from independent histories.
RecordState GenRecord(const std::vector<FieldState>& a, const std::vector<FieldState>& b, int i) {
  RecordState r;
  if (*rc::gen::arbitrary<bool>()) r.fields["a"] = a[i];
  if (*rc::gen::arbitrary<bool>()) r.fields["b"] = b[i];
  return r;
}

RecordState Joined(RecordState x, const RecordState& y) {
  Join(x, y);
  return x;
}

RC_GTEST_PROP(RecordLaws, JoinIsCommutativeAssociativeIdempotent, ()) {
  auto fa = GenFieldStates(3);
  auto fb = GenFieldStates(3);
  RecordState r0 = GenRecord(fa, fb, 0), r1 = GenRecord(fa, fb, 1), r2 = GenRecord(fa, fb, 2);
  RC_ASSERT(Joined(r0, r1) == Joined(r1, r0));
  RC_ASSERT(Joined(Joined(r0, r1), r2) == Joined(r0, Joined(r1, r2)));
  RC_ASSERT(Joined(r0, r0) == r0);
  RC_ASSERT(Read("x", Joined(r0, r1)) == Read("x", Joined(r1, r0)));
  // Deleting a record removes everything the deleter saw and nothing else.
  RecordState deleted = r0;
  ApplyDelete(deleted, Dot{SmallId(5), 1});
  RC_ASSERT(!deleted.Live());
  RC_ASSERT(Joined(deleted, r0) == deleted);
}

RC_GTEST_PROP(FieldLaws, EncodingRoundTrips, ()) {
  auto s = GenFieldStates(3);
  for (const auto& f : s) {
    auto decoded = DecodeFieldState(EncodeFieldState(f).value());
    RC_ASSERT(decoded.ok());
    RC_ASSERT(*decoded == f);
    VectorReplicaTable table;
    std::string bytes;
    RC_ASSERT(EncodeFieldState(f, table, &bytes).ok());
    auto d2 = DecodeFieldState(bytes, table);
    RC_ASSERT(d2.ok());
    RC_ASSERT(*d2 == f);
  }
}

RC_GTEST_PROP(FieldLaws, RandomBytesNeverCrashTheDecoder, (std::string bytes)) {
  auto r = DecodeFieldState(bytes);
  if (r.ok()) {
    // Whatever decodes must re-encode to something that decodes to the same state.
    auto again = DecodeFieldState(EncodeFieldState(*r).value());
    RC_ASSERT(again.ok());
    RC_ASSERT(*again == *r);
  }
}

RC_GTEST_PROP(FieldLaws, MutatedEncodingsNeverCrashTheDecoder, ()) {
  auto s = GenFieldStates(2);
  std::string bytes = EncodeFieldState(Joined(s[0], s[1])).value();
  const int edits = *rc::gen::inRange(1, 4);
  for (int i = 0; i < edits && !bytes.empty(); ++i) {
    size_t pos = *rc::gen::inRange<size_t>(0, bytes.size());
    switch (*rc::gen::inRange(0, 3)) {
      case 0:
        bytes[pos] = static_cast<char>(*rc::gen::arbitrary<uint8_t>());
        break;
      case 1:
        bytes.erase(pos, 1);
        break;
      default:
        bytes.insert(pos, 1, static_cast<char>(*rc::gen::arbitrary<uint8_t>()));
    }
  }
  auto r = DecodeFieldState(bytes);
  if (r.ok()) {
    auto again = DecodeFieldState(EncodeFieldState(*r).value());
    RC_ASSERT(again.ok() && *again == *r);
  }
}

// Collection (Replica::Collect) commutes with merge: replicas that each removed the
// tombstones every replica holds (g: what every replica's state has seen) and then take
// each other's states in, by the rule for a field they hold nothing of (DropCollected),
// end where merging everything without collection ends, or hold nothing where that is a
// tombstone every replica holds.
RC_GTEST_PROP(FieldLaws, HoldsCollectedNotInIsWhetherDropCollectedNotInDropsAnything, ()) {
  const auto s = GenFieldStates(3);
  VersionVector g;
  for (int r = 0; r < 3; ++r) g.Raise(SmallId(r), *rc::gen::inRange<uint64_t>(0, 12));
  FieldState dropped = s[0];
  const bool any = DropCollectedNotIn(dropped, g, s[1]);
  RC_ASSERT(any == !(dropped == s[0]));
  RC_ASSERT(HoldsCollectedNotIn(s[0], g, s[1]) == any);
  RC_ASSERT(!DropCollectedNotIn(dropped, g, s[1]));  // nothing left to drop
}

// A replica deletes a field, collects the tombstone (its context is what was collected),
// then writes the field again: the new state's context starts afresh. States from
// replicas that had not seen the deletion (a stale device, an old backup) must then meet
// the new state as they would have met it had nothing been collected, both ways: joined
// into the new state (the collector drops what its collected vector covers and its own
// state does not hold), and the new state joined into them (a rebase: they drop what the
// collector's vector covers and its state does not hold).
RC_GTEST_PROP(FieldLaws, AFieldWrittenAgainAfterCollectionMeetsOldStatesAsIfNotCollected, ()) {
  auto s = GenFieldStates(3);
  for (auto& f : s) f.counter.clear(), f.counter_base.clear();  // those tombstones stay
  FieldState tomb = Joined(s[0], s[1]);
  ApplyDelete(tomb, Dot{SmallId(4), 1});
  RC_ASSERT(Collectable(tomb, tomb.ctx));
  const VersionVector collected = tomb.ctx;
  const Dot dot{SmallId(5), 1};
  const Hlc hlc = MakeHlc(9000, 0);
  const bool add = *rc::gen::arbitrary<bool>();
  const Value v = add ? *testing::GenElement() : *GenValue();
  auto write = [&](FieldState& f) { add ? ApplyAdd(f, dot, hlc, v) : ApplyPut(f, dot, hlc, v); };
  FieldState kept = tomb;  // never collected
  write(kept);
  FieldState fresh;  // written again after collection
  write(fresh);
  auto same = [](const FieldState& a, const FieldState& b) {
    return a.markers == b.markers && a.elements == b.elements && Read(a) == Read(b);
  };
  for (size_t j = 1; j < s.size(); ++j) {
    const FieldState expected = Joined(kept, s[j]);
    FieldState incoming = s[j];
    DropCollectedNotIn(incoming, collected, fresh);
    RC_ASSERT(same(Joined(fresh, incoming), expected));
    FieldState theirs = s[j];
    DropCollectedNotIn(theirs, collected, fresh);
    RC_ASSERT(same(Joined(theirs, fresh), expected));
  }
}

RC_GTEST_PROP(FieldLaws, CollectionCommutesWithMerge, ()) {
  auto s = GenFieldStates(3);
  VersionVector g = s[0].ctx;
  for (const auto& f : s) g = VersionVector::Meet(g, f.ctx);
  FieldState full = Joined(Joined(s[0], s[1]), s[2]);
  std::vector<bool> collected(s.size());
  for (size_t j = 0; j < s.size(); ++j)
    collected[j] = Collectable(s[j], g) && *rc::gen::arbitrary<bool>();
  for (size_t k = 0; k < s.size(); ++k) {
    std::optional<FieldState> mine;
    if (!collected[k]) mine = s[k];
    std::vector<size_t> order;
    for (size_t j = 0; j < s.size(); ++j)
      if (j != k) order.push_back(j);
    if (*rc::gen::arbitrary<bool>()) std::swap(order[0], order[1]);
    for (size_t j : order) {
      if (collected[j]) continue;  // nothing left there to send
      FieldState incoming = s[j];
      if (!mine && collected[k]) {
        DropCollected(incoming, g);
        if (Collectable(incoming, g)) continue;
      }
      if (!mine) mine.emplace();
      Join(*mine, incoming);
    }
    if (mine)
      RC_ASSERT(*mine == full);
    else
      RC_ASSERT(Collectable(full, g));
  }
}

}  // namespace
}  // namespace tandem::engine
