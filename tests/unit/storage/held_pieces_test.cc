// Large field states that arrive in pieces and are held in the quarantine (their writer
// not known yet, their collection's rules broken, or too large here to be decoded whole
// where that would be needed): kept in their pieces, never decoded whole, and applied a
// part at a time when judged again or released.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "../../integration/process.h"
#include "large_states.h"
#include "sync_once.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Admission;
using engine::FieldState;
using engine::QuarantineEntry;
using engine::Value;

// Writes four 300 kB elements (1.2 MB: in pieces) to docs/big.parts, and a small record.
void WriteBig(engine::Replica& r, int seed) {
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(r.Add("docs", "big", "parts", Value{Text(300'000, seed + i)}).ok());
  ASSERT_TRUE(r.Put("docs", "other", {{"v", Value{int64_t{seed}}}}).ok());
}

// The one entry the quarantine holds.
QuarantineEntry OnlyHeld(engine::Replica& r) {
  auto held = r.Quarantined();
  EXPECT_TRUE(held.ok());
  EXPECT_EQ(held.ok() ? held->size() : 0u, 1u);
  return held.ok() && held->size() == 1 ? (*held)[0] : QuarantineEntry{};
}

// A session whose admission judges outlines and holds docs/big (its writer not known).
SyncRun HoldingBig() {
  SyncRun run;
  run.oy.judges_outlines = [](const std::string&) { return true; };
  run.oy.admit = [](const engine::FieldDelta& d, const FieldState*) {
    return d.key.record == "big" ? Admission::kHold : Admission::kAccept;
  };
  return run;
}

// Elements of the outline (one null element holding every element's dots).
size_t Dots(const FieldState& s) {
  size_t n = 0;
  for (const auto& [v, dots] : s.elements) n += dots.size();
  return n;
}

// Held because its writer is not known yet: kept as it came, its chunks listed by an
// entry of its own that collection keeps and `check` accounts for, the watermark held
// below it; judged again, it is applied without being decoded whole, and nothing of the
// entry is left.
TEST(HeldPieces, AStateHeldForItsWriterIsKeptInPiecesAndAppliedWhenJudgedAgain) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  WriteBig(**a, 0);
  SyncRun run = HoldingBig();
  engine::SessionStats stats;
  run.y_stats = &stats;
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  EXPECT_EQ(stats.fields_quarantined, 1u);
  EXPECT_EQ(stats.pieces_decoded, 0u);
  EXPECT_EQ((*b)->Get("docs", "big").status().code(), Code::kNotFound);
  EXPECT_TRUE((*b)->Get("docs", "other").ok());
  QuarantineEntry e = OnlyHeld(**b);
  ASSERT_TRUE(e.pieces.has_value());
  EXPECT_TRUE(e.held);
  EXPECT_GT(e.pieces->size, 1'200'000u);
  EXPECT_EQ(Dots(e.state), 4u) << "its outline";
  EXPECT_EQ(OutOfLine(**b), 0u) << "check passes, and no field holds it";
  EXPECT_EQ(Pending(**b), 0u);
  auto ma = (*a)->Meta();
  auto mb = (*b)->Meta();
  ASSERT_TRUE(ma.ok() && mb.ok());
  EXPECT_LT(mb->vv.Get(ma->id), ma->vv.Get(ma->id)) << "the watermark waits";
  auto format = dynamic_cast<LmdbStore*>(&(*b)->store())->Format();
  ASSERT_TRUE(format.ok());
  EXPECT_EQ(*format, kFormatHeldPieces);
  // Collection keeps its chunks; a reopened replica reads the entry the same.
  CollectHeld(**b);
  b->reset();
  b = OpenReplica(tmp / "b");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(OnlyHeld(**b).pieces, e.pieces);
  // Judged again, by its outline: applied as it came.
  size_t judged = 0;
  auto j = (*b)->JudgeHeld([&](const engine::FieldDelta& d, const FieldState* ours) {
    ++judged;
    EXPECT_TRUE(d.pieces != nullptr);
    EXPECT_EQ(Dots(d.state), 4u);
    EXPECT_EQ(ours, nullptr);
    return Admission::kAccept;
  });
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(judged, 1u);
  EXPECT_EQ(j->applied, 1u);
  auto left = (*b)->Quarantined();
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  ExpectSameDigests(**a, **b);
  EXPECT_EQ(OutOfLine(**b), 1u) << "stored as it came; no entry of the quarantine's left";
  CollectHeld(**b);
  EXPECT_EQ(OutOfLine(**b), 1u);
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  mb = (*b)->Meta();
  ASSERT_TRUE(mb.ok());
  EXPECT_EQ(mb->vv.Get(ma->id), ma->vv.Get(ma->id));
}

// Held for its writer, then accepted, it breaks the collection's rules (which judge it
// as from its peer): held again for that, in its pieces, and nothing of it is lost.
TEST(HeldPieces, AHeldStateAcceptedThatBreaksTheRulesIsHeldAgain) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  WriteBig(**a, 0);
  ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{std::string("refused here")}).ok());
  SyncRun run = HoldingBig();
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  const QuarantineEntry first = OnlyHeld(**b);
  ASSERT_TRUE(first.pieces.has_value());
  auto rules = std::make_shared<RefuseElements>();
  (*b)->SetWritePolicy(rules);
  auto j = (*b)->JudgeHeld(
      [](const engine::FieldDelta&, const FieldState*) { return Admission::kAccept; });
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  const QuarantineEntry again = OnlyHeld(**b);
  EXPECT_NE(again.id, first.id);
  ASSERT_TRUE(again.pieces.has_value());
  EXPECT_EQ(again.pieces->content, first.pieces->content);
  EXPECT_FALSE(again.held);
  EXPECT_NE(again.reason.find("no refused elements"), std::string::npos) << again.reason;
  EXPECT_EQ((*b)->Get("docs", "big").status().code(), Code::kNotFound);
  EXPECT_EQ(OutOfLine(**b), 0u) << "check: its chunks are listed";
  CollectHeld(**b);
  (*b)->SetWritePolicy(nullptr);
  auto released = (*b)->ReleaseAllQuarantined();
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  EXPECT_EQ(*released, 1u);
  ExpectSameDigests(**a, **b);
}

