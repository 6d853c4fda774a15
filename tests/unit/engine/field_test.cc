// Registers, counters, sets and type conflicts of the field CRDT.
#include "tandem/engine/field.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "field_test_util.h"

namespace tandem::engine {
namespace {

// ---- registers ----------------------------------------------------------------------

TEST(FieldRegisterTest, EmptyFieldIsNotLive) {
  FieldState s;
  EXPECT_FALSE(s.Live());
  EXPECT_FALSE(Read(s).has_value());
  EXPECT_TRUE(Siblings(s).empty());
  EXPECT_EQ(s.MaxHlc(), 0u);
}

TEST(FieldRegisterTest, PutSetsValueAndContext) {
  FieldState s;
  ApplyPut(s, Dot{kA, 1}, 100, S("Ann"));
  ASSERT_TRUE(s.Live());
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kRegister);
  EXPECT_TRUE(SameValue(v.scalar, S("Ann")));
  EXPECT_EQ(s.ctx.Get(kA), 1u);
  ASSERT_EQ(s.markers.size(), 1u);
  EXPECT_EQ(s.markers.begin()->first, (Dot{kA, 1}));
  EXPECT_EQ(s.markers.begin()->second.hlc, 100u);
  EXPECT_EQ(s.MaxHlc(), 100u);
}

TEST(FieldRegisterTest, SequentialPutSupersedes) {
  FieldState s;
  ApplyPut(s, Dot{kA, 1}, 100, S("x"));
  ApplyPut(s, Dot{kA, 2}, 200, S("y"));
  EXPECT_EQ(s.markers.size(), 1u);
  EXPECT_TRUE(SameValue(ReadLive(s).scalar, S("y")));
  EXPECT_EQ(Siblings(s).size(), 1u);
}

TEST(FieldRegisterTest, ObservedPutWinsEvenWithALowerTimestamp) {
  // A writes at hlc 500; B sees it, then writes with a clock that is behind. B's write
  // causally follows A's, so it supersedes it rather than becoming a losing sibling.
  FieldState a;
  ApplyPut(a, Dot{kA, 1}, 500, S("from A"));
  FieldState b = Joined(FieldState{}, a);
  ApplyPut(b, Dot{kB, 1}, 10, S("from B"));
  FieldState merged = JoinBoth(a, b);
  EXPECT_EQ(merged.markers.size(), 1u);
  EXPECT_TRUE(SameValue(ReadLive(merged).scalar, S("from B")));
}

TEST(FieldRegisterTest, ConcurrentPutsLeaveSiblingsAndHigherHlcWins) {
  FieldState a, b;
  ApplyPut(a, Dot{kA, 1}, 200, S("A"));
  ApplyPut(b, Dot{kB, 1}, 100, S("B"));
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(m.markers.size(), 2u);
  EXPECT_TRUE(SameValue(ReadLive(m).scalar, S("A")));  // higher hlc, lower replica id
  auto sibs = Siblings(m);
  ASSERT_EQ(sibs.size(), 2u);
  EXPECT_TRUE(sibs[0].winner);
  EXPECT_FALSE(sibs[1].winner);
  EXPECT_EQ(sibs[0].dot, (Dot{kA, 1}));
  EXPECT_EQ(sibs[0].hlc, 200u);
  EXPECT_TRUE(SameValue(sibs[0].value, S("A")));
  EXPECT_EQ(sibs[1].dot, (Dot{kB, 1}));
  EXPECT_TRUE(SameValue(sibs[1].value, S("B")));
  EXPECT_EQ(m.ctx.Get(kA), 1u);
  EXPECT_EQ(m.ctx.Get(kB), 1u);
}

TEST(FieldRegisterTest, EqualHlcTieBreaksOnReplicaId) {
  FieldState a, b;
  ApplyPut(a, Dot{kA, 7}, 100, S("A"));
  ApplyPut(b, Dot{kB, 1}, 100, S("B"));
  FieldState m = JoinBoth(a, b);
  EXPECT_TRUE(SameValue(ReadLive(m).scalar, S("B")));  // kB > kA
  auto sibs = Siblings(m);
  ASSERT_EQ(sibs.size(), 2u);
  EXPECT_EQ(sibs[0].dot.replica, kB);
  EXPECT_TRUE(sibs[0].winner);
}

TEST(FieldRegisterTest, EqualHlcAndReplicaTieBreaksOnSeq) {
  // Not produced by one honest replica, but the order must still be total.
  FieldState s;
  s.ctx.Raise(kA, 5);
  s.markers[Dot{kA, 2}] = Marker{100, Kind::kRegister, S("two")};
  s.markers[Dot{kA, 5}] = Marker{100, Kind::kRegister, S("five")};
  s.markers[Dot{kA, 3}] = Marker{100, Kind::kRegister, S("three")};
  EXPECT_TRUE(SameValue(ReadLive(s).scalar, S("five")));
  auto sibs = Siblings(s);
  ASSERT_EQ(sibs.size(), 3u);
  EXPECT_EQ(sibs[0].dot.seq, 5u);
  EXPECT_EQ(sibs[1].dot.seq, 3u);
  EXPECT_EQ(sibs[2].dot.seq, 2u);
  EXPECT_TRUE(sibs[0].winner);
  EXPECT_FALSE(sibs[1].winner);
  EXPECT_FALSE(sibs[2].winner);
}

TEST(FieldRegisterTest, SiblingsAreSortedDescendingWithOneWinner) {
  FieldState a, b, c;
  ApplyPut(a, Dot{kA, 1}, 300, S("A"));
  ApplyPut(b, Dot{kB, 1}, 100, S("B"));
  ApplyPut(c, Dot{kC, 1}, 200, S("C"));
  FieldState m = Joined(Joined(a, b), c);
  auto sibs = Siblings(m);
  ASSERT_EQ(sibs.size(), 3u);
  EXPECT_EQ(sibs[0].hlc, 300u);
  EXPECT_EQ(sibs[1].hlc, 200u);
  EXPECT_EQ(sibs[2].hlc, 100u);
  int winners = 0;
  for (const auto& s : sibs) winners += s.winner;
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(m.MaxHlc(), 300u);
  EXPECT_TRUE(SameValue(ReadLive(m).scalar, S("A")));
}

TEST(FieldRegisterTest, PutAfterObservingSiblingsResolvesTheConflict) {
  FieldState a, b;
  ApplyPut(a, Dot{kA, 1}, 100, S("A"));
  ApplyPut(b, Dot{kB, 1}, 200, S("B"));
  FieldState m = Joined(a, b);
  ApplyPut(m, Dot{kA, 2}, 150, S("resolved"));
  EXPECT_EQ(Siblings(m).size(), 1u);
  EXPECT_TRUE(SameValue(ReadLive(m).scalar, S("resolved")));
  // B, which still holds its own sibling, adopts the resolution.
  FieldState at_b = JoinBoth(b, m);
  EXPECT_EQ(at_b.markers.size(), 1u);
  EXPECT_TRUE(SameValue(ReadLive(at_b).scalar, S("resolved")));
}

TEST(FieldRegisterTest, PutAfterObservingOnlyOneSiblingKeepsTheOther) {
  FieldState a, b;
  ApplyPut(a, Dot{kA, 1}, 100, S("A"));
  ApplyPut(b, Dot{kB, 1}, 200, S("B"));
  ApplyPut(a, Dot{kA, 2}, 300, S("A2"));  // A has still not seen B
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(m.markers.size(), 2u);
  EXPECT_TRUE(m.markers.count(Dot{kA, 2}));
  EXPECT_TRUE(m.markers.count(Dot{kB, 1}));
  EXPECT_FALSE(m.markers.count(Dot{kA, 1}));
}

TEST(FieldRegisterTest, NullAndBytesAreOrdinaryValues) {
  FieldState s;
  ApplyPut(s, Dot{kA, 1}, 1, Value{});
  ASSERT_TRUE(s.Live());  // a null register is still a live field
  EXPECT_EQ(TypeOf(ReadLive(s).scalar), ValueType::kNull);
  ApplyPut(s, Dot{kA, 2}, 2, Value{Bytes{std::string("\0\xff", 2)}});
  EXPECT_TRUE(SameValue(ReadLive(s).scalar, Value{Bytes{std::string("\0\xff", 2)}}));
}

TEST(FieldConflictTest, OnlyRegisterOrMixedKindSiblingsAreConflicts) {
  auto sib = [](uint8_t r, Kind k) { return Sibling{Dot{Rid(r), 1}, 1, k, Value{}, false}; };
  EXPECT_FALSE(IsConflict({}));
  EXPECT_FALSE(IsConflict({sib(1, Kind::kRegister)}));
  EXPECT_FALSE(IsConflict({sib(1, Kind::kCounter)}));
  EXPECT_TRUE(IsConflict({sib(1, Kind::kRegister), sib(2, Kind::kRegister)}));
  EXPECT_FALSE(IsConflict({sib(1, Kind::kCounter), sib(2, Kind::kCounter)}));
  EXPECT_FALSE(IsConflict({sib(1, Kind::kSet), sib(2, Kind::kSet), sib(3, Kind::kSet)}));
  EXPECT_TRUE(IsConflict({sib(1, Kind::kCounter), sib(2, Kind::kRegister)}));
  EXPECT_TRUE(IsConflict({sib(1, Kind::kSet), sib(2, Kind::kSet), sib(3, Kind::kCounter)}));
  EXPECT_TRUE(IsConflict({sib(1, Kind::kRegister), sib(2, Kind::kSet)}));
}

TEST(FieldConflictTest, FromRealStates) {
  FieldState a, b;
  ApplyIncr(a, Dot{kA, 1}, 1, 1);
  ApplyIncr(b, Dot{kB, 1}, 2, 1);
  EXPECT_FALSE(IsConflict(Siblings(JoinBoth(a, b))));
  FieldState c, d;
  ApplyPut(c, Dot{kA, 1}, 1, I(1));
  ApplyPut(d, Dot{kB, 1}, 2, I(2));
  EXPECT_TRUE(IsConflict(Siblings(JoinBoth(c, d))));
  EXPECT_TRUE(IsConflict(Siblings(JoinBoth(a, d))));
}

// ---- counters -----------------------------------------------------------------------

TEST(FieldCounterTest, IncrementsAndDecrementsSum) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 1, 5);
  ApplyIncr(s, Dot{kA, 2}, 2, -3);
  ApplyIncr(s, Dot{kA, 3}, 3, 10);
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kCounter);
  EXPECT_EQ(v.count, 12);
  EXPECT_EQ(CounterSum(s), 12);
  EXPECT_EQ(s.counter.at(kA), (PnTotals{15, 3}));
  EXPECT_EQ(s.markers.size(), 1u);  // each increment supersedes the previous marker
  EXPECT_EQ(TypeOf(s.markers.begin()->second.value), ValueType::kNull);
}

