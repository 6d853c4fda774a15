// Record deletion, and the join laws on concrete field states.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "field_test_util.h"
#include "tandem/engine/field.h"

namespace tandem::engine {
namespace {

// ---- record deletion ----------------------------------------------------------------

RecordState MakeRecord() {
  RecordState r;
  ApplyPut(r.fields["name"], Dot{kA, 1}, 10, S("Ann"));
  ApplyPut(r.fields["age"], Dot{kA, 2}, 11, I(30));
  return r;
}

TEST(RecordTest, ReadListsLiveFieldsOnly) {
  RecordState r = MakeRecord();
  r.fields["gone"];  // an empty (never written) field
  ASSERT_TRUE(r.Live());
  auto rec = Read("r1", r);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->id, "r1");
  EXPECT_EQ(rec->fields.size(), 2u);
  EXPECT_TRUE(SameValue(rec->fields.at("name").scalar, S("Ann")));
  EXPECT_TRUE(SameValue(rec->fields.at("age").scalar, I(30)));
  EXPECT_FALSE(rec->fields.count("gone"));
}

TEST(RecordTest, EmptyRecordIsNotLive) {
  RecordState r;
  EXPECT_FALSE(r.Live());
  EXPECT_FALSE(Read("x", r).has_value());
}

TEST(RecordTest, DeleteRemovesEverythingObserved) {
  RecordState r = MakeRecord();
  ApplyIncr(r.fields["n"], Dot{kA, 3}, 12, 4);
  ApplyAdd(r.fields["tags"], Dot{kA, 4}, 13, S("t"));
  ApplyDelete(r, Dot{kA, 5});
  EXPECT_FALSE(r.Live());
  EXPECT_FALSE(Read("x", r).has_value());
  for (const auto& [name, f] : r.fields) {
    EXPECT_TRUE(f.markers.empty()) << name;
    EXPECT_TRUE(f.elements.empty()) << name;
    EXPECT_EQ(CounterSum(f), 0) << name;
    EXPECT_EQ(f.ctx.Get(kA), 5u) << name;  // the tombstone carries the deletion's dot
  }
}

TEST(RecordTest, DeletionPropagatesToReplicasThatHadTheRecord) {
  RecordState a = MakeRecord();
  RecordState b = a;
  ApplyDelete(b, Dot{kB, 1});
  RecordState m = JoinBoth(a, b);
  EXPECT_FALSE(m.Live());
}

TEST(RecordTest, UpdateConcurrentWithDeleteSurvives) {
  RecordState a = MakeRecord();
  RecordState b = a;
  ApplyDelete(b, Dot{kB, 1});
  ApplyPut(a.fields["name"], Dot{kA, 3}, 20, S("Bea"));  // concurrent with the delete
  RecordState m = JoinBoth(a, b);
  ASSERT_TRUE(m.Live());
  auto rec = Read("r", m);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->fields.size(), 1u);  // the field not updated stays deleted
  EXPECT_TRUE(SameValue(rec->fields.at("name").scalar, S("Bea")));
  EXPECT_FALSE(rec->fields.count("age"));
}

TEST(RecordTest, NewFieldConcurrentWithDeleteSurvives) {
  RecordState a = MakeRecord();
  RecordState b = a;
  ApplyDelete(b, Dot{kB, 1});
  ApplyAdd(a.fields["tags"], Dot{kA, 3}, 20, S("new"));
  RecordState m = JoinBoth(a, b);
  auto rec = Read("r", m);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->fields.size(), 1u);
  EXPECT_EQ(rec->fields.at("tags").set.size(), 1u);
}

TEST(RecordTest, CounterAfterConcurrentDeleteShowsOnlyUnseenIncrements) {
  RecordState a;
  ApplyIncr(a.fields["n"], Dot{kA, 1}, 10, 5);
  RecordState b = a;
  ApplyDelete(b, Dot{kB, 1});                    // saw the 5
  ApplyIncr(a.fields["n"], Dot{kA, 2}, 20, 3);   // concurrent
  ApplyIncr(a.fields["n"], Dot{kA, 3}, 21, -1);  // concurrent
  RecordState m = JoinBoth(a, b);
  auto rec = Read("r", m);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->fields.at("n").kind, Kind::kCounter);
  EXPECT_EQ(rec->fields.at("n").count, 2);
}

