// Field states larger than a batch: carried in pieces, withheld while over the limit,
// resumed after a cut; over in-memory replicas and an in-process link.
#include <gtest/gtest.h>

#include <set>

#include "busy_store.h"
#include "sync_harness.h"
#include "tandem/engine/sync.h"

namespace tandem::engine {
namespace {

// A field state larger than any batch (concurrent large writes keep every sibling, and a
// set keeps every element) travels in pieces: it never blocks the fields after it.
TEST(Sync, AFieldStateLargerThanABatchTravelsInPiecesAndBlocksNothing) {
  Node a(1), b(2), c(3), d(4);
  Node* nodes[] = {&a, &b, &c, &d};
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(
        nodes[i]
            ->replica.Put("docs", "big", {{"body", Value{std::string(300 << 10, char('a' + i))}}})
            .ok());
  // Ten 100 KB elements of one set, from one replica.
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(
        a.replica.Add("docs", "set", "photos", Value{std::string(100'000, char('0' + i))}).ok());
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 4; ++j) {
      Link link(*nodes[i], *nodes[j]);
      ASSERT_TRUE(link.Run().ok()) << i << "-" << j;
      EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    }
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 4; ++j) {
      Link link(*nodes[i], *nodes[j]);
      ASSERT_TRUE(link.Run().ok());
    }
  for (auto* n : nodes) {
    EXPECT_EQ(n->Dump(), a.Dump());
    auto conflicts = n->replica.Conflicts("docs", "big");
    ASSERT_TRUE(conflicts.ok() && conflicts->size() == 1u);
    EXPECT_EQ(conflicts->at(0).second.size(), 4u) << "four siblings";
    EXPECT_EQ(n->replica.Get("docs", "set")->fields.at("photos").set.size(), 10u);
  }
  // What comes after the large field in the log still flows, live.
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  ASSERT_TRUE(a.replica.Put("docs", "small", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(a.replica.Add("docs", "set", "photos", Value{std::string(100'000, 'z')}).ok());
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{2}}}}).ok());
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_TRUE(b.replica.Get("docs", "after").ok());
  EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 11u);
  EXPECT_GE(link.sa.stats().batches_sent, 3u) << "the set went in pieces";
  EXPECT_EQ(a.Dump(), b.Dump());
}

// The large set elements of the withheld-state tests: photo i is 400 KB of one letter,
// so four of them make a field state over a 1 MiB limit and one fits.
Value Photo(int i) { return Value{std::string(400'000, char('a' + i))}; }
void AddPhotos(Node& n, int count) {
  for (int i = 0; i < count; ++i)
    ASSERT_TRUE(n.replica.Add("docs", "set", "photos", Photo(i)).ok());
}
void RemovePhotos(Node& n, int count) {
  for (int i = 0; i < count; ++i)
    ASSERT_TRUE(n.replica.Remove("docs", "set", "photos", Photo(i)).ok());
}

// A link cut between pieces loses nothing: the cursor had not moved, so the next
// session sends the state again from its first piece.
TEST(Sync, ALinkCutBetweenPiecesResendsTheStateWhole) {
  Node a(1);
  AddPhotos(a, 4);
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{1}}}}).ok());
  for (size_t cut = 3; cut < 12; ++cut) {
    Node fresh(static_cast<uint8_t>(10 + cut));
    Link first(a, fresh);
    Status cut_st = first.Run(cut);
    ASSERT_TRUE(cut_st.ok()) << cut_st.ToString();
    Link again(a, fresh);
    ASSERT_TRUE(again.Run().ok()) << "cut after " << cut;
    EXPECT_EQ(a.Dump(), fresh.Dump()) << "cut after " << cut;
  }
}

// Pieces from a hostile peer: out of order, inconsistent, too large, interrupted, or
// not a field state once read together. Each ends the session and applies nothing.
TEST(Sync, BadPiecesEndTheSessionAndApplyNothing) {
  FieldState f;
  ApplyPut(f, Dot{Rid(1), 1}, MakeHlc(1, 0), Value{std::string(600 << 10, 'x')});
  const std::string whole = EncodeDelta(FieldKey{"c", "r", "f"}, f).value();
  const BlobHash digest = storage::Blake2b256(whole);
  auto piece = [&](uint64_t from, uint64_t cursor, uint64_t total, uint64_t offset,
                   std::string bytes, BlobHash d) {
    DeltaBatch b{{}, from, cursor};
    b.piece = StatePiece{total, offset, std::move(bytes), d};
    return Message{b};
  };
  const size_t k = kPieceBytes;
  const std::string head = whole.substr(0, k), tail = whole.substr(k);
  const uint64_t n = whole.size();
  BlobHash other = digest;
  other[0] ^= 1;
  struct Case {
    const char* what;
    std::vector<Message> msgs;
  };
  std::vector<Case> cases = {
      {"a gap", {piece(0, 0, n, 0, head, digest), piece(0, 5, n, k + 1, tail.substr(1), digest)}},
      {"starts past 0", {piece(0, 5, n, k, tail, digest)}},
      {"total changes", {piece(0, 0, n, 0, head, digest), piece(0, 5, n + 1, k, tail, digest)}},
      {"digest changes", {piece(0, 0, n, 0, head, digest), piece(0, 5, n, k, tail, other)}},
      {"not the digest's state", {piece(0, 0, n, 0, head, other), piece(0, 5, n, k, tail, other)}},
      {"past the total", {piece(0, 0, n, 0, head, digest), piece(0, 5, n, k, tail + "x", digest)}},
      {"a short piece before the last",
       {piece(0, 0, n, 0, head.substr(0, 500), digest),
        piece(0, 5, n, 500, whole.substr(500), digest)}},
      {"too large in all", {piece(0, 0, kMaxPieceTotal + 1, 0, head, digest)}},
      {"empty", {piece(0, 0, n, 0, "", digest)}},
      {"an early piece moves the cursor", {piece(0, 3, n, 0, head, digest)}},
      {"a batch in between",
       {piece(0, 0, n, 0, head, digest), Message{DeltaBatch{{}, 0, 2}},
        piece(0, 5, n, k, tail, digest)}},
      {"CaughtUp in between", {piece(0, 0, n, 0, head, digest), Message{CaughtUp{0, {}, {}}}}},
      {"not a field state", {piece(0, 0, 6, 0, "abcdef", {})}},
      // Stored as it came, a last piece longer than a chunk would not read back.
      {"a last piece longer than the others", {piece(0, 5, n, 0, whole, digest)}},
      {"a bad key", {}},  // below
  };
  {
    const std::string bad_key = EncodeDelta(FieldKey{"c", "", "f"}, f).value();
    cases.back().msgs = {piece(0, 5, bad_key.size(), 0, bad_key, {})};
  }
  for (const auto& c : cases) {
    Node b(2);
    Session s(b.replica, {});
    std::vector<Message> out;
    ASSERT_TRUE(s.Start(&out).ok());
    ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, true, {}}, &out).ok());
    Status st;
    for (const auto& m : c.msgs) {
      st = s.Receive(m, &out);
      if (!st.ok()) break;
    }
    EXPECT_FALSE(st.ok()) << c.what;
    EXPECT_FALSE(b.replica.Get("c", "r").ok()) << c.what;
  }
  // And the same pieces, in order, apply (without a digest too, as older builds send).
  for (const BlobHash& d : {digest, BlobHash{}}) {
    Node b(2);
    Session s(b.replica, {});
    std::vector<Message> out;
    ASSERT_TRUE(s.Start(&out).ok());
    ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, true, {}}, &out).ok());
    ASSERT_TRUE(s.Receive(piece(0, 0, n, 0, head, d), &out).ok());
    ASSERT_TRUE(s.Receive(piece(0, 5, n, k, tail, d), &out).ok());
    EXPECT_TRUE(b.replica.Get("c", "r").ok());
  }
}