TEST(FieldCounterTest, NegativeTotal) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 1, -7);
  EXPECT_EQ(ReadLive(s).count, -7);
  ApplyIncr(s, Dot{kA, 2}, 2, 2);
  EXPECT_EQ(ReadLive(s).count, -5);
}

TEST(FieldCounterTest, IncrByZeroMakesALiveZeroCounter) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 1, 0);
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kCounter);
  EXPECT_EQ(v.count, 0);
  EXPECT_TRUE(s.counter.empty());  // zero totals are never stored
  EXPECT_EQ(s.ctx.Get(kA), 1u);
}

TEST(FieldCounterTest, Int64MinStep) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 1, kMin);
  EXPECT_EQ(s.counter.at(kA).neg, uint64_t{1} << 63);
  EXPECT_EQ(ReadLive(s).count, kMin);
  EXPECT_EQ(CounterSum(s), static_cast<__int128>(kMin));
  ApplyIncr(s, Dot{kA, 2}, 2, kMax);
  EXPECT_EQ(ReadLive(s).count, -1);
}

TEST(FieldCounterTest, SaturatesAtInt64RangeButKeepsExactSum) {
  FieldState up;
  ApplyIncr(up, Dot{kA, 1}, 1, kMax);
  ApplyIncr(up, Dot{kA, 2}, 2, kMax);
  EXPECT_EQ(ReadLive(up).count, kMax);
  EXPECT_EQ(CounterSum(up), static_cast<__int128>(kMax) * 2);
  ApplyIncr(up, Dot{kA, 3}, 3, -1);
  EXPECT_EQ(ReadLive(up).count, kMax);  // still above the range

  FieldState down;
  ApplyIncr(down, Dot{kA, 1}, 1, kMin);
  ApplyIncr(down, Dot{kA, 2}, 2, kMin);
  EXPECT_EQ(ReadLive(down).count, kMin);
  // 2 * 2^63 = 2^64 is one more than a uint64 holds: the decrement total saturates.
  EXPECT_EQ(CounterSum(down), -static_cast<__int128>(std::numeric_limits<uint64_t>::max()));
}