TEST(RecordTest, SetElementAddedConcurrentlyWithDeleteSurvivesAlone) {
  RecordState a;
  ApplyAdd(a.fields["s"], Dot{kA, 1}, 10, S("old"));
  RecordState b = a;
  ApplyDelete(b, Dot{kB, 1});
  ApplyAdd(a.fields["s"], Dot{kA, 2}, 20, S("new"));
  auto rec = Read("r", JoinBoth(a, b));
  ASSERT_TRUE(rec.has_value());
  auto set = rec->fields.at("s").set;
  ASSERT_EQ(set.size(), 1u);
  EXPECT_TRUE(SameValue(set[0], S("new")));
}

TEST(RecordTest, WriteAfterDeleteRecreatesTheRecord) {
  RecordState r = MakeRecord();
  ApplyDelete(r, Dot{kA, 3});
  ASSERT_FALSE(r.Live());
  ApplyPut(r.fields["age"], Dot{kA, 4}, 30, I(31));
  auto rec = Read("r", r);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->fields.size(), 1u);
  EXPECT_TRUE(SameValue(rec->fields.at("age").scalar, I(31)));
}

TEST(RecordTest, JoinAddsFieldsAndReportsChange) {
  RecordState a, b;
  ApplyPut(a.fields["x"], Dot{kA, 1}, 1, I(1));
  ApplyPut(b.fields["y"], Dot{kB, 1}, 1, I(2));
  RecordState m = a;
  EXPECT_TRUE(Join(m, b));
  EXPECT_EQ(m.fields.size(), 2u);
  EXPECT_FALSE(Join(m, b));
  EXPECT_FALSE(Join(m, a));
  RecordState copy = m;
  EXPECT_FALSE(Join(m, copy));
}

// ---- join laws on concrete states ---------------------------------------------------

// A few divergent histories of one field, touching every part of the state.
std::vector<FieldState> Histories() {
  FieldState base;
  ApplyIncr(base, Dot{kA, 1}, 10, 2);
  ApplyAdd(base, Dot{kA, 2}, 11, S("x"));
  std::vector<FieldState> out;
  FieldState a = base;
  ApplyPut(a, Dot{kA, 3}, 40, S("a"));
  ApplyIncr(a, Dot{kA, 4}, 41, -6);
  out.push_back(a);
  FieldState b = base;
  ApplyAdd(b, Dot{kB, 1}, 30, S("y"));
  ApplyRemove(b, Dot{kB, 2}, 31, S("x"));
  out.push_back(b);
  FieldState c = base;
  ApplyDelete(c, Dot{kC, 1});
  ApplyIncr(c, Dot{kC, 2}, 50, 9);
  out.push_back(c);
  FieldState d;  // never saw base
  ApplyPut(d, Dot{kC, 7}, 5, S("d"));
  out.push_back(d);
  out.push_back(base);
  out.push_back(FieldState{});
  return out;
}

TEST(FieldJoinTest, Commutative) {
  auto hs = Histories();
  for (size_t i = 0; i < hs.size(); ++i)
    for (size_t j = 0; j < hs.size(); ++j)
      EXPECT_EQ(Joined(hs[i], hs[j]), Joined(hs[j], hs[i])) << i << "," << j;
}

TEST(FieldJoinTest, Associative) {
  auto hs = Histories();
  for (size_t i = 0; i < hs.size(); ++i)
    for (size_t j = 0; j < hs.size(); ++j)
      for (size_t k = 0; k < hs.size(); ++k)
        EXPECT_EQ(Joined(Joined(hs[i], hs[j]), hs[k]), Joined(hs[i], Joined(hs[j], hs[k])))
            << i << "," << j << "," << k;
}

TEST(FieldJoinTest, IdempotentAndReportsNoChange) {
  for (const auto& h : Histories()) {
    FieldState s = h;
    EXPECT_FALSE(Join(s, h));
    EXPECT_EQ(s, h);
    FieldState m = Joined(h, Histories()[1]);
    FieldState again = m;
    EXPECT_FALSE(Join(again, m));
    EXPECT_FALSE(Join(again, h));  // h is already included in m
    EXPECT_EQ(again, m);
  }
}

TEST(FieldJoinTest, ReportsChangeExactlyWhenStateChanges) {
  auto hs = Histories();
  for (size_t i = 0; i < hs.size(); ++i) {
    for (size_t j = 0; j < hs.size(); ++j) {
      FieldState s = hs[i];
      bool changed = Join(s, hs[j]);
      EXPECT_EQ(changed, !(s == hs[i])) << i << "," << j;
    }
  }
}

TEST(FieldJoinTest, EmptyIsIdentity) {
  for (const auto& h : Histories()) {
    EXPECT_EQ(Joined(FieldState{}, h), h);
    EXPECT_EQ(Joined(h, FieldState{}), h);
  }
}