// The largest value a field may hold, of varied bytes.
std::string LargestValue() {
  std::string big(kMaxValueBytes, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  return big;
}

// Sessions from a to b cut ever later, until b holds pieces of a state: how much, in
// *held.
void CutInPieces(Node& a, Node& b, uint64_t* held) {
  for (size_t cut = 6; *held == 0; ++cut) {
    ASSERT_LT(cut, 60u);
    Link link(a, b);
    ASSERT_TRUE(link.Run(cut).ok());
    auto p = b.replica.Peer(a.replica.Meta()->id);
    ASSERT_TRUE(p.ok());
    if (p->pieces) *held = p->pieces->held;
  }
}

// A cut between pieces: the next session resumes at the first piece not stored, and a
// 16 MiB value (the largest) arrives whole.
TEST(Sync, PiecesResumeAfterACutAndTheLargestValueSyncs) {
  Node a(1), b(2);
  const std::string big = LargestValue();
  ASSERT_TRUE(a.replica.Put("docs", "big", {{"body", Value{big}}}).ok());
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{1}}}}).ok());
  uint64_t held = 0;
  ASSERT_NO_FATAL_FAILURE(CutInPieces(a, b, &held));
  EXPECT_FALSE(b.replica.Get("docs", "big").ok());
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  auto got = b.replica.Get("docs", "big");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(SameValue(got->fields.at("body").scalar, Value{big}));
  EXPECT_TRUE(b.replica.Get("docs", "after").ok());
  // Only what was not held came again: the pieces before `held` were not resent.
  EXPECT_LE(link.sa.stats().batches_sent, (kMaxValueBytes - held) / kPieceBytes + 4);
  EXPECT_FALSE(b.replica.Peer(a.replica.Meta()->id)->pieces);
}