TEST(FieldCounterTest, PerReplicaTotalsSaturateInsteadOfWrapping) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 1, kMax);
  ApplyIncr(s, Dot{kA, 2}, 2, kMax);
  ApplyIncr(s, Dot{kA, 3}, 3, kMax);  // 3 * (2^63 - 1) > 2^64 - 1
  EXPECT_EQ(s.counter.at(kA).pos, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(ReadLive(s).count, kMax);
  FieldState n;
  for (uint64_t i = 1; i <= 3; ++i) ApplyIncr(n, Dot{kA, i}, i, kMin);
  EXPECT_EQ(n.counter.at(kA).neg, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(ReadLive(n).count, kMin);
}

TEST(FieldCounterTest, ConcurrentIncrementsAddUp) {
  FieldState a, b;
  ApplyIncr(a, Dot{kA, 1}, 10, 5);
  ApplyIncr(b, Dot{kB, 1}, 20, 7);
  ApplyIncr(b, Dot{kB, 2}, 21, -1);
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(ReadLive(m).count, 11);
  EXPECT_EQ(m.markers.size(), 2u);  // two concurrent increments, both counted
  // Joining again does not double count.
  FieldState again = Joined(m, a);
  again = Joined(again, b);
  EXPECT_EQ(ReadLive(again).count, 11);
  EXPECT_EQ(again, m);
}

TEST(FieldCounterTest, IncrementAfterObservingCountsFromTheSharedValue) {
  FieldState a;
  ApplyIncr(a, Dot{kA, 1}, 1, 5);
  FieldState b = Joined(FieldState{}, a);
  ApplyIncr(b, Dot{kB, 1}, 2, 3);
  ApplyIncr(a, Dot{kA, 2}, 3, 1);
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(ReadLive(m).count, 9);
  // B's increment observed A:1, A:2 did not observe B:1: two markers.
  EXPECT_EQ(m.markers.size(), 2u);
}

TEST(FieldCounterTest, PutResetsCounterAndLaterIncrementsStartFromZero) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 1, 5);
  ApplyPut(s, Dot{kA, 2}, 2, S("x"));
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kRegister);
  EXPECT_EQ(CounterSum(s), 0);
  ApplyIncr(s, Dot{kA, 3}, 3, 2);
  v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kCounter);
  EXPECT_EQ(v.count, 2);
}