// Refused when judged again: forgotten with its chunks' entry, recorded as refused.
TEST(HeldPieces, AHeldStateRefusedWhenJudgedAgainLeavesNothing) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  WriteBig(**a, 0);
  SyncRun run = HoldingBig();
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  ASSERT_TRUE(OnlyHeld(**b).pieces.has_value());
  auto j = (*b)->JudgeHeld(
      [](const engine::FieldDelta&, const FieldState*) { return Admission::kRefuse; });
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(j->refused, 1u);
  auto left = (*b)->Quarantined();
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  EXPECT_EQ((*b)->Get("docs", "big").status().code(), Code::kNotFound);
  EXPECT_EQ(OutOfLine(**b), 0u) << "check: no entry lists chunks no one names";
}

// A state in pieces that breaks the collection's rules is held in its pieces, with the
// rule's reason; released by hand into a field both sides wrote since, it is joined with
// the field's state a part at a time, and both sides end alike.
TEST(HeldPieces, AStateBreakingTheRulesIsHeldInPiecesAndJoinedWhenReleased) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  WriteBig(**a, 0);
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  auto rules = std::make_shared<RefuseElements>();
  (*b)->SetWritePolicy(rules);
  ASSERT_TRUE((*b)->Add("docs", "big", "parts", Value{Text(300'000, 20)}).ok());
  ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{std::string("refused here")}).ok());
  engine::SessionStats stats;
  SyncRun run;
  run.y_stats = &stats;
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  EXPECT_EQ(stats.fields_quarantined, 1u);
  EXPECT_EQ(stats.pieces_decoded, 0u);
  QuarantineEntry e = OnlyHeld(**b);
  ASSERT_TRUE(e.pieces.has_value());
  EXPECT_FALSE(e.held);
  EXPECT_NE(e.reason.find("no refused elements"), std::string::npos) << e.reason;
  EXPECT_EQ(OutOfLine(**b), 0u) << "b's own write stored the field in line";
  auto released = (*b)->ReleaseAllQuarantined();
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  EXPECT_EQ(*released, 1u);
  auto q = (*b)->Quarantined();
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->empty());
  auto got = (*b)->Get("docs", "big");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->fields.at("parts").set.size(), 6u);
  EXPECT_EQ(OutOfLine(**b), 1u);
  EXPECT_EQ(Pending(**b), 0u);
  (*b)->SetWritePolicy(nullptr);
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  ExpectSameDigests(**a, **b);
}