// After a filtered session the next unfiltered one reads the peer's log from 0; cut in
// the pieces of a large state, it must still resume there, not start over from 0 (the
// cursor it left is past everything the filter had left out).
TEST(Sync, PiecesResumeAfterACutInThePassThatFollowsAFilteredSession) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("notes", "n", {{"x", Value{int64_t{1}}}}).ok());
  SessionOptions none;
  none.accept = CollectionFilter::Only({"other"});
  {
    Link link(a, b, {}, none);
    ASSERT_TRUE(link.Run().ok());
  }
  ASSERT_TRUE(b.replica.Peer(a.replica.Meta()->id)->filtered);
  const std::string big = LargestValue();
  ASSERT_TRUE(a.replica.Put("docs", "big", {{"body", Value{big}}}).ok());
  uint64_t held = 0;
  ASSERT_NO_FATAL_FAILURE(CutInPieces(a, b, &held));
  EXPECT_FALSE(b.replica.Peer(a.replica.Meta()->id)->filtered)
      << "the unfiltered pass reached past the filtered session's cursor";
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  EXPECT_TRUE(SameValue(b.replica.Get("docs", "big")->fields.at("body").scalar, Value{big}));
  EXPECT_TRUE(b.replica.Get("notes", "n").ok());
  EXPECT_LE(link.sa.stats().batches_sent, (kMaxValueBytes - held) / kPieceBytes + 4);
  EXPECT_EQ(b.replica.Meta()->vv, a.replica.Meta()->vv);
}