TEST(FieldCounterTest, ResetKeepsIncrementsItHadNotSeen) {
  FieldState a;
  ApplyIncr(a, Dot{kA, 1}, 10, 5);
  FieldState b = Joined(FieldState{}, a);
  ApplyPut(b, Dot{kB, 1}, 30, S("reset"));  // observed A's 5
  ApplyIncr(a, Dot{kA, 2}, 20, 3);          // concurrent with the put
  FieldState m = JoinBoth(a, b);
  // Put has the higher hlc: the field reads as a register, the increment is a sibling.
  EXPECT_EQ(ReadLive(m).kind, Kind::kRegister);
  EXPECT_EQ(Siblings(m).size(), 2u);
  EXPECT_EQ(CounterSum(m), 3);
  // An increment that observes both counts on top of the 3 the reset had not seen.
  ApplyIncr(m, Dot{kC, 1}, 40, 1);
  EXPECT_EQ(ReadLive(m).kind, Kind::kCounter);
  EXPECT_EQ(ReadLive(m).count, 4);
  EXPECT_EQ(Siblings(m).size(), 1u);
}

// A deletion resets a counter: its tombstone keeps the totals it saw as the baseline. An
// increment made concurrently carries its replica's running total, the part the deletion
// reset included, so only that baseline reads it right: such a tombstone is never
// collected, even once every member holds the deletion (a replica that had dropped it
// would read the increment's whole total where the others read what came after the
// deletion). A tombstone without counter totals goes as before.
TEST(FieldCounterTest, ADeletedCounterKeepsItsBaselineThroughCollection) {
  FieldState s;
  ApplyIncr(s, Dot{kA, 1}, 10, 1);
  ApplyIncr(s, Dot{kB, 1}, 11, 2);
  FieldState tomb = s;
  ApplyDelete(tomb, Dot{kB, 2});
  ASSERT_TRUE(IsTombstone(tomb));
  FieldState inc = s;
  ApplyIncr(inc, Dot{kA, 2}, 20, 2);  // concurrent with the deletion: A's total is 3
  const VersionVector everyone = tomb.ctx;
  EXPECT_EQ(ReadLive(JoinBoth(tomb, inc)).count, 2);  // what came after the deletion
  EXPECT_EQ(ReadLive(inc).count, 5);                  // what a replica without it reads
  EXPECT_FALSE(Collectable(tomb, everyone));
  FieldState reg;
  ApplyPut(reg, Dot{kA, 3}, 30, I(7));
  ApplyDelete(reg, Dot{kB, 3});
  EXPECT_TRUE(Collectable(reg, reg.ctx));
}

