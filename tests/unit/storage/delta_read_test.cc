// A field state read as its delta encoding, a window at a time, without decoding it (the
// sender of a state in pieces): the same bytes as EncodeDelta of the decoded state, from
// LMDB and from memory, and refused when the stored bytes were damaged.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../../integration/process.h"
#include "../../integration/raw_lmdb.h"
#include "large_states.h"
#include "sync_once.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/memory_store.h"
#include "tandem/engine/rules.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::FieldKey;
using engine::FieldState;
using engine::Replica;
using engine::Value;

// Fills `into` with states of every shape: a set of many large elements, a register
// written concurrently on twelve replicas (a context beyond the encoder's small one,
// replica indexes past the first), a counter from all of them, and small fields.
void FillStates(Replica& into, const std::vector<Replica*>& others) {
  for (int i = 0; i < 24; ++i)
    ASSERT_TRUE(into.Add("docs", "set", "photos", Value{Text(60'000, i)}).ok());
  int k = 0;
  for (Replica* o : others) {
    ASSERT_TRUE(o->Put("docs", "big", {{"body", Value{Text(100'000, ++k)}}}).ok());
    ASSERT_TRUE(o->Incr("docs", "count", "n", k).ok());
    ASSERT_TRUE(o->Put("docs", "small" + std::to_string(k), {{"x", Value{int64_t{k}}}}).ok());
    auto page = o->CollectDeltas(0, 1 << 20, nullptr);
    ASSERT_TRUE(page.ok());
    ASSERT_TRUE(into.ApplyDeltas(page->deltas).ok());
  }
}

// Every field of `r`, read through ReadDelta in windows of `window` bytes, against
// EncodeDelta of its decoded state; and ScanLogDeltas hands each state over `large`
// as its context and size alone.
void ExpectDeltasMatch(Replica& r, size_t window, uint64_t large, size_t want_larges = 2,
                       size_t want_whole = 13) {
  auto txn = r.store().BeginRead();
  ASSERT_TRUE(txn.ok());
  size_t larges = 0, whole = 0;
  Status st = (*txn)->ScanLogDeltas(
      0, large,
      [&](uint64_t seq, const FieldKey& key, FieldState* s, const engine::ReadTxn::LargeState* l) {
        if (!s && !l) return true;
        std::optional<FieldState> state;
        EXPECT_TRUE((*txn)->GetField(key, &state).ok());
        EXPECT_TRUE(state.has_value());
        auto want = engine::EncodeDelta(key, *state);
        EXPECT_TRUE(want.ok());
        std::string got;
        uint64_t size = 0, at = 0;
        for (uint64_t offset = 0; offset == 0 || offset < size; offset += window) {
          const size_t before = got.size();
          EXPECT_TRUE((*txn)->ReadDelta(key, offset, window, offset == 0, &size, &at, &got).ok());
          EXPECT_EQ(got.size() - before, std::min<uint64_t>(window, size - offset));
        }
        EXPECT_EQ(at, seq);
        EXPECT_EQ(size, want->size());
        EXPECT_TRUE(got == *want) << key.record << " read in windows of " << window;
        if (l) {
          ++larges;
          EXPECT_GT(l->size, large);
          EXPECT_EQ(l->size, want->size());
          EXPECT_EQ(l->ctx, state->ctx);
        } else {
          ++whole;
          EXPECT_LE(want->size(), large);
          EXPECT_EQ(*s, *state);
        }
        return true;
      });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(larges, want_larges) << "the set and the register";
  EXPECT_GE(whole, want_whole);
}

TEST(DeltaRead, AStoredStateReadsAsItsDeltaEncodingWithoutDecoding) {
  testing::TempDir tmp;
  auto into = CreateReplica(tmp / "into");
  ASSERT_TRUE(into.ok());
  std::vector<std::unique_ptr<Replica>> owned;
  std::vector<Replica*> others;
  for (int i = 0; i < 12; ++i) {
    auto o = CreateReplica(tmp / ("o" + std::to_string(i)));
    ASSERT_TRUE(o.ok());
    others.push_back(o->get());
    owned.push_back(std::move(*o));
  }
  FillStates(**into, others);
  for (size_t window : {size_t{1} << 19, size_t{777}, size_t{1} << 24})
    ExpectDeltasMatch(**into, window, 900 << 10);
  // A memory store keeps the same states in its own form: the same bytes come out.
  engine::ReplicaId mem_id;
  mem_id.bytes[0] = 99;
  Replica mem(
      std::make_unique<engine::MemoryStore>(mem_id), [] { return uint64_t{1000}; },
      Blake2b256Parts);
  auto page = (*into)->CollectDeltas(0, 1 << 20, nullptr);
  ASSERT_TRUE(page.ok());
  ASSERT_TRUE(mem.ApplyDeltas(page->deltas).ok());
  ExpectDeltasMatch(mem, 1 << 19, 900 << 10);
  // A field with no state, or none at all.
  auto txn = (*into)->store().BeginRead();
  ASSERT_TRUE(txn.ok());
  std::string out;
  uint64_t size = 0, at = 0;
  EXPECT_EQ((*txn)->ReadDelta({"docs", "nothing", "x"}, 0, 10, true, &size, &at, &out).code(),
            Code::kNotFound);
  EXPECT_EQ((*txn)->ReadDelta({"nowhere", "r", "x"}, 0, 10, true, &size, &at, &out).code(),
            Code::kNotFound);
}

// Damaged stored bytes are refused by the reads that check them, not sent as pieces of
// another state.
TEST(DeltaRead, ADamagedStateIsRefusedWhenChecked) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Put("c", "r", {{"a", Value{std::string(2 << 20, 'x')}}}).ok());
  }
  const std::string key("\0r\0\x01", 4);  // c/r.a, the first names interned (format.md)
  std::string v = testing::RawGet(dir, "fields", key);
  ASSERT_GT(v.size(), size_t{2} << 20);
  v[v.size() / 2] = 'y';
  testing::RawPut(dir, "fields", key, v);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok());
  // Not skipped or withheld by a context read from damaged bytes: the log hands it out
  // as damaged, with no context (the sync withholds it, claiming nothing).
  auto page = (*r)->CollectDeltas(0, 100, nullptr, SIZE_MAX, 900 << 10);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_TRUE(page->large);
  EXPECT_TRUE(page->large->damaged);
  EXPECT_TRUE(page->large->ctx.empty());
  // Nor copied to go in pieces.
  auto digest = (*r)->SpoolDelta({"c", "r", "a"}, page->large->seq, UINT64_MAX);
  EXPECT_EQ(digest.status().code(), Code::kCorrupt) << digest.status().ToString();
  engine::VersionVector everything;
  everything.Raise((*r)->Meta()->id, 1000);
  page = (*r)->CollectDeltas(0, 100, &everything, SIZE_MAX, 900 << 10);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->large && page->large->damaged) << "never taken as held by the peer";
}

// A state at one log position is copied once: the sessions sending it at the same time
// share its spool, which goes with the last of them; the next position gets its own.
TEST(DeltaRead, SessionsSendingOneStateShareItsSpool) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "a");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Put("c", "r", {{"a", Value{Text(2 << 20, 1)}}}).ok());
  auto page = (*r)->CollectDeltas(0, 100, nullptr, SIZE_MAX, 900 << 10);
  ASSERT_TRUE(page.ok() && page->large);
  const engine::FieldKey key{"c", "r", "a"};
  auto one = (*r)->SpoolDelta(key, page->large->seq, UINT64_MAX);
  auto two = (*r)->SpoolDelta(key, page->large->seq, UINT64_MAX);
  ASSERT_TRUE(one.ok() && *one && two.ok() && *two);
  EXPECT_EQ((*one)->spool.get(), (*two)->spool.get());
  EXPECT_EQ((*one)->digest, (*two)->digest);
  std::string a, b;
  ASSERT_TRUE((*one)->spool->Read(0, (*one)->size, &a).ok());
  ASSERT_TRUE((*two)->spool->Read(0, (*two)->size, &b).ok());
  EXPECT_EQ(a.size(), (*one)->size);
  EXPECT_TRUE(a == b);
  std::weak_ptr<engine::Spool> first = (*one)->spool;
  // Written again: its next position gets a spool of its own.
  ASSERT_TRUE((*r)->Put("c", "r", {{"a", Value{Text(2 << 20, 2)}}}).ok());
  auto later = (*r)->CollectDeltas(page->large->seq, 100, nullptr, SIZE_MAX, 900 << 10);
  ASSERT_TRUE(later.ok() && later->large);
  auto three = (*r)->SpoolDelta(key, later->large->seq, UINT64_MAX);
  ASSERT_TRUE(three.ok() && *three);
  EXPECT_NE((*three)->spool.get(), (*one)->spool.get());
  EXPECT_NE((*three)->digest, (*one)->digest);
  // Gone with the last session that reads it.
  one->reset();
  EXPECT_FALSE(first.expired());
  two->reset();
  EXPECT_TRUE(first.expired());
  EXPECT_FALSE((*r)->SpoolDelta(key, page->large->seq, UINT64_MAX).value()) << "moved on";
}

// The spool a state in pieces is copied into: an unnamed file, read back in any windows.
TEST(DeltaRead, TheSpoolReadsBackWhatWasAppended) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "a");
  ASSERT_TRUE(r.ok());
  auto spool = (*r)->store().OpenSpool();
  ASSERT_TRUE(spool.ok()) << spool.status().ToString();
  const std::string a = Text(700'000, 1), b = Text(300'001, 2);
  ASSERT_TRUE((*spool)->Append(a).ok());
  ASSERT_TRUE((*spool)->Append(b).ok());
  std::string all;
  for (uint64_t at = 0; at < a.size() + b.size(); at += 65'537)
    ASSERT_TRUE((*spool)->Read(at, 65'537, &all).ok());
  EXPECT_TRUE(all == a + b);
  std::string past;
  ASSERT_TRUE((*spool)->Read(a.size() + b.size(), 10, &past).ok());
  EXPECT_TRUE(past.empty());
  // Nothing of it is left in the directory.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp / "a"))
    files += e.path().filename().string().rfind("spool", 0) == 0;
  EXPECT_EQ(files, 0u);
}

// Between two LMDB replicas, large states go in pieces from the spool, and a write to
// one of them while its pieces go changes nothing of what was sent: it follows.
TEST(DeltaRead, LargeStatesSyncBetweenStoredReplicas) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 24; ++i)
    ASSERT_TRUE((*a)->Add("docs", "set", "photos", Value{Text(60'000, i)}).ok());
  ASSERT_TRUE((*a)->Put("docs", "after", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  ASSERT_TRUE((*a)->Add("docs", "set", "photos", Value{Text(60'001, 99)}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  auto got = (*b)->Get("docs", "set");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->fields.at("photos").set.size(), 25u);
  EXPECT_TRUE((*b)->Get("docs", "after").ok());
}

// A receiver whose map must grow to write a large state it got in pieces: the attempt
// that took the decoded state apart could not commit, and the next one decodes it again
// from the pieces still held.
TEST(DeltaRead, AStateInPiecesIsDecodedAgainWhenItsWriteMustBeMadeAgain) {
  testing::TempDir tmp;
  Options tiny;
  tiny.initial_map_bytes = 64 << 10;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b", tiny);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE((*a)->Add("docs", "set", "photos", Value{Text(100'000 + i, i)}).ok());
  const Status st = SyncOnce(**a, **b);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto got = (*b)->Get("docs", "set");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->fields.at("photos").set.size(), 40u);
  auto peer = (*b)->Peer((*a)->Meta()->id);
  ASSERT_TRUE(peer.ok());
  EXPECT_FALSE(peer->pieces) << "dropped once applied";
}

// A set of 24 photos of 60,000 bytes (a state in pieces) and a title beside it.
void AddAlbum(Replica& r) {
  for (int i = 0; i < 24; ++i)
    ASSERT_TRUE(r.Add("docs", "set", "photos", Value{Text(60'000, i)}).ok());
  ASSERT_TRUE(r.Put("docs", "set", {{"title", Value{std::string("album")}}}).ok());
}

engine::Record Album(Replica& r) {
  auto got = r.Get("docs", "set");
  EXPECT_TRUE(got.ok()) << got.status().ToString();
  return got.ok() ? *got : engine::Record{};
}

// Replicas `a` and `b` in `dir`, the album written on a and synced to b.
struct AlbumPair {
  std::unique_ptr<Replica> a, b;
};
AlbumPair SyncedAlbum(const testing::TempDir& dir) {
  auto a = CreateReplica(dir / "a");
  auto b = CreateReplica(dir / "b");
  EXPECT_TRUE(a.ok() && b.ok());
  if (!a.ok() || !b.ok()) return {};
  AddAlbum(**a);
  const Status st = SyncOnce(**a, **b);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return {std::move(*a), std::move(*b)};
}

// A state that arrives in pieces into a field that holds nothing is stored as it came, out
// of line in the chunks that held its pieces: read, sent on and checked from there, never
// decoded whole to be applied. Written again, the field holds its state in line, and
// those chunks are freed.
TEST(DeltaRead, AStateInPiecesIsStoredAsItCameUntilItsFieldIsWrittenAgain) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  auto c = CreateReplica(tmp / "c");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  AddAlbum(**a);
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  const engine::Record want = Album(**a);
  EXPECT_EQ(want.fields.at("photos").set.size(), 24u);
  EXPECT_EQ(Album(**b), want);
  EXPECT_EQ(OutOfLine(**b), 1u) << "the set, not the title";
  // Compared read a piece at a time there, hashed from the state here (past 1 MiB through
  // a spool): the same sums.
  auto da = (*a)->Digests();
  auto db = (*b)->Digests();
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_TRUE(da->exact && db->exact);
  EXPECT_EQ(da->sums, db->sums);
  EXPECT_EQ(da->sums.size(), 1u);
  // Sent on from where it lies (the spool copies it from its chunks), and stored so again.
  ASSERT_TRUE(SyncOnce(**b, **c).ok());
  EXPECT_EQ(Album(**c), want);
  EXPECT_EQ(OutOfLine(**c), 1u);
  {
    auto ta = (*a)->store().BeginRead();
    auto tc = (*c)->store().BeginRead();
    ASSERT_TRUE(ta.ok() && tc.ok());
    std::optional<FieldState> sa, sc;
    ASSERT_TRUE((*ta)->GetField({"docs", "set", "photos"}, &sa).ok());
    ASSERT_TRUE((*tc)->GetField({"docs", "set", "photos"}, &sc).ok());
    ASSERT_TRUE(sa && sc);
    EXPECT_EQ(*sa, *sc);
  }
  ExpectDeltasMatch(**c, 777, 900 << 10, 1, 1);
  // Kept across a restart.
  c->reset();
  auto reopened = OpenReplica(tmp / "c");
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(Album(**reopened), want);
  // Written again: in line, its chunks listed no more, and freed by collection.
  ASSERT_TRUE((*b)->Add("docs", "set", "photos", Value{Text(60'001, 99)}).ok());
  EXPECT_EQ(OutOfLine(**b), 0u);
  EXPECT_GE(CollectHeld(**b).chunks_freed, 3u) << "1.4 MB in chunks of 512 KiB";
  const engine::Record got = Album(**b);
  EXPECT_EQ(got.fields.at("photos").set.size(), 25u);
  // Into a field whose state it has seen all of: stored as it came, in that one's place.
  ASSERT_TRUE(SyncOnce(**b, **a).ok());
  EXPECT_EQ(Album(**a), got);
  EXPECT_EQ(OutOfLine(**a), 1u);
}

// A scan with outlines (the comparison of states, collection) reads a large state stored
// in line to its outline, as it does one out of line, and its items from where it lies:
// neither decodes it whole. A small one it decodes as before.
TEST(DeltaRead, AScanWithOutlinesReadsALargeStateInLineToItsOutline) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  ASSERT_TRUE(a.ok());
  AddAlbum(**a);
  auto txn = (*a)->store().BeginRead();
  ASSERT_TRUE(txn.ok());
  std::vector<FieldKey> outlined;
  const engine::ReadTxn::OutlineFn note = [&](const FieldKey& k) { outlined.push_back(k); };
  engine::RecordState got;
  ASSERT_TRUE((*txn)
                  ->ScanRecords(
                      "docs", "",
                      [&](const std::string&, engine::RecordState& r) {
                        got = std::move(r);
                        return true;
                      },
                      nullptr, &note)
                  .ok());
  ASSERT_EQ(outlined.size(), 1u);
  EXPECT_EQ(outlined[0].field, "photos");
  const FieldState& outline = got.fields.at("photos");
  ASSERT_EQ(outline.elements.size(), 1u) << "every element's dots under one null value";
  EXPECT_EQ(outline.elements.begin()->first, Value{});
  EXPECT_EQ(outline.elements.begin()->second.size(), 24u);
  EXPECT_EQ(got.fields.at("title").markers.begin()->second.value, Value{std::string("album")});
  size_t elements = 0;
  engine::StateItems items;
  items.element = [&](const Value& v, const std::set<engine::Dot>&) {
    elements += std::get<std::string>(v).size() == 60'000;
  };
  ASSERT_TRUE((*txn)->ReadFieldItems({"docs", "set", "photos"}, items).ok());
  EXPECT_EQ(elements, 24u);
}

// A state in pieces joined into a field that holds a state: where it has seen all of that
// one (it adds to it or removes from it), the join is itself, and it takes that one's
// place as it came; where ours holds an operation it has not seen, the two are joined a
// part at a time, and the join takes its place. Either way every replica ends with the
// same state.
TEST(DeltaRead, AStateInPiecesThatHasSeenAllOfOursTakesItsPlace) {
  testing::TempDir tmp;
  AlbumPair p = SyncedAlbum(tmp);
  ASSERT_TRUE(p.a && p.b);
  auto& a = p.a;
  auto& b = p.b;
  ASSERT_EQ(OutOfLine(*b), 1u);
  // One photo added and one removed there: in place of the state b kept as it came.
  ASSERT_TRUE(a->Add("docs", "set", "photos", Value{Text(60'001, 50)}).ok());
  ASSERT_TRUE(a->Remove("docs", "set", "photos", Value{Text(60'000, 3)}).ok());
  ASSERT_TRUE(SyncOnce(*a, *b).ok());
  engine::Record want = Album(*a);
  EXPECT_EQ(want.fields.at("photos").set.size(), 24u);
  EXPECT_EQ(Album(*b), want);
  EXPECT_EQ(OutOfLine(*b), 1u);
  ExpectSameDigests(*a, *b);
  // The state it replaced: listed no more, its chunks freed (those both share stay).
  EXPECT_GE(CollectHeld(*b).chunks_freed, 1u);
  EXPECT_EQ(Album(*b), want);
  // A photo added on each side: each state holds one the other has not seen, so on both
  // sides the two are joined a part at a time (JoinPieces), and the join, which has seen
  // all of ours, takes its place out of line.
  ASSERT_TRUE(b->Add("docs", "set", "photos", Value{Text(60'002, 60)}).ok());
  ASSERT_TRUE(a->Add("docs", "set", "photos", Value{Text(60'003, 70)}).ok());
  ASSERT_EQ(OutOfLine(*b), 0u) << "written here: in line";
  ASSERT_TRUE(SyncOnce(*a, *b).ok());
  want = Album(*a);
  EXPECT_EQ(want.fields.at("photos").set.size(), 26u);
  EXPECT_EQ(Album(*b), want);
  EXPECT_EQ(OutOfLine(*a), 1u);
  EXPECT_EQ(OutOfLine(*b), 1u);
  ExpectSameDigests(*a, *b);
  // What the joins were made in is listed no more: collection frees the states replaced
  // and leaves the joins whole.
  for (Replica* r : {a.get(), b.get()}) {
    CollectHeld(*r);
    EXPECT_EQ(Album(*r), want);
  }
  // A concurrent write on one side again, the other side's join taking the place of a
  // state it stores out of line: the same.
  ASSERT_TRUE(b->Add("docs", "set", "photos", Value{Text(60'005, 90)}).ok());
  ASSERT_TRUE(a->Remove("docs", "set", "photos", Value{Text(60'002, 60)}).ok());
  ASSERT_TRUE(SyncOnce(*a, *b).ok());
  want = Album(*a);
  EXPECT_EQ(want.fields.at("photos").set.size(), 26u);
  EXPECT_EQ(Album(*b), want);
  // One more there: b's state is replaced by a's as it came.
  ASSERT_TRUE(a->Add("docs", "set", "photos", Value{Text(60'004, 80)}).ok());
  ASSERT_TRUE(SyncOnce(*a, *b).ok());
  want = Album(*a);
  EXPECT_EQ(Album(*b), want);
  EXPECT_EQ(OutOfLine(*b), 1u);
  ExpectSameDigests(*a, *b);
  // And a restarted replica reads the same.
  b.reset();
  auto reopened = OpenReplica(tmp / "b");
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(Album(**reopened), want);
}

// A state in pieces into a field held here is judged by the collection's rules on what is
// new here alone, its values read a piece at a time: an element the held state has
// already is not judged again (it takes that state's place as it came), a new one is.
TEST(DeltaRead, AStateInPiecesIsJudgedOnWhatIsNewHere) {
  testing::TempDir tmp;
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  AddAlbum(**a);
  ASSERT_TRUE((*a)->Add("docs", "set", "photos", Value{std::string("refused before")}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  ASSERT_EQ(Album(**b).fields.at("photos").set.size(), 25u);
  auto rules = std::make_shared<RefuseElements>();
  (*b)->SetWritePolicy(rules);
  ASSERT_TRUE((*a)->Add("docs", "set", "photos", Value{Text(60'001, 50)}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  EXPECT_EQ(Album(**b).fields.at("photos").set.size(), 26u);
  EXPECT_EQ(OutOfLine(**b), 1u) << "the element it had is not judged again";
  auto held = (*b)->Quarantined();
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held->empty());
  // One the rules refuse, new here: the state is held aside, the field left as it was.
  ASSERT_TRUE((*a)->Add("docs", "set", "photos", Value{std::string("refused now")}).ok());
  ASSERT_TRUE(SyncOnce(**a, **b).ok());
  EXPECT_EQ(Album(**b).fields.at("photos").set.size(), 26u);
  held = (*b)->Quarantined();
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->size(), 1u);
  (*b)->SetWritePolicy(nullptr);
}

// A chunk of a state kept out of line, damaged on disk: the field reads as damaged (its
// bytes are refused, never read as another state), `check` names it, and a sync withholds
// it and sends the rest.
TEST(DeltaRead, ADamagedChunkOfAStateKeptAsItCameIsRefused) {
  testing::TempDir tmp;
  AlbumPair p = SyncedAlbum(tmp);
  ASSERT_TRUE(p.a && p.b);
  auto& a = p.a;
  auto& b = p.b;
  b.reset();
  // Every chunk of b is the state's: one byte of each changed.
  std::vector<std::pair<std::string, std::string>> chunks;
  {
    testing::RawReader r(tmp / "b", "chunks");
    MDB_cursor* cur = nullptr;
    ASSERT_EQ(mdb_cursor_open(r.txn, r.dbi, &cur), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
      chunks.emplace_back(std::string(static_cast<char*>(k.mv_data), k.mv_size),
                          std::string(static_cast<char*>(v.mv_data), v.mv_size));
    mdb_cursor_close(cur);
  }
  ASSERT_GE(chunks.size(), 3u);
  for (auto& [key, bytes] : chunks) {
    bytes[bytes.size() / 2] ^= 1;
    testing::RawPut(tmp / "b", "chunks", key, bytes);
  }
  auto damaged = OpenReplica(tmp / "b");
  ASSERT_TRUE(damaged.ok()) << damaged.status().ToString();
  EXPECT_EQ((*damaged)->Get("docs", "set").status().code(), Code::kCorrupt);
  const Status checked = Check(*dynamic_cast<LmdbStore*>(&(*damaged)->store()));
  EXPECT_EQ(checked.code(), Code::kCorrupt) << checked.ToString();
  EXPECT_NE(checked.message().find("docs/set.photos"), std::string::npos) << checked.ToString();
  auto c = CreateReplica(tmp / "c");
  ASSERT_TRUE(c.ok());
  const Status synced = SyncOnce(**damaged, **c);
  EXPECT_TRUE(synced.ok()) << synced.ToString();
  auto got = (*c)->Get("docs", "set");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->fields.count("photos"), 0u);
  EXPECT_EQ(got->fields.at("title").scalar, Value{std::string("album")});
  // A newer state of it in pieces, which has seen all the damaged one held: never put in
  // its place unread, but held aside, as any state for a damaged field.
  ASSERT_TRUE(a->Add("docs", "set", "photos", Value{Text(60'001, 99)}).ok());
  const Status again = SyncOnce(*a, **damaged);
  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_EQ((*damaged)->Get("docs", "set").status().code(), Code::kCorrupt);
  auto held = (*damaged)->Quarantined();
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].key.field, "photos");
}

}  // namespace
}  // namespace tandem::storage