// Pieces held that storage has since damaged end the session that would use them, apply
// nothing, and are forgotten: the next session sends the state whole, and storing its
// pieces again mends the damaged chunk.
TEST(Sync, DamagedHeldPiecesAreRefusedAndTheStateComesAgain) {
  Node a(1), b(2);
  const std::string big(3 * kPieceBytes + 100, 'q');
  ASSERT_TRUE(a.replica.Put("docs", "big", {{"body", Value{big}}}).ok());
  const ReplicaId from = a.replica.Meta()->id;
  for (size_t cut = 6; !b.replica.Peer(from)->pieces; ++cut) {
    ASSERT_LT(cut, 30u);
    Link link(a, b);
    ASSERT_TRUE(link.Run(cut).ok());
  }
  {
    auto txn = b.replica.store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    std::optional<BlobInfo> held;
    ASSERT_TRUE((*txn)->GetBlob(storage::Blake2b256("tandem pieces " + from.Hex()), &held).ok());
    ASSERT_TRUE(held && !held->chunks.empty());
    ASSERT_TRUE((*txn)->PutChunk(held->chunks[0], std::string(kPieceBytes, 'z')).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  Link damaged(a, b);
  const Status st = damaged.Run();
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_FALSE(b.replica.Get("docs", "big").ok());
  EXPECT_FALSE(b.replica.Peer(from)->pieces);
  Link again(a, b);
  const Status st2 = again.Run();
  ASSERT_TRUE(st2.ok()) << st2.ToString();
  auto got = b.replica.Get("docs", "big");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(SameValue(got->fields.at("body").scalar, Value{big}));
}

// A field's state as stored.
std::optional<FieldState> StateOf(Node& n, const FieldKey& key) {
  std::optional<FieldState> out;
  auto txn = n.replica.store().BeginRead();
  if (!txn.ok() || !(*txn)->GetField(key, &out).ok()) return std::nullopt;
  return out;
}

// A peer whose build cannot take pieces gets every other field, and is never told it
// holds the one it could not take.
TEST(Sync, APeerThatTakesNoPiecesGetsEveryOtherField) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("docs", "before", {{"x", Value{int64_t{1}}}}).ok());
  AddPhotos(a, 4);
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{2}}}}).ok());
  Session s(a.replica, {});
  std::vector<Message> out;
  ASSERT_TRUE(s.Start(&out).ok());
  ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(2), {}, {}, false, {}}, &out).ok());
  out.clear();
  ASSERT_TRUE(s.Receive(SyncRequest{{}, 0}, &out).ok());
  std::set<std::string> sent;
  const CaughtUp* caught_up = nullptr;
  for (const auto& m : out) {
    if (const auto* b = std::get_if<DeltaBatch>(&m)) {
      EXPECT_FALSE(b->piece);
      for (const auto& d : b->deltas) sent.insert(d.key.record);
    }
    if (const auto* c = std::get_if<CaughtUp>(&m)) caught_up = c;
  }
  EXPECT_EQ(sent, (std::set<std::string>{"before", "after"}));
  ASSERT_NE(caught_up, nullptr);
  EXPECT_EQ(s.stats().fields_withheld, 1u);
  ASSERT_EQ(s.stats().withheld.size(), 1u);
  EXPECT_NE(s.stats().withheld[0].find("docs/set.photos"), std::string::npos);
  EXPECT_NE(s.stats().withheld[0].find("upgrade it"), std::string::npos);
  // The claim leaves the set's events out: the peer still lacks them, and says so.
  const std::optional<FieldState> set = StateOf(a, {"docs", "set", "photos"});
  ASSERT_TRUE(set);
  EXPECT_FALSE(caught_up->vv.Covers(set->ctx));
}

// A state in pieces with more markers and set elements than a receiver may outline is
// withheld as one too large is, named with its count, and the other fields go. Its
// outline, read with that bound, fails as the receiver's does.
TEST(Sync, AFieldStateOfTooManyItemsIsWithheld) {
  Node a(1), b(2);
  SessionOptions few;
  few.max_state_items = 4;
  AddPhotos(a, 4);  // 1.6 MB: in pieces; four elements and a marker, five items
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{2}}}}).ok());
  {
    Link link(a, b, few, few);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_EQ(link.sa.stats().fields_withheld, 1u);
    ASSERT_EQ(link.sa.stats().withheld.size(), 1u);
    EXPECT_NE(link.sa.stats().withheld[0].find("5 markers and set elements, more than the 4"),
              std::string::npos)
        << link.sa.stats().withheld[0];
  }
  EXPECT_TRUE(b.replica.Get("docs", "after").ok());
  EXPECT_FALSE(b.replica.Get("docs", "set").ok());
  const std::optional<FieldState> set = StateOf(a, {"docs", "set", "photos"});
  ASSERT_TRUE(set);
  EXPECT_FALSE(b.replica.Meta()->vv.Covers(set->ctx));
  // Whether the state's outline reads within `most` items (else it fails for that).
  auto within = [](const FieldState& s, uint64_t most) {
    auto bytes = EncodeDelta({"docs", "set", "photos"}, s);
    EXPECT_TRUE(bytes.ok());
    if (!bytes.ok()) return false;
    Reader r(*bytes);
    StateItems bound;
    bound.most = most;
    auto o = OutlineDelta(r, &bound);
    if (!o.ok()) {
      EXPECT_NE(o.status().message().find(kPastMostItems), std::string::npos);
    }
    return o.ok();
  };
  EXPECT_FALSE(within(*set, 4));
  EXPECT_TRUE(within(*set, 5));
  {
    Link link(a, b);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_withheld, 0u);
    EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 4u);
  }
  // An element added on both sides holds two dots, each an item: the bound counts them
  // as the element's dots are read.
  Node c(3);
  ASSERT_TRUE(c.replica.Add("docs", "set", "photos", Photo(0)).ok());
  {
    Link link(a, c);
    ASSERT_TRUE(link.Run().ok());
  }
  const std::optional<FieldState> both = StateOf(c, {"docs", "set", "photos"});
  ASSERT_TRUE(both);
  ASSERT_EQ(both->elements.size(), 4u);
  const uint64_t items = both->markers.size() + 5;  // one element with two dots
  EXPECT_FALSE(within(*both, items - 1));
  EXPECT_TRUE(within(*both, items));
}