// ---- sets ---------------------------------------------------------------------------
// ---- sets ---------------------------------------------------------------------------

TEST(FieldSetTest, AddAndRemove) {
  FieldState s;
  ApplyAdd(s, Dot{kA, 1}, 1, S("b"));
  ApplyAdd(s, Dot{kA, 2}, 2, S("a"));
  ApplyAdd(s, Dot{kA, 3}, 3, S("b"));  // already present
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kSet);
  ASSERT_EQ(v.set.size(), 2u);
  EXPECT_TRUE(SameValue(v.set[0], S("a")));
  EXPECT_TRUE(SameValue(v.set[1], S("b")));
  // Re-adding replaced the element's observed dot with the new one.
  EXPECT_EQ(s.elements.at(S("b")), (std::set<Dot>{Dot{kA, 3}}));
  ApplyRemove(s, Dot{kA, 4}, 4, S("b"));
  v = ReadLive(s);
  ASSERT_EQ(v.set.size(), 1u);
  EXPECT_TRUE(SameValue(v.set[0], S("a")));
}

TEST(FieldSetTest, RemovingTheLastElementLeavesALiveEmptySet) {
  FieldState s;
  ApplyAdd(s, Dot{kA, 1}, 1, I(1));
  ApplyRemove(s, Dot{kA, 2}, 2, I(1));
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kSet);
  EXPECT_TRUE(v.set.empty());
}

TEST(FieldSetTest, RemoveOfAbsentElementOnEmptyFieldMakesASet) {
  FieldState s;
  ApplyRemove(s, Dot{kA, 1}, 1, S("ghost"));
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kSet);
  EXPECT_TRUE(v.set.empty());
  EXPECT_EQ(s.ctx.Get(kA), 1u);
}

TEST(FieldSetTest, ElementsAreSortedByValueOrderAcrossTypes) {
  FieldState s;
  uint64_t seq = 0;
  for (const Value& v : {Value{Bytes{"z"}}, S("b"), Value{2.5}, I(-3), Value{true}, Value{},
                         Value{-0.0}, Value{0.0}, S("a")}) {
    ++seq;
    ApplyAdd(s, Dot{kA, seq}, seq, v);
  }
  auto got = ReadLive(s).set;
  std::vector<Value> want = {Value{},    Value{true}, I(-3),  Value{-0.0},      Value{0.0},
                             Value{2.5}, S("a"),      S("b"), Value{Bytes{"z"}}};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_TRUE(SameValue(got[i], want[i])) << i << ": " << DebugString(got[i]);
}

TEST(FieldSetTest, ConcurrentAddAndRemoveKeepsTheElement) {
  FieldState a;
  ApplyAdd(a, Dot{kA, 1}, 1, S("x"));
  FieldState b = Joined(FieldState{}, a);
  ApplyRemove(b, Dot{kB, 1}, 3, S("x"));  // removes the add it saw
  ApplyAdd(a, Dot{kA, 2}, 2, S("x"));     // concurrently adds x again
  FieldState m = JoinBoth(a, b);
  auto set = ReadLive(m).set;
  ASSERT_EQ(set.size(), 1u);
  EXPECT_TRUE(SameValue(set[0], S("x")));
  EXPECT_EQ(m.elements.at(S("x")), (std::set<Dot>{Dot{kA, 2}}));
}