// A replica that may not decode so large a state whole, in a session whose admission
// judges values (so not outlines): the state is held in its pieces, never decoded,
// to be released by hand; JudgeHeld leaves it.
TEST(HeldPieces, AStateTooLargeToDecodeWholeIsHeldWhereItWouldBe) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  WriteBig(**a, 0);
  (*b)->SetMaxWholeState(1 << 20);
  SyncRun run;
  run.oy.admit = [](const engine::FieldDelta&, const FieldState*) { return Admission::kAccept; };
  engine::SessionStats stats;
  run.y_stats = &stats;
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  EXPECT_EQ(stats.pieces_held, 1u);
  EXPECT_EQ(stats.pieces_decoded, 0u);
  EXPECT_TRUE((*b)->Get("docs", "other").ok());
  QuarantineEntry e = OnlyHeld(**b);
  ASSERT_TRUE(e.pieces.has_value());
  EXPECT_FALSE(e.held);
  EXPECT_NE(e.reason.find("judged by its values"), std::string::npos) << e.reason;
  auto j = (*b)->JudgeHeld(
      [](const engine::FieldDelta&, const FieldState*) { return Admission::kAccept; });
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->applied, 0u);
  ASSERT_TRUE((*b)->ReleaseQuarantined(e.id).ok());
  ExpectSameDigests(**a, **b);
  EXPECT_EQ(OutOfLine(**b), 1u);
  // No larger than that, a state judged by its values is decoded whole, as before.
  auto d = CreateReplica(tmp / "d");
  ASSERT_TRUE(d.ok());
  run.oy.judges_outlines = [](const std::string&) { return false; };
  ASSERT_TRUE(SyncOnce(**a, **d, run).ok());
  EXPECT_EQ(stats.pieces_held, 0u);
  EXPECT_EQ(stats.pieces_decoded, 1u);
  ExpectSameDigests(**a, **d);
  auto none = (*d)->Quarantined();
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // Where the admission judges outlines, it goes as it came.
  auto c = CreateReplica(tmp / "c");
  ASSERT_TRUE(c.ok());
  (*c)->SetMaxWholeState(1 << 20);
  run.oy.judges_outlines = [](const std::string&) { return true; };
  ASSERT_TRUE(SyncOnce(**a, **c, run).ok());
  EXPECT_EQ(stats.pieces_held, 0u);
  ExpectSameDigests(**a, **c);
}

// A held state whose field comes to hold it whole through another peer is dropped, with
// its chunks' entry, at the next merging CaughtUp: released, it would change nothing.
TEST(HeldPieces, AHeldStateTheFieldCameToHoldIsDropped) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  auto c = CreateReplica(tmp / "c");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  WriteBig(**a, 0);
  SyncRun run = HoldingBig();
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  ASSERT_TRUE(OnlyHeld(**b).pieces.has_value());
  ASSERT_TRUE(SyncOnce(**a, **c).ok());
  ASSERT_TRUE(SyncOnce(**c, **b).ok());
  auto left = (*b)->Quarantined();
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  ExpectSameDigests(**a, **b);
  EXPECT_EQ(OutOfLine(**b), 1u);
}

}  // namespace
}  // namespace tandem::storage
