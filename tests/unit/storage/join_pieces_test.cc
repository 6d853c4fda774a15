// Large field states that arrive in pieces joined with the field's state here a part at
// a time (Replica::JoinPieces): both sides wrote the field, or what either collected cuts
// it; the join is judged against ours as it stood, and stored in its place only while
// the field stays there.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "../../integration/process.h"
#include "../engine/busy_store.h"
#include "large_states.h"
#include "sync_once.h"
#include "tandem/engine/codec.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::FieldKey;
using engine::FieldState;
using engine::Replica;
using engine::Value;
using engine::VersionVector;

// Both sides wrote a large set: each joins the other's state with its own a part at a
// time, into chunks written a few transactions at a time, and keeps the join out of line.
// Both end with the same state, nothing pending, and every chunk of it listed.
TEST(DeltaRead, ALargeStateBothSidesWroteIsJoinedAPartAtATime) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 12; ++i)  // 3.6 MB: seven chunks, two transactions of the join
    ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'000, i)}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  ASSERT_EQ(OutOfLine(**b), 1u);
  ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'001, 40)}).ok());
  ASSERT_TRUE((*b)->Add("docs", "big", "parts", Value{Text(300'002, 41)}).ok());
  ASSERT_TRUE((*b)->Remove("docs", "big", "parts", Value{Text(300'000, 2)}).ok());
  uint64_t joined = 0;
  ASSERT_TRUE(SyncOnce(**a, **b, nullptr, &joined).ok());
  EXPECT_EQ(joined, 2u) << "each side joined the other's";
  auto ra = (*a)->Get("docs", "big");
  auto rb = (*b)->Get("docs", "big");
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(*ra, *rb);
  EXPECT_EQ(ra->fields.at("parts").set.size(), 13u);
  EXPECT_EQ(OutOfLine(**a), 1u);
  EXPECT_EQ(OutOfLine(**b), 1u);
  EXPECT_EQ(Pending(**a), 0u);
  EXPECT_EQ(Pending(**b), 0u);
  ExpectSameDigests(**a, **b);
  // Collection frees what the joins replaced and keeps what they hold.
  for (Replica* r : {a->get(), b->get()}) {
    EXPECT_GE(CollectHeld(*r).chunks_freed, 1u);
    auto got = r->Get("docs", "big");
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, *ra);
  }
  // Synced again, nothing more is joined or changed.
  ASSERT_TRUE(SyncOnce(**a, **b, nullptr, &joined).ok());
  EXPECT_EQ(joined, 0u);
  b->reset();
  auto reopened = OpenReplica(tmp / "b");
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  auto again = (*reopened)->Get("docs", "big");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *ra);
}

// The elements of a set field of `r`, by their sizes and first bytes.
std::set<std::string> ElementsOf(Replica& r, const std::string& record, const std::string& f) {
  std::set<std::string> out;
  auto got = r.GetState("docs", record);
  EXPECT_TRUE(got.ok()) << got.status().ToString();
  if (!got.ok() || !got->fields.count(f)) return out;
  for (const auto& [e, dots] : got->fields.at(f).elements) {
    const auto& t = std::get<std::string>(e);
    out.insert(std::to_string(t.size()) + ":" + t.substr(0, 4));
  }
  return out;
}

// The deleter collects a record holding a large set and writes the set anew (a context
// that no longer shows the removal). A stale replica, with an offline add of its own,
// offers its state of the set in pieces: the deleter joins it with its own a part at a
// time, cutting what it collected. The stale replica rebases on the deleter and drops the
// same from its own as it joins the deleter's state, also a part at a time. Both end with
// the new elements and the offline add, and nothing collected comes back.
TEST(DeltaRead, WhatWasCollectedStaysGoneWhenALargeStateIsJoinedInPieces) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  auto stale = CreateReplica(tmp / "stale");
  ASSERT_TRUE(a.ok() && b.ok() && stale.ok());
  for (int i = 0; i < 4; ++i)  // 1.2 MB: in pieces
    ASSERT_TRUE((*b)->Add("docs", "r1", "parts", Value{Text(300'000, i)}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  ASSERT_TRUE(SyncOnce(**a, **stale).ok());
  ASSERT_TRUE((*a)->Delete("docs", "r1").ok());
  ASSERT_TRUE((*a)->Put("docs", "r8", {{"x", Value{int64_t{1}}}}).ok());  // newest: waits
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  auto va = (*a)->Meta();
  auto vb = (*b)->Meta();
  ASSERT_TRUE(va.ok() && vb.ok());
  const VersionVector everyone = VersionVector::Meet(va->vv, vb->vv);
  for (Replica* r : {a->get(), b->get()}) {
    Replica::CollectStats stats;
    ASSERT_TRUE(r->Collect(everyone, &stats).ok());
    EXPECT_GE(stats.collected, 1u);
  }
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE((*a)->Add("docs", "r1", "parts", Value{Text(300'001, 10 + i)}).ok());
  ASSERT_TRUE((*a)->Put("docs", "r9", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*stale)->Add("docs", "r1", "parts", Value{Text(300'002, 20)}).ok());
  uint64_t joined = 0;
  engine::SessionStats st;
  SyncRun run;
  run.joined = &joined;
  run.x_stats = &st;
  ASSERT_TRUE(SyncOnce(**stale, **a, run).ok());
  EXPECT_TRUE(st.rebased);
  EXPECT_EQ(joined, 2u) << "each side's join made a part at a time";
  std::set<std::string> want = {"300002:" + Text(4, 20)};
  for (int i = 0; i < 4; ++i) want.insert("300001:" + Text(4, 10 + i));
  EXPECT_EQ(ElementsOf(**a, "r1", "parts"), want);
  EXPECT_EQ(ElementsOf(**stale, "r1", "parts"), want);
  ExpectSameDigests(**a, **stale);
  EXPECT_EQ(OutOfLine(**a), 1u);
  EXPECT_EQ(OutOfLine(**stale), 1u);
  EXPECT_EQ(Pending(**a), 0u);
  EXPECT_EQ(Pending(**stale), 0u);
  // b, synced with either, ends the same.
  ASSERT_TRUE(SyncOnce(**b, **stale).ok());
  EXPECT_EQ(ElementsOf(**b, "r1", "parts"), want);
  ExpectSameDigests(**a, **b);
}

// Replicas a and b, b's store hooked (BusyStore), with a large set written on a and
// synced to b.
struct HookedPair {
  std::unique_ptr<Replica> a, b;
  engine::BusyStore* hooks = nullptr;
};
void MakeHookedPair(const testing::TempDir& dir, HookedPair* p) {
  auto a = CreateReplica(dir / "a");
  auto store = CreateStore(dir / "b");
  ASSERT_TRUE(a.ok() && store.ok());
  p->a = std::move(*a);
  auto busy = std::make_unique<engine::BusyStore>(std::move(*store));
  p->hooks = busy.get();
  p->b = std::make_unique<Replica>(std::move(busy), SystemClockMs, Blake2b256Parts);
  for (int i = 0; i < 6; ++i)  // 1.8 MB: in pieces
    ASSERT_TRUE(p->a->Add("docs", "big", "parts", Value{Text(300'000, i)}).ok());
  ASSERT_TRUE(SyncOnce(*p->a, *p->b).ok());
}

// Calls `fn` each time a join on the hooked store starts its second pass: it opens ours
// checked, a window long, at the first; unchecked, from its start, at the second.
void AtJoinSecondPass(engine::BusyStore& hooks, std::function<void()> fn) {
  auto first_pass = std::make_shared<bool>(false);
  hooks.before_read_delta = [first_pass, fn](uint64_t offset, size_t n, bool check) {
    if (check && n > 0) *first_pass = true;
    if (*first_pass && !check && offset == 0 && n > 0) fn();
  };
}

// A write to the field between the two passes of its join with a large state in pieces
// (a local writer, say) makes the join fail as it is read again: it is made again, with
// that write, and still a part at a time.
TEST(DeltaRead, AJoinInPiecesTheFieldIsWrittenDuringIsMadeAgain) {
  testing::TempDir tmp;
  HookedPair p;
  ASSERT_NO_FATAL_FAILURE(MakeHookedPair(tmp, &p));
  std::unique_ptr<Replica>& a = p.a;
  Replica& b = *p.b;
  ASSERT_TRUE(a->Add("docs", "big", "parts", Value{Text(300'001, 40)}).ok());
  ASSERT_TRUE(b.Add("docs", "big", "parts", Value{Text(300'002, 41)}).ok());
  int written = 0;
  AtJoinSecondPass(*p.hooks, [&] {
    if (written++ == 0) {
      ASSERT_TRUE(b.Add("docs", "big", "parts", Value{Text(300'003, 42)}).ok());
    }
  });
  uint64_t joined = 0;
  ASSERT_TRUE(SyncOnce(*a, b, nullptr, &joined).ok());
  EXPECT_GE(written, 2) << "the write went in between, and the join was read again";
  EXPECT_EQ(joined, 2u) << "b's join made again, a part at a time";
  p.hooks->before_read_delta = nullptr;
  ASSERT_TRUE(SyncOnce(*a, b).ok());
  std::set<std::string> want;
  for (int i = 0; i < 6; ++i) want.insert("300000:" + Text(4, i));
  for (int i = 0; i < 3; ++i) want.insert(std::to_string(300'001 + i) + ":" + Text(4, 40 + i));
  EXPECT_EQ(ElementsOf(b, "big", "parts"), want);
  EXPECT_EQ(ElementsOf(*a, "big", "parts"), want);
  ExpectSameDigests(*a, b);
  EXPECT_EQ(Pending(b), 0u);
}

// The policy changes while the join is made (the peer's writer is revoked, say): the
// state that came is admitted again against the same state here when the join is to be
// stored, is refused, and nothing of it is taken.
TEST(DeltaRead, AJoinInPiecesIsStoredOnlyIfWhatCameIsStillAdmitted) {
  testing::TempDir tmp;
  HookedPair p;
  ASSERT_NO_FATAL_FAILURE(MakeHookedPair(tmp, &p));
  std::unique_ptr<Replica>& a = p.a;
  Replica& b = *p.b;
  auto ma = a->Meta();
  ASSERT_TRUE(ma.ok());
  const engine::ReplicaId writer = ma->id;
  const uint64_t cutoff = ma->vv.Get(writer);
  ASSERT_TRUE(a->Add("docs", "big", "parts", Value{Text(300'001, 40)}).ok());
  ASSERT_TRUE(b.Add("docs", "big", "parts", Value{Text(300'002, 41)}).ok());
  bool revoked = false;
  AtJoinSecondPass(*p.hooks, [&] { revoked = true; });
  SyncRun run;
  run.oy.judges_outlines = [](const std::string&) { return true; };
  run.oy.admit = [&](const engine::FieldDelta& d, const FieldState* ours) {
    return revoked && engine::ReliesOnEventsAfter(d.state, ours, writer, cutoff)
               ? engine::Admission::kRefuse
               : engine::Admission::kAccept;
  };
  engine::SessionStats stats;
  run.y_stats = &stats;
  ASSERT_TRUE(SyncOnce(*a, b, run).ok());
  ASSERT_TRUE(revoked) << "the policy changed while the join was made";
  EXPECT_EQ(stats.pieces_joined, 0u);
  EXPECT_EQ(stats.fields_refused, 1u);
  EXPECT_EQ(stats.pieces_decoded, 0u);
  std::set<std::string> want;
  for (int i = 0; i < 6; ++i) want.insert("300000:" + Text(4, i));
  want.insert("300002:" + Text(4, 41));
  EXPECT_EQ(ElementsOf(b, "big", "parts"), want) << "nothing of the revoked write";
  EXPECT_EQ(Pending(b), 0u);
}

// A join made of a state in pieces and the field's state here takes that state's place
// only while the field is as it was when the join was made: a write since (its log
// position moved) makes the join stale, applied nowhere, and the write stays.
TEST(DeltaRead, AJoinInPiecesIsNotAppliedOverAWriteMadeSinceItWasMade) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'000, i)}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'001, 40)}).ok());
  ASSERT_TRUE((*b)->Add("docs", "big", "parts", Value{Text(300'002, 41)}).ok());
  // a's state, held by b in pieces as a session would hold them.
  auto theirs = (*a)->GetState("docs", "big");
  auto peer = (*a)->Meta();
  ASSERT_TRUE(theirs.ok() && peer.ok());
  const FieldKey key{"docs", "big", "parts"};
  auto bytes = engine::EncodeDelta(key, theirs->fields.at("parts"));
  ASSERT_TRUE(bytes.ok());
  uint64_t held = 0;
  for (; held + engine::kBlobChunkBytes < bytes->size(); held += engine::kBlobChunkBytes)
    ASSERT_TRUE((*b)->HoldPiece(peer->id, {0, bytes->size(), held, {}},
                                std::string_view(*bytes).substr(held, engine::kBlobChunkBytes))
                    .ok());
  const std::string last = bytes->substr(held);
  auto came = (*b)->OutlinePieces(peer->id, held, last, {});
  ASSERT_TRUE(came.ok()) << came.status().ToString();
  const engine::AdmitFn all = [](const engine::FieldDelta&, const FieldState*) {
    return engine::Admission::kAccept;
  };
  // Applied as it came, it asks for the join, of b's state as it is now.
  const Status first = (*b)->ApplyBatch(peer->id, {*came}, 0, all);
  ASSERT_EQ(first.code(), Code::kUnsupported) << first.ToString();
  ASSERT_TRUE(came->pieces->whole && came->pieces->joins);
  auto joined = (*b)->JoinPieces(*came);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  ASSERT_TRUE(joined->pieces->joined && joined->pieces->changes_ours);
  ASSERT_TRUE((*b)->Add("docs", "big", "parts", Value{Text(300'003, 42)}).ok());
  const Status st = (*b)->ApplyBatch(peer->id, {*joined}, 0, all);
  EXPECT_EQ(st.code(), Code::kUnsupported) << st.ToString();
  EXPECT_TRUE(joined->pieces->stale);
  std::set<std::string> want;
  for (int i = 0; i < 6; ++i) want.insert("300000:" + Text(4, i));
  for (int i = 2; i < 4; ++i) want.insert(std::to_string(300'000 + i) + ":" + Text(4, 39 + i));
  EXPECT_EQ(ElementsOf(**b, "big", "parts"), want) << "the write stays, nothing of a's came";
  // Made again of b's state as it was judged, it fails; judged again, it holds that
  // write, and takes the state's place.
  EXPECT_EQ((*b)->JoinPieces(*came).status().code(), Code::kBusy);
  ASSERT_EQ((*b)->ApplyBatch(peer->id, {*came}, 0, all).code(), Code::kUnsupported);
  auto again = (*b)->JoinPieces(*came);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_TRUE((*b)->ApplyBatch(peer->id, {*again}, 0, all).ok());
  want.insert("300001:" + Text(4, 40));
  EXPECT_EQ(ElementsOf(**b, "big", "parts"), want);
  EXPECT_EQ(OutOfLine(**b), 1u);
}

// A state in pieces that admission leaves out, refuses or holds (a session that judges
// outlines: a revoked writer's, say) is judged on its outline and applies nothing: it is
// never decoded whole, and the pieces go. One held is kept in the quarantine in pieces.
TEST(DeltaRead, AStateInPiecesLeftOutRefusedOrHeldIsNeverDecodedWhole) {
  using engine::Admission;
  for (const Admission verdict : {Admission::kRefuse, Admission::kFilter, Admission::kHold}) {
    testing::TempDir tmp;
    auto a = CreateReplica(tmp / "a");
    auto b = CreateReplica(tmp / "b");
    ASSERT_TRUE(a.ok() && b.ok());
    for (int i = 0; i < 4; ++i)  // 1.2 MB: in pieces
      ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'000, i)}).ok());
    ASSERT_TRUE((*a)->Put("docs", "other", {{"v", Value{int64_t{1}}}}).ok());
    SyncRun run;
    run.oy.judges_outlines = [](const std::string&) { return true; };
    run.oy.admit = [verdict](const engine::FieldDelta& d, const FieldState*) {
      return d.key.record == "big" ? verdict : Admission::kAccept;
    };
    engine::SessionStats stats;
    run.y_stats = &stats;
    ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
    const bool held = verdict == Admission::kHold;
    EXPECT_EQ(stats.fields_refused, 1u);
    EXPECT_EQ(stats.fields_quarantined, held ? 1u : 0u);
    EXPECT_EQ(stats.pieces_decoded, 0u);
    EXPECT_EQ((*b)->Get("docs", "big").status().code(), Code::kNotFound);
    EXPECT_TRUE((*b)->Get("docs", "other").ok());
    auto peer = (*b)->Peer((*a)->Meta()->id);
    ASSERT_TRUE(peer.ok());
    EXPECT_FALSE(peer->pieces) << "dropped";
    EXPECT_EQ(Pending(**b), 0u);
    auto q = (*b)->Quarantined();  // held in its pieces
    ASSERT_TRUE(q.ok());
    ASSERT_EQ(q->size(), held ? 1u : 0u);
    if (held) {
      EXPECT_TRUE((*q)[0].pieces.has_value());
    }
  }
}

// A device whose own writes the group refuses (past its cutoff) still holds them, and
// its sessions refuse states that rely on them. A large state that comes from a member is
// joined with its own a part at a time: the join holds its refused write, and is not
// judged again (what came was judged as it came), so the member's write is taken.
TEST(DeltaRead, AJoinInPiecesIsNotJudgedForWhatOursHolds) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 4; ++i)  // 1.2 MB: in pieces
    ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'000, i)}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  auto mb = (*b)->Meta();
  ASSERT_TRUE(mb.ok());
  const engine::ReplicaId limited = mb->id;
  const uint64_t cutoff = mb->vv.Get(limited);
  ASSERT_TRUE((*b)->Add("docs", "big", "parts", Value{Text(300'001, 40)}).ok());
  ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'002, 41)}).ok());
  SyncRun run;
  run.oy.judges_outlines = [](const std::string&) { return true; };
  run.oy.admit = [&](const engine::FieldDelta& d, const FieldState* ours) {
    return engine::ReliesOnEventsAfter(d.state, ours, limited, cutoff) ? engine::Admission::kRefuse
                                                                       : engine::Admission::kAccept;
  };
  engine::SessionStats stats;
  run.y_stats = &stats;
  ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
  EXPECT_EQ(stats.pieces_joined, 1u);
  EXPECT_EQ(stats.fields_refused, 0u);
  EXPECT_EQ(stats.pieces_decoded, 0u);
  std::set<std::string> want;
  for (int i = 0; i < 4; ++i) want.insert("300000:" + Text(4, i));
  for (int i = 1; i < 3; ++i) want.insert(std::to_string(300'000 + i) + ":" + Text(4, 39 + i));
  EXPECT_EQ(ElementsOf(**b, "big", "parts"), want);
  EXPECT_EQ(OutOfLine(**b), 1u);
}

// A refused state in pieces may be the only copy of a member's write beside a revoked
// writer's: the refusal records the member's events for the watermark to stop below
// them (Replica::NoteRefused), the same whether it was judged on its outline or decoded
// whole.
TEST(DeltaRead, ARefusalOnTheOutlineRecordsWhatADecodedOneWould) {
  for (const bool outlines : {true, false}) {
    testing::TempDir tmp;
    auto a = CreateReplica(tmp / "a");
    auto b = CreateReplica(tmp / "b");
    auto c = CreateReplica(tmp / "c");
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    for (int i = 0; i < 4; ++i)  // 1.2 MB: in pieces
      ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'000, i)}).ok());
    ASSERT_TRUE(SyncOnce(**a, **b).ok());
    ASSERT_TRUE(SyncOnce(**a, **c).ok());
    auto mc = (*c)->Meta();
    ASSERT_TRUE(mc.ok());
    const engine::ReplicaId revoked = mc->id;
    const uint64_t cutoff = mc->vv.Get(revoked);
    ASSERT_TRUE((*c)->Add("docs", "big", "parts", Value{Text(300'001, 40)}).ok());
    ASSERT_TRUE(SyncOnce(**c, **a).ok());
    ASSERT_TRUE((*a)->Add("docs", "big", "parts", Value{Text(300'002, 41)}).ok());
    auto ma = (*a)->Meta();
    ASSERT_TRUE(ma.ok());
    SyncRun run;
    if (outlines) run.oy.judges_outlines = [](const std::string&) { return true; };
    run.oy.admit = [&](const engine::FieldDelta& d, const FieldState* ours) {
      return engine::ReliesOnEventsAfter(d.state, ours, revoked, cutoff)
                 ? engine::Admission::kRefuse
                 : engine::Admission::kAccept;
    };
    engine::SessionStats stats;
    run.y_stats = &stats;
    ASSERT_TRUE(SyncOnce(**a, **b, run).ok());
    EXPECT_EQ(stats.fields_refused, 1u);
    EXPECT_EQ(stats.pieces_decoded, outlines ? 0u : 1u);
    auto txn = (*b)->store().BeginRead();
    ASSERT_TRUE(txn.ok());
    std::optional<VersionVector> unseen;
    ASSERT_TRUE((*txn)->GetRefused({"docs", "big", "parts"}, &unseen).ok());
    ASSERT_TRUE(unseen.has_value()) << "outlines " << outlines;
    VersionVector want;
    want.Raise(ma->id, ma->vv.Get(ma->id));  // the member's write, not the revoked one's
    EXPECT_EQ(*unseen, want) << "outlines " << outlines;
  }
}

}  // namespace
}  // namespace tandem::storage