TEST(FieldSetTest, RemoveOfObservedAddWins) {
  FieldState a;
  ApplyAdd(a, Dot{kA, 1}, 1, S("x"));
  ApplyAdd(a, Dot{kA, 2}, 2, S("y"));
  FieldState b = Joined(FieldState{}, a);
  ApplyRemove(b, Dot{kB, 1}, 3, S("x"));
  FieldState m = JoinBoth(a, b);
  auto set = ReadLive(m).set;
  ASSERT_EQ(set.size(), 1u);
  EXPECT_TRUE(SameValue(set[0], S("y")));
}

TEST(FieldSetTest, ConcurrentAddsOfTheSameElementKeepBothDots) {
  FieldState a, b;
  ApplyAdd(a, Dot{kA, 1}, 1, S("x"));
  ApplyAdd(b, Dot{kB, 1}, 1, S("x"));
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(m.elements.at(S("x")), (std::set<Dot>{Dot{kA, 1}, Dot{kB, 1}}));
  // A remove that saw only A's add leaves B's add standing.
  FieldState a2 = a;
  ApplyRemove(a2, Dot{kA, 2}, 2, S("x"));
  FieldState m2 = JoinBoth(a2, b);
  ASSERT_EQ(ReadLive(m2).set.size(), 1u);
  // A remove that saw both removes it everywhere.
  FieldState m3 = m;
  ApplyRemove(m3, Dot{kC, 1}, 5, S("x"));
  FieldState at_a = JoinBoth(a, m3);
  FieldState at_b = JoinBoth(b, m3);
  EXPECT_TRUE(ReadLive(at_a).set.empty());
  EXPECT_TRUE(ReadLive(at_b).set.empty());
}

TEST(FieldSetTest, ReAddReplacesTheObservedDotEverywhere) {
  FieldState a;
  ApplyAdd(a, Dot{kA, 1}, 1, S("x"));
  FieldState b = Joined(FieldState{}, a);  // b has x with dot A:1
  ApplyAdd(a, Dot{kA, 2}, 2, S("x"));      // a re-adds x: A:1 is subsumed by A:2
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(m.elements.at(S("x")), (std::set<Dot>{Dot{kA, 2}}));
  EXPECT_EQ(m, a);
}

TEST(FieldSetTest, ConcurrentAddsOfDifferentElementsUnion) {
  FieldState a, b;
  ApplyAdd(a, Dot{kA, 1}, 1, I(1));
  ApplyAdd(b, Dot{kB, 1}, 1, I(2));
  ApplyRemove(b, Dot{kB, 2}, 2, I(7));
  auto set = ReadLive(JoinBoth(a, b)).set;
  ASSERT_EQ(set.size(), 2u);
  EXPECT_TRUE(SameValue(set[0], I(1)));
  EXPECT_TRUE(SameValue(set[1], I(2)));
}

TEST(FieldSetTest, IncrOnASetFieldClearsObservedElements) {
  FieldState s;
  ApplyAdd(s, Dot{kA, 1}, 1, S("x"));
  ApplyIncr(s, Dot{kA, 2}, 2, 4);
  EXPECT_EQ(ReadLive(s).kind, Kind::kCounter);
  EXPECT_EQ(ReadLive(s).count, 4);
  EXPECT_TRUE(s.elements.empty());
  // And an add after that resets the counter and starts an empty set.
  ApplyAdd(s, Dot{kA, 3}, 3, S("y"));
  FieldValue v = ReadLive(s);
  EXPECT_EQ(v.kind, Kind::kSet);
  ASSERT_EQ(v.set.size(), 1u);
  EXPECT_TRUE(SameValue(v.set[0], S("y")));
  EXPECT_EQ(CounterSum(s), 0);
}

