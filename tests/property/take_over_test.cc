// TakeOver, which lets a large state that arrived in pieces take the place of the field's
// state here without either being decoded whole, judges exactly what Join would do.
#include "tandem/engine/take_over.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "gen.h"
#include "tandem/engine/codec.h"
#include "tandem/storage/replica.h"

namespace tandem::engine {
namespace {

using testing::GenFieldStates;
using testing::SmallId;

// The state's outline, read from its encoding as a store reads it, each item to `items`.
FieldState OutlineOf(const FieldState& s, const StateItems* items) {
  VectorReplicaTable table;
  std::string encoded;
  EXPECT_TRUE(EncodeFieldState(s, table, &encoded).ok());
  Reader r(encoded);
  uint8_t header = 0;
  uint64_t body_left = 0;
  FieldState outline = OutlineFieldState(r, table, items, &header, &body_left);
  EXPECT_TRUE(r.ok() && r.remaining() == 0) << r.status().ToString();
  return outline;
}

// TakeOver's Result, and (to `keeps_ours`) whether it keeps ours.
std::optional<bool> Judge(const FieldState& ours, const FieldState& theirs,
                          const VersionVector& gone, bool* keeps_ours = nullptr) {
  TakeOver t(storage::Blake2b256Parts, gone);
  const StateItems ours_items = t.Ours();
  const FieldState ours_outline = OutlineOf(ours, &ours_items);
  const FieldState theirs_outline = OutlineOf(theirs, nullptr);
  if (t.Compare(ours_outline, theirs_outline)) {
    const StateItems theirs_items = t.Theirs();
    OutlineOf(theirs, &theirs_items);
  }
  if (keeps_ours) *keeps_ours = t.KeepsOurs();
  return t.Result();
}

// It takes over exactly where the join is the incoming state and nothing of it is
// dropped as collected here (DropCollectedNotIn), and then says whether ours changes.
RC_GTEST_PROP(TakeOver, IsWhetherTheJoinIsTheirsAndWhetherItChangesOurs, ()) {
  const auto s = GenFieldStates(3);
  VersionVector gone;
  if (*rc::gen::arbitrary<bool>())
    for (int r = 0; r < 3; ++r) gone.Raise(SmallId(r), *rc::gen::inRange<uint64_t>(0, 12));
  const FieldState& ours = s[0];
  const FieldState& theirs = s[*rc::gen::inRange(1, 3)];
  FieldState joined = ours;
  Join(joined, theirs);
  const bool is_theirs = joined == theirs && !HoldsCollectedNotIn(theirs, gone, ours);
  bool keeps_ours = false;
  const std::optional<bool> got = Judge(ours, theirs, gone, &keeps_ours);
  RC_ASSERT(got.has_value() == is_theirs);
  if (got) RC_ASSERT(*got == JoinChanges(ours, theirs));
  // And it keeps ours exactly where the join is ours (theirs is older, say: relayed).
  RC_ASSERT(keeps_ours == (joined == ours));
  if (keeps_ours) RC_ASSERT(!JoinChanges(ours, theirs));
}

// A state no replica would make, one dot under two elements: judged by hashes of whole
// items, never by dots alone, it does not take over (the join drops both).
TEST(TakeOver, ADotUnderAnotherElementDoesNotTakeOver) {
  const Dot dot{SmallId(0), 1};
  FieldState ours, theirs;
  ApplyAdd(ours, dot, MakeHlc(1000, 0), Value{std::string("a")});
  ApplyAdd(theirs, dot, MakeHlc(1000, 0), Value{std::string("b")});
  theirs.ctx.Raise(SmallId(1), 1);  // it has seen more than ours
  bool keeps_ours = true;
  EXPECT_FALSE(Judge(ours, theirs, {}, &keeps_ours).has_value());
  EXPECT_FALSE(keeps_ours);
  FieldState joined = ours;
  Join(joined, theirs);
  EXPECT_FALSE(joined == theirs);
  EXPECT_FALSE(joined == ours);
  // Nor, the other way round, does ours keep its place.
  EXPECT_FALSE(Judge(theirs, ours, {}, &keeps_ours).has_value());
  EXPECT_FALSE(keeps_ours);
  // The same element under that dot: the join is theirs, a change to ours.
  FieldState same = ours;
  same.ctx.Raise(SmallId(1), 1);
  EXPECT_EQ(Judge(ours, same, {}), std::optional<bool>(true));
  EXPECT_EQ(Judge(ours, ours, {}, &keeps_ours), std::optional<bool>(false));
  EXPECT_TRUE(keeps_ours);
  EXPECT_FALSE(Judge(same, ours, {}, &keeps_ours).has_value());
  EXPECT_TRUE(keeps_ours) << "an older state of the same element changes nothing";
}

}  // namespace
}  // namespace tandem::engine