TEST(FieldJoinTest, ExpectedResultOfThreeWayMerge) {
  auto hs = Histories();
  FieldState m = Joined(Joined(hs[0], hs[1]), hs[2]);
  // Markers: A:4 (incr, hlc 41), B:2 (remove, hlc 31), C:2 (incr, hlc 50). A:2 was
  // observed by all three and superseded.
  ASSERT_EQ(m.markers.size(), 3u);
  EXPECT_TRUE(m.markers.count(Dot{kA, 4}));
  EXPECT_TRUE(m.markers.count(Dot{kB, 2}));
  EXPECT_TRUE(m.markers.count(Dot{kC, 2}));
  FieldValue v = ReadLive(m);
  EXPECT_EQ(v.kind, Kind::kCounter);  // C:2 has the highest hlc
  // Counter: A total pos 2 neg 6, base A 2 (a's put and c's delete both saw +2),
  // C total 9 -> -6 + 9.
  EXPECT_EQ(v.count, 3);
  // Elements: x was removed by b and cleared by a's put and c's delete; y survives (B:1
  // unseen by a and c).
  ASSERT_EQ(m.elements.size(), 1u);
  EXPECT_TRUE(m.elements.count(S("y")));
}

TEST(FieldJoinTest, OperationStateIsItsOwnDelta) {
  // Joining the state after an operation into any replica that had the state before it
  // gives the state after it.
  for (const auto& before : Histories()) {
    FieldState after = before;
    ApplyPut(after, Dot{Rid(9), 1}, 1000, S("z"));
    FieldState other = before;
    EXPECT_TRUE(Join(other, after));
    EXPECT_EQ(other, after);
    FieldState after_incr = before;
    ApplyIncr(after_incr, Dot{Rid(9), 1}, 1000, -2);
    other = before;
    Join(other, after_incr);
    EXPECT_EQ(other, after_incr);
  }
}

TEST(FieldJoinTest, ForgedConflictingMarkersForOneDotJoinDeterministically) {
  FieldState a, b;
  ApplyPut(a, Dot{kA, 1}, 100, S("one"));
  ApplyPut(b, Dot{kA, 1}, 100, S("two"));
  FieldState ab = Joined(a, b), ba = Joined(b, a);
  EXPECT_EQ(ab, ba);
  EXPECT_EQ(ab.markers.size(), 1u);
  EXPECT_TRUE(SameValue(ReadLive(ab).scalar, S("two")));  // the greater marker
}

// ---- misc ---------------------------------------------------------------------------

TEST(FieldMiscTest, KindNames) {
  EXPECT_STREQ(KindName(Kind::kRegister), "register");
  EXPECT_STREQ(KindName(Kind::kCounter), "counter");
  EXPECT_STREQ(KindName(Kind::kSet), "set");
}

TEST(FieldMiscTest, FieldValueEqualityIsBitwise) {
  FieldValue a{Kind::kRegister, Value{0.0}, 0, {}};
  FieldValue b{Kind::kRegister, Value{-0.0}, 0, {}};
  EXPECT_FALSE(a == b);
  FieldValue c{Kind::kSet, Value{}, 0, SetOf({I(1), I(2)})};
  FieldValue d{Kind::kSet, Value{}, 0, SetOf({I(1), I(2)})};
  FieldValue e{Kind::kSet, Value{}, 0, SetOf({I(1)})};
  EXPECT_TRUE(c == d);
  EXPECT_FALSE(c == e);
  FieldValue f{Kind::kCounter, Value{}, 1, {}};
  FieldValue g{Kind::kCounter, Value{}, 2, {}};
  EXPECT_FALSE(f == g);
}

TEST(FieldMiscTest, FieldStateEqualityDistinguishesSignedZeroElements) {
  FieldState a, b;
  ApplyAdd(a, Dot{kA, 1}, 1, Value{0.0});
  ApplyAdd(b, Dot{kA, 1}, 1, Value{-0.0});
  EXPECT_FALSE(a == b);
  // Same dot, different elements: not something honest replicas produce, but the join
  // must still be deterministic.
  JoinBoth(a, b);
}

TEST(FieldMiscTest, DeleteOnEmptyFieldOnlyRaisesContext) {
  FieldState s;
  ApplyDelete(s, Dot{kB, 4});
  EXPECT_FALSE(s.Live());
  EXPECT_EQ(s.ctx.Get(kB), 4u);
  EXPECT_TRUE(s.counter_base.empty());
}

}  // namespace
}  // namespace tandem::engine