TEST(FieldSetTest, PutOnASetFieldClearsElements) {
  FieldState s;
  ApplyAdd(s, Dot{kA, 1}, 1, S("x"));
  ApplyPut(s, Dot{kA, 2}, 2, I(9));
  EXPECT_TRUE(s.elements.empty());
  ApplyAdd(s, Dot{kA, 3}, 3, S("y"));
  auto set = ReadLive(s).set;
  ASSERT_EQ(set.size(), 1u);
  EXPECT_TRUE(SameValue(set[0], S("y")));
}

// ---- type conflicts -----------------------------------------------------------------

TEST(FieldTypeConflictTest, PutVsIncrResolvesToKindOfHigherHlc) {
  for (bool put_later : {false, true}) {
    SCOPED_TRACE(put_later ? "put has the higher hlc" : "incr has the higher hlc");
    FieldState a, b;
    ApplyPut(a, Dot{kA, 1}, put_later ? 200 : 100, S("text"));
    ApplyIncr(b, Dot{kB, 1}, put_later ? 100 : 200, 5);
    FieldState ab = Joined(a, b);
    FieldState ba = Joined(b, a);
    EXPECT_EQ(ab, ba);
    FieldValue v1 = ReadLive(ab), v2 = ReadLive(ba);
    EXPECT_EQ(v1, v2);
    if (put_later) {
      EXPECT_EQ(v1.kind, Kind::kRegister);
      EXPECT_TRUE(SameValue(v1.scalar, S("text")));
    } else {
      EXPECT_EQ(v1.kind, Kind::kCounter);
      EXPECT_EQ(v1.count, 5);
    }
    auto sibs = Siblings(ab);
    ASSERT_EQ(sibs.size(), 2u);
    EXPECT_EQ(sibs[0].kind, put_later ? Kind::kRegister : Kind::kCounter);
    EXPECT_EQ(sibs[1].kind, put_later ? Kind::kCounter : Kind::kRegister);
    EXPECT_TRUE(sibs[0].winner);
  }
}

TEST(FieldTypeConflictTest, PutVsAddResolvesToKindOfHigherHlc) {
  for (bool put_later : {false, true}) {
    SCOPED_TRACE(put_later ? "put later" : "add later");
    FieldState a, b;
    ApplyPut(a, Dot{kA, 1}, put_later ? 200 : 100, I(1));
    ApplyAdd(b, Dot{kB, 1}, put_later ? 100 : 200, S("e"));
    FieldState m = JoinBoth(a, b);
    FieldValue v = ReadLive(m);
    if (put_later) {
      EXPECT_EQ(v.kind, Kind::kRegister);
      EXPECT_TRUE(SameValue(v.scalar, I(1)));
    } else {
      EXPECT_EQ(v.kind, Kind::kSet);
      ASSERT_EQ(v.set.size(), 1u);
      EXPECT_TRUE(SameValue(v.set[0], S("e")));
    }
    EXPECT_EQ(Siblings(m).size(), 2u);
  }
}

TEST(FieldTypeConflictTest, IncrVsAddKeepsBothPayloads) {
  FieldState a, b;
  ApplyIncr(a, Dot{kA, 1}, 100, 3);
  ApplyAdd(b, Dot{kB, 1}, 200, S("e"));
  FieldState m = JoinBoth(a, b);
  EXPECT_EQ(ReadLive(m).kind, Kind::kSet);
  EXPECT_EQ(CounterSum(m), 3);  // the losing counter is kept, not lost
  EXPECT_EQ(m.elements.size(), 1u);
}

TEST(FieldTypeConflictTest, LaterOperationSupersedesBothSides) {
  FieldState a, b;
  ApplyPut(a, Dot{kA, 1}, 100, S("text"));
  ApplyIncr(b, Dot{kB, 1}, 200, 5);
  FieldState m = Joined(a, b);
  ApplyPut(m, Dot{kA, 2}, 300, S("final"));
  EXPECT_EQ(Siblings(m).size(), 1u);
  EXPECT_EQ(CounterSum(m), 0);  // the put reset the counter it observed
  FieldState at_b = JoinBoth(b, m);
  EXPECT_EQ(at_b, m);
  EXPECT_TRUE(SameValue(ReadLive(at_b).scalar, S("final")));
}

}  // namespace
}  // namespace tandem::engine