// A field state over the limit of what syncs holds nothing else back, is never counted
// as held by the peer, and goes once it changes and fits.
TEST(Sync, AFieldStateOverTheLimitIsWithheldAndGoesOnceItFits) {
  Node a(1), b(2);
  SessionOptions small;
  small.max_state_bytes = 1 << 20;
  ASSERT_TRUE(a.replica.Put("docs", "before", {{"x", Value{int64_t{1}}}}).ok());
  AddPhotos(a, 4);
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{2}}}}).ok());
  {
    Link link(a, b, small, small);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_EQ(link.sa.stats().fields_withheld, 1u);
  }
  EXPECT_TRUE(b.replica.Get("docs", "before").ok());
  EXPECT_TRUE(b.replica.Get("docs", "after").ok());
  EXPECT_FALSE(b.replica.Get("docs", "set").ok());
  const std::optional<FieldState> set = StateOf(a, {"docs", "set", "photos"});
  ASSERT_TRUE(set);
  EXPECT_FALSE(b.replica.Meta()->vv.Covers(set->ctx)) << "b must not count the set held";
  // Every later session offers it again (its log entry stays ahead of b's cursor), and
  // claims it no more than the first...
  for (int round = 0; round < 2; ++round) {
    Link link(a, b, small, small);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_EQ(link.sa.stats().fields_withheld, 1u);
    EXPECT_FALSE(b.replica.Meta()->vv.Covers(set->ctx)) << "round " << round;
    EXPECT_FALSE(b.replica.Get("docs", "set").ok());
  }
  // ...so a third replica that hears of a from b alone does not skip it either...
  Node c(3);
  {
    Link link(b, c);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_FALSE(c.replica.Meta()->vv.Covers(set->ctx));
  }
  // ...and once the state fits, it goes as it is, unchanged.
  {
    Link link(a, b);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_withheld, 0u);
    EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 4u);
    EXPECT_TRUE(b.replica.Meta()->vv.Covers(set->ctx));
  }
  {
    Link link(b, c);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(c.replica.Get("docs", "set")->fields.at("photos").set.size(), 4u);
  }
  // A change that makes it fit under the small limit goes too.
  RemovePhotos(a, 3);
  Link link(a, b, small, small);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(link.sa.stats().fields_withheld, 0u);
  EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 1u);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// In a live session, a withheld state that changes and goes releases the peer's cursor
// and our claims: they move on as if it had never been withheld.
TEST(Sync, AWithheldStateThatGoesLaterInALiveSessionReleasesTheCursor) {
  Node a(1), b(2);
  AddPhotos(a, 4);
  ASSERT_TRUE(a.replica.Put("docs", "before", {{"x", Value{int64_t{1}}}}).ok());
  SessionOptions small;
  small.max_state_bytes = 1 << 20;
  Link link(a, b, small, small);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(link.sa.stats().fields_withheld, 1u);
  const ReplicaId aid = a.replica.Meta()->id;
  const uint64_t held_at = b.replica.Peer(aid)->cursor;
  RemovePhotos(a, 3);
  ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{2}}}}).ok());
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 1u);
  uint64_t last = 0;
  {
    auto txn = a.replica.store().BeginRead();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->LastLogSeq(&last).ok());
  }
  EXPECT_GT(last, held_at);
  EXPECT_EQ(b.replica.Peer(aid)->cursor, last);
  const std::optional<FieldState> set = StateOf(a, {"docs", "set", "photos"});
  ASSERT_TRUE(set);
  EXPECT_TRUE(b.replica.Meta()->vv.Covers(set->ctx));
  EXPECT_EQ(a.Dump(), b.Dump());
}

// A session that started over from 0 (the receiver's filter widened) and withheld a
// state leaves the peer's cursor before it, not where the narrower session took it.
TEST(Sync, ASessionThatStartedOverLeavesTheCursorBeforeAWithheldState) {
  Node a(1), b(2);
  AddPhotos(a, 4);
  ASSERT_TRUE(a.replica.Put("other", "r", {{"x", Value{int64_t{1}}}}).ok());
  SessionOptions narrow;
  narrow.accept = CollectionFilter::Only({"other"});
  ASSERT_TRUE(Link(a, b, {}, narrow).Run().ok());
  EXPECT_TRUE(b.replica.Get("other", "r").ok());
  EXPECT_FALSE(b.replica.Get("docs", "set").ok());
  SessionOptions small;
  small.max_state_bytes = 1 << 20;
  {
    Link link(a, b, small, small);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_withheld, 1u);
  }
  EXPECT_FALSE(b.replica.Get("docs", "set").ok());
  ASSERT_TRUE(Link(a, b).Run().ok());
  auto set = b.replica.Get("docs", "set");
  ASSERT_TRUE(set.ok()) << "the withheld state was never offered again";
  EXPECT_EQ(set->fields.at("photos").set.size(), 4u);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// Pieces cut short resume at the next session only if no other batch reached the peer
// first (it drops what it held then): behind a withheld state, a field that goes again
// before them makes them start over.
TEST(Sync, PiecesBehindAWithheldStateStartOverAfterAnotherBatch) {
  Node a(1), b(2);
  for (int i = 0; i < 4; ++i)  // withheld under the limit below
    ASSERT_TRUE(
        a.replica.Add("docs", "w", "photos", Value{std::string(400'000, char('a' + i))}).ok());
  ASSERT_TRUE(a.replica.Put("docs", "f", {{"x", Value{int64_t{1}}}}).ok());
  for (int i = 0; i < 2; ++i)  // in pieces
    ASSERT_TRUE(
        a.replica.Add("docs", "x", "photos", Value{std::string(500'000, char('k' + i))}).ok());
  SessionOptions mid;
  mid.max_state_bytes = 1'200'000;
  {
    Link link(a, b, mid, mid);
    ASSERT_TRUE(link.Run(0).ok());
    bool cut = false;
    while (!cut && (!link.to_a.empty() || !link.to_b.empty())) {
      if (!link.to_b.empty())
        if (const auto* bt = std::get_if<DeltaBatch>(&link.to_b.front());
            bt && bt->piece && bt->piece->offset > 0) {
          cut = true;  // b holds the first piece of x; the link goes down here
          break;
        }
      ASSERT_TRUE(link.Pump(link.delivered + 1).ok());
    }
    ASSERT_TRUE(cut);
  }
  EXPECT_TRUE(b.replica.Get("docs", "f").ok());
  EXPECT_FALSE(b.replica.Get("docs", "x").ok());
  {
    Link link(a, b, mid, mid);
    Status st = link.Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(link.sa.stats().fields_withheld, 1u);
  }
  auto x = b.replica.Get("docs", "x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->fields.at("photos").set.size(), 2u);
  EXPECT_FALSE(b.replica.Get("docs", "w").ok());
}

// A window sized for small batches (the node's starts at 16) holds no more than a few
// pieces in memory: the sender stops at kPiecesInFlight unacknowledged while pieces go.
TEST(Sync, AWideWindowStillHoldsFewPiecesInFlight) {
  Node a(1);
  AddPhotos(a, 12);  // 4.8 MB: ten pieces
  SessionOptions wide;
  wide.window = 16;
  size_t most = 0;
  for (size_t steps = 1; steps < 30; ++steps) {
    Node b(2);
    Link link(a, b, wide);
    ASSERT_TRUE(link.Run(steps).ok());
    size_t pieces = 0;
    for (const auto& m : link.to_b)
      if (const auto* d = std::get_if<DeltaBatch>(&m); d && d->piece) ++pieces;
    most = std::max(most, pieces);
  }
  EXPECT_EQ(most, kPiecesInFlight);
  Node b(2);
  Link link(a, b, wide);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(a.Dump(), b.Dump());
}

// A state in pieces goes as it stood when its first piece went (copied aside, not held
// in memory): written again meanwhile, the new state follows in the same session.
TEST(Sync, AStateWrittenWhileItGoesInPiecesGoesAsItStoodThenAsWritten) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("docs", "before", {{"x", Value{int64_t{1}}}}).ok());
  AddPhotos(a, 12);  // ten pieces: more than go before the first acknowledgement
  Link link(a, b);
  bool written = false;
  size_t total = 0;
  link.from_a = [&](Message& m) {
    const auto* d = std::get_if<DeltaBatch>(&m);
    if (!d || !d->piece) return;
    if (total == 0) total = d->piece->total;
    if (written) return;
    written = true;
    ASSERT_TRUE(a.replica.Add("docs", "set", "photos", Photo(20)).ok());
  };
  const Status st = link.Run();
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(written);
  EXPECT_GE(link.sa.stats().batches_sent, 2 * ((total + kPieceBytes - 1) / kPieceBytes))
      << "the state as it stood, then as written";
  EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 13u);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// A receiver whose write of a state it got in pieces must be made again after the state
// was taken apart (a store that had to grow at the commit): the state is decoded again
// from its pieces, still held, and arrives whole.
TEST(Sync, AStateTakenApartByAWriteMadeAgainIsDecodedAgainFromItsPieces) {
  Node a(1);
  AddPhotos(a, 4);
  auto busy = std::make_unique<BusyStore>(std::make_unique<MemoryStore>(Rid(2)));
  int took = 0;
  busy->fail_commit = [&](bool took_apart) { return took_apart && took++ == 0; };
  Node b(std::move(busy));
  Link link(a, b);
  const Status st = link.Run();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(took, 2) << "failed once, then committed";
  EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 4u);
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_FALSE(b.replica.Peer(a.replica.Meta()->id)->pieces) << "dropped once applied";
}

// A large state written again between the page that found it and the read that copies
// it: the log is read on to its later entry, which goes in pieces before the CaughtUp.
// (That page said the log was done: taken as done, the CaughtUp would claim the state
// unsent, and a rebasing peer would drop its values.)
TEST(Sync, ALargeStateWrittenAgainBeforeItIsCopiedGoesAtItsLaterEntry) {
  auto busy = std::make_unique<BusyStore>(std::make_unique<MemoryStore>(Rid(1)));
  BusyStore* store = busy.get();
  Node a(std::move(busy)), b(2);
  AddPhotos(a, 4);  // the newest entry in a's log
  store->before_spool = [&] { ASSERT_TRUE(a.replica.Add("docs", "set", "photos", Photo(9)).ok()); };
  Link link(a, b);
  const Status st = link.Run();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(store->before_spool) << "the write went in between";
  ASSERT_TRUE(b.replica.Get("docs", "set").ok());
  EXPECT_EQ(b.replica.Get("docs", "set")->fields.at("photos").set.size(), 5u);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// A sender that cannot open a spool, or fills its disk while copying into one, holds
// the state in memory instead: no field waits for disk space.
TEST(Sync, ASenderWithoutRoomForASpoolSendsFromMemory) {
  for (uint64_t room : {uint64_t{0}, uint64_t{1} << 20}) {
    auto busy = std::make_unique<BusyStore>(std::make_unique<MemoryStore>(Rid(1)));
    busy->spool_fails_after = room;
    Node a(std::move(busy)), b(2);
    AddPhotos(a, 4);
    ASSERT_TRUE(a.replica.Put("docs", "after", {{"x", Value{int64_t{1}}}}).ok());
    Link link(a, b);
    const Status st = link.Run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(a.Dump(), b.Dump()) << room;
  }
}

}  // namespace
}  // namespace tandem::engine
