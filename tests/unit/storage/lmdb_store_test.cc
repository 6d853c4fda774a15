// The LMDB store under the engine's Replica.
#include "tandem/storage/lmdb_store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <fstream>
#include <thread>

#include "../../../storage/src/log_run.h"
#include "../../integration/process.h"
#include "../../integration/raw_lmdb.h"
#include "log_entries.h"
#include "sync_once.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/sync.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Value;

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// Found by the simulator: rewriting the field that holds the newest change-log entry
// handed out the same seq again, so a peer whose cursor sat at that seq never saw it.
// A process's first change-log position goes past the newest, and to the clock if that
// is further; a clock before 1970 (whose count would wrap) or near 2^53 microseconds is
// not taken, so positions stay below 2^53 (exact in JSON, as change-feed cursors).
TEST(LmdbStore, TheFirstLogPositionTakesOnlyASaneClock) {
  EXPECT_EQ(FirstLogSeqAt(5, 1'000'000), 1'000'001u);
  EXPECT_EQ(FirstLogSeqAt(2'000'000, 1'000'000), 2'000'001u);
  EXPECT_EQ(FirstLogSeqAt(5, -3'155'760'000'000'000), 6u);  // 1870
  EXPECT_EQ(FirstLogSeqAt(5, 0), 6u);
  EXPECT_EQ(FirstLogSeqAt(5, int64_t{1} << 53), 6u);
  EXPECT_EQ(FirstLogSeqAt(5, INT64_MAX), 6u);
  EXPECT_LT(FirstLogSeq(0), uint64_t{1} << 53);  // this machine's clock
}

TEST(LmdbStore, RewritingTheNewestFieldMovesItPastEveryCursor) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Put("c", "a", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*r)->Put("c", "b", {{"x", Value{int64_t{1}}}}).ok());
  auto page = (*r)->Changes(0, 100);
  ASSERT_TRUE(page.ok());
  const uint64_t cursor = page->next_cursor;
  ASSERT_TRUE((*r)->Put("c", "b", {{"x", Value{int64_t{2}}}}).ok());
  auto later = (*r)->Changes(cursor, 100);
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->changes.size(), 1u);
  EXPECT_EQ(later->changes[0].id, "b");
  EXPECT_GT(later->changes[0].cursor, cursor);
}

TEST(LmdbStore, ReleasingMemoryKeepsEveryReadIntactEvenInsideAReadTransaction) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE((*r)->Put("c", "r" + std::to_string(i),
                          {{"v", engine::Value{std::string(3000, char('a' + i % 26))}}})
                    .ok());
  auto txn = (*r)->store().BeginRead();
  ASSERT_TRUE(txn.ok());
  engine::RecordState before;
  ASSERT_TRUE((*txn)->GetRecord("c", "r7", &before, nullptr).ok());
  (*r)->store().ReleaseMemory();
  engine::RecordState after;
  ASSERT_TRUE((*txn)->GetRecord("c", "r7", &after, nullptr).ok());
  EXPECT_EQ(before, after);
  (*r)->store().ReleaseMemory();
  ASSERT_TRUE((*r)->Put("c", "r7", {{"v", engine::Value{std::string("new")}}}).ok());
  (*r)->store().ReleaseMemory();
  auto rec = (*r)->Get("c", "r7");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->fields.at("v").scalar, engine::Value{std::string("new")});
  auto rec199 = (*r)->Get("c", "r199");
  ASSERT_TRUE(rec199.ok());
  EXPECT_EQ(rec199->fields.at("v").scalar, engine::Value{std::string(3000, char('a' + 199 % 26))});
  CheckReport report;
  EXPECT_TRUE(Check(dynamic_cast<LmdbStore&>((*r)->store()), &report).ok());
}

// Writes `batches` transactions of `per` records c/<n> (numbered on), values `bytes` long.
bool WriteRecords(engine::Replica& r, int batches, int per, size_t bytes) {
  for (int batch = 0; batch < batches; ++batch) {
    Status st = r.Write([&](engine::Batch& b) {
      for (int i = 0; i < per; ++i)
        TANDEM_RETURN_IF_ERROR(
            b.Put("c", std::to_string(batch * per + i), "v", Value{std::string(bytes, 'x')}));
      return Status::Ok();
    });
    if (!st.ok()) return false;
  }
  return true;
}

// Options whose map is far too small for what the map-growth tests write.
Options TinyMap() {
  Options o;
  o.initial_map_bytes = 64 << 10;
  return o;
}

TEST(LmdbStore, MapGrowsOnDemand) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db", TinyMap());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(WriteRecords(**r, 20, 200, 100));
  CheckReport rep;
  ASSERT_TRUE(Check(StoreOf(**r), &rep).ok());
  EXPECT_EQ(rep.fields, 4000u);
  r->reset();
  auto again = OpenReplica(tmp / "db", TinyMap());  // reopens with the grown size
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->Get("c", "3999").ok());
}

// What filtered sessions bore out (ReplicaMeta::absorbed, scope) is kept with the
// replica's meta, raises the format, and a damaged record of it is refused, not misread.
TEST(LmdbStore, WhatFilteredSessionsBoreOutIsKeptAndRaisesTheFormat) {
  testing::TempDir tmp;
  const std::string dir = tmp / "db";
  engine::ReplicaMeta want;
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    auto txn = (*r)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->GetMeta(&want).ok());
    want.absorbed.Raise(RandomReplicaId(), 7);
    want.absorbed.Raise(want.id, 2);
    want.scope = engine::CollectionFilter::Only({"orders", "products"});
    ASSERT_TRUE((*txn)->PutMeta(want).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  uint32_t format = 0;
  std::memcpy(&format, testing::RawGet(dir, "meta", "format").data(), 4);
  EXPECT_EQ(format, kFormatFiltered);
  {
    auto r = OpenReplica(dir);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)->Meta().value(), want);
  }
  std::string stored = testing::RawGet(dir, "meta", "replica");
  ASSERT_EQ(stored[0], 2);
  testing::RawPut(dir, "meta", "replica", stored.substr(0, stored.size() - 1));
  auto damaged = OpenReplica(dir);
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.status().ToString().find("replica meta"), std::string::npos)
      << damaged.status().ToString();
}

// A filter that names the collections it leaves out (a scope, what a peer received or
// was delivered) raises the format to 12, which older builds refuse to open.
TEST(LmdbStore, AFilterThatLeavesCollectionsOutRaisesTheFormat) {
  testing::TempDir tmp;
  const std::string dir = tmp / "db";
  engine::ReplicaMeta want;
  engine::PeerState peer_want;
  const engine::ReplicaId peer = RandomReplicaId();
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    auto txn = (*r)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->GetMeta(&want).ok());
    want.absorbed.Raise(peer, 7);
    want.scope = engine::CollectionFilter::AllBut({"secrets"});
    ASSERT_TRUE((*txn)->PutMeta(want).ok());
    peer_want.filtered = true;
    peer_want.cursor = 9;
    peer_want.received = engine::CollectionFilter::AllBut({"secrets"});
    peer_want.delivered = 4;
    peer_want.delivery = engine::CollectionFilter::AllBut({"costs", "secrets"});
    ASSERT_TRUE((*txn)->PutPeer(peer, peer_want).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  uint32_t format = 0;
  std::memcpy(&format, testing::RawGet(dir, "meta", "format").data(), 4);
  EXPECT_EQ(format, kFormatExclusions);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->Meta().value(), want);
  EXPECT_EQ((*r)->Peer(peer).value(), peer_want);
}

// Found by bench/net: a daemon's change watcher read the last transaction id while the
// storage worker grew the map, which moves it, and crashed now and then.
TEST(LmdbStore, TheLastTransactionIsReadSafelyWhileTheMapGrows) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db", TinyMap());
  ASSERT_TRUE(r.ok());
  std::atomic<bool> done{false};
  uint64_t last = 0;
  bool ordered = true;
  std::thread watcher([&] {
    while (!done) {
      const uint64_t id = StoreOf(**r).LastTxnId();
      ordered = ordered && id >= last;
      last = id;
    }
  });
  const bool written = WriteRecords(**r, 60, 100, 1000);
  done = true;
  watcher.join();  // before any assertion can return
  ASSERT_TRUE(written);
  EXPECT_TRUE(ordered);
  EXPECT_GE(StoreOf(**r).LastTxnId(), 60u);
}

// Found by bench/net: when the new names interned at commit were what filled the map,
// the map never grew, and every retry failed the same way ("busy: name table").
TEST(LmdbStore, MapGrowsWhenNewNamesFillIt) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db", TinyMap());
  ASSERT_TRUE(r.ok());
  // Each write is one small field under long new names: the names table grows as fast
  // as the fields, so some growth is needed at the moment the names are flushed.
  for (int i = 0; i < 3000; ++i) {
    std::string name = std::string(100, 'n') + std::to_string(i);
    auto st = (*r)->Put(name.substr(0, 60), "r", {{name, Value{int64_t{i}}}});
    ASSERT_TRUE(st.ok()) << i << ": " << st.ToString();
  }
  CheckReport rep;
  ASSERT_TRUE(Check(StoreOf(**r), &rep).ok());
  EXPECT_EQ(rep.fields, 3000u);
}

TEST(LmdbStore, PeerStateSurvivesReopen) {
  testing::TempDir tmp;
  engine::ReplicaId peer;
  peer.bytes.fill(7);
  {
    auto r = CreateReplica(tmp / "db");
    ASSERT_TRUE(r.ok());
    engine::FieldState f;
    engine::ApplyPut(f, engine::Dot{peer, 1}, engine::MakeHlc(1, 0), Value{true});
    ASSERT_TRUE((*r)->ApplyBatch(peer, {engine::FieldDelta{{"c", "r", "f"}, f}}, 33,
                                 [](const engine::FieldDelta&, const engine::FieldState*) {
                                   return engine::Admission::kAccept;
                                 })
                    .ok());
  }
  auto r = OpenReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  auto ps = (*r)->Peer(peer);
  ASSERT_TRUE(ps.ok());
  EXPECT_EQ(ps->cursor, 33u);
  EXPECT_EQ(ps->fields_received, 1u);
  EXPECT_TRUE((*r)->Get("c", "r").ok());
}

// A field state breaking the codec's invariant (a dot its context does not cover) is
// refused when written, in release builds too: the write fails as corrupt, and the
// change log and fields stay as they were.
TEST(LmdbStore, AStateBreakingAnInvariantIsRefusedAndWritesNothing) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Put("c", "a", {{"x", Value{int64_t{1}}}}).ok());
  auto& store = StoreOf(**r);
  uint64_t before = 0;
  {
    auto read = store.BeginRead();
    ASSERT_TRUE(read.ok() && (*read)->LastLogSeq(&before).ok());
    ASSERT_NE(before, 0u);
  }
  auto txn = store.BeginWrite();
  ASSERT_TRUE(txn.ok());
  std::optional<engine::FieldState> state;
  ASSERT_TRUE((*txn)->GetField({"c", "a", "x"}, &state).ok());
  ASSERT_TRUE(state.has_value());
  engine::FieldState bad = *state;
  engine::ReplicaId other;
  other.bytes[0] = 0x77;
  bad.markers.emplace(engine::Dot{other, 9}, state->markers.begin()->second);
  Status st = (*txn)->PutField({"c", "a", "x"}, bad);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  // Refused before anything was touched, even inside the transaction: the field's log
  // entry and state are as they were.
  uint64_t last = 0;
  ASSERT_TRUE((*txn)->LastLogSeq(&last).ok());
  EXPECT_EQ(last, before);
  std::optional<engine::FieldState> again;
  ASSERT_TRUE((*txn)->GetField({"c", "a", "x"}, &again).ok());
  EXPECT_TRUE(again.has_value() && *again == *state);
  txn->reset();  // aborted
  auto page = (*r)->Changes(0, 100);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->changes.size(), 1u);
  ASSERT_TRUE(page->changes[0].record.has_value());
  EXPECT_EQ(page->changes[0].record->fields.at("x").scalar, Value{int64_t{1}})
      << "the field was changed";
  EXPECT_TRUE(Check(store).ok());
}

// A replica written before the log's hull was kept (format 1) knows nothing of what its
// log holds: it skips nothing of it, and its first write records the hull from there on
// and raises the format, so a build that would not keep the hull cannot write to it.
TEST(LmdbStore, AReplicaFromBeforeTheHullSkipsNothingOfItsOldLog) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  {
    auto ra = CreateReplica(a);
    ASSERT_TRUE(ra.ok());
    for (int i = 0; i < 20; ++i)
      ASSERT_TRUE((*ra)->Put("c", "r" + std::to_string(i), {{"x", Value{int64_t{i}}}}).ok());
  }
  const uint32_t one = 1;
  const std::string format1(reinterpret_cast<const char*>(&one), 4);
  testing::RawPut(a, "meta", "log-hull", nullptr);
  testing::RawPut(a, "meta", "format", format1);
  auto ra = OpenReplica(a);
  auto rb = CreateReplica(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  {
    auto txn = StoreOf(**ra).BeginRead();
    ASSERT_TRUE(txn.ok());
    engine::LogHull hull;
    ASSERT_TRUE((*txn)->GetLogHull(&hull).ok());
    uint64_t last = 0;
    ASSERT_TRUE((*txn)->LastLogSeq(&last).ok());
    EXPECT_NE(last, 0u);
    EXPECT_EQ(hull.base, last);
    EXPECT_TRUE(hull.checkpoints.empty());
  }
  EXPECT_EQ(testing::RawGet(a, "meta", "format"), format1) << "opening alone changes nothing";
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_EQ((*rb)->Collections()->size(), 1u);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE((*rb)->Get("c", "r" + std::to_string(i)).ok());
  ASSERT_TRUE((*ra)->Put("c", "new", {{"x", Value{int64_t{1}}}}).ok());
  // A write inside the table, so to `fresh`, checksummed by XXH3 (format 13).
  EXPECT_EQ(testing::RawGet(a, "meta", "format"),
            std::string(reinterpret_cast<const char*>(&kFormatFastSums), 4));
  EXPECT_TRUE(Check(StoreOf(**ra)).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*rb)->Get("c", "new").ok());
}

// A build that keeps no hull (an older daemon still running while a newer CLI upgrades
// the replica) moves the log without telling the hull: a log whose end is not where the
// hull last saw it has a hull that knows nothing of what came before, and skips nothing.
TEST(LmdbStore, ALogMovedBehindTheHullsBackSkipsNothingOfIt) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  {
    auto ra = CreateReplica(a);
    auto rb = CreateReplica(b);
    ASSERT_TRUE(ra.ok() && rb.ok());
    for (int i = 0; i < 10; ++i)
      ASSERT_TRUE((*rb)->Put("c", "r" + std::to_string(i), {{"x", Value{int64_t{i}}}}).ok());
    ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
    auto txn = StoreOf(**ra).BeginRead();
    ASSERT_TRUE(txn.ok());
    engine::LogHull hull;
    ASSERT_TRUE((*txn)->GetLogHull(&hull).ok());
    ASSERT_FALSE(hull.checkpoints.empty());
    EXPECT_EQ(hull.base, 0u);
  }
  const uint64_t elsewhere = 3;  // not where the log ends
  const std::string end(reinterpret_cast<const char*>(&elsewhere), sizeof elsewhere);
  testing::RawPut(a, "meta", "log-hull-end", end);
  auto ra = OpenReplica(a);
  ASSERT_TRUE(ra.ok());
  engine::VersionVector all = (*ra)->Meta()->vv;
  EXPECT_EQ((*ra)->SkipHeld(all, 0).value(), 0u);
  {
    auto txn = StoreOf(**ra).BeginRead();
    ASSERT_TRUE(txn.ok());
    engine::LogHull hull;
    ASSERT_TRUE((*txn)->GetLogHull(&hull).ok());
    EXPECT_TRUE(hull.checkpoints.empty());
    uint64_t last = 0;
    ASSERT_TRUE((*txn)->LastLogSeq(&last).ok());
    EXPECT_NE(last, 3u);
    EXPECT_EQ(hull.base, last);
  }
  EXPECT_TRUE(Check(StoreOf(**ra)).ok());
  // The next write takes the hull from there.
  ASSERT_TRUE((*ra)->Put("c", "new", {{"x", Value{int64_t{1}}}}).ok());
  auto rb = OpenReplica(b);
  ASSERT_TRUE(rb.ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*rb)->Get("c", "new").ok());
  EXPECT_TRUE(Check(StoreOf(**ra)).ok());
}

// The check finds a hull that leaves out a field: a sync would skip it.
TEST(LmdbStore, CheckFindsAFieldOutsideTheLogsHull) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  {
    auto ra = CreateReplica(a);
    ASSERT_TRUE(ra.ok());
    ASSERT_TRUE((*ra)->Put("c", "r", {{"x", Value{int64_t{1}}}}).ok());
    ASSERT_TRUE(Check(StoreOf(**ra)).ok());
  }
  engine::LogHull bad;  // no events at all, yet a checkpoint past the field
  bad.checkpoints.push_back(engine::LogCheckpoint{1, {}});
  const std::string bytes = engine::EncodeLogHull(bad);
  testing::RawPut(a, "meta", "log-hull", bytes);
  auto ra = OpenReplica(a);
  ASSERT_TRUE(ra.ok());
  Status st = Check(StoreOf(**ra));
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_NE(st.message().find("hull"), std::string::npos) << st.ToString();
}

// Fields past the end of the table are appended without a search; one transaction that
// mixes appends, writes in the middle and rewrites of what it appended keeps every
// field and log entry right.
TEST(LmdbStore, AppendsMixedWithWritesInTheMiddleKeepEveryField) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Put("c", "m", {{"x", Value{int64_t{0}}}}).ok());
  ASSERT_TRUE((*r)->Write([](engine::Batch& b) {
                    for (const char* id : {"n", "o", "a", "p", "o", "b", "q", "m", "q"})
                      TANDEM_RETURN_IF_ERROR(b.Put("c", id, "x", Value{std::string(id)}));
                    TANDEM_RETURN_IF_ERROR(b.Put("b", "z", "x", Value{int64_t{1}}));
                    return b.Put("d", "a", "x", Value{int64_t{2}});
                  })
                  .ok());
  for (const char* id : {"a", "b", "m", "n", "o", "p", "q"}) {
    auto rec = (*r)->Get("c", id);
    ASSERT_TRUE(rec.ok()) << id;
    EXPECT_EQ(rec->fields.at("x").scalar, Value{std::string(id)}) << id;
  }
  EXPECT_TRUE((*r)->Get("b", "z").ok());
  EXPECT_TRUE((*r)->Get("d", "a").ok());
  CheckReport rep;
  ASSERT_TRUE(Check(StoreOf(**r), &rep).ok());
  EXPECT_EQ(rep.fields, 9u);
  EXPECT_EQ(rep.log_entries, 9u);
}

// A replica of format 2 opens and syncs as before. It becomes format 3 (which older
// builds refuse) once it stores where a peer's log ended, and 13 once it writes a field
// (checksummed by XXH3, in a run of change-log entries): they could not read either.
TEST(LmdbStore, AReplicaOfFormatTwoIsRaisedByWhatItWrites) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  auto format = [](uint32_t f) { return std::string(reinterpret_cast<const char*>(&f), 4); };
  {
    auto rb = CreateReplica(b);
    ASSERT_TRUE(rb.ok());
  }
  testing::RawPut(b, "meta", "format", format(2));
  auto ra = CreateReplica(a);
  auto rb = OpenReplica(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(testing::RawGet(b, "meta", "format"), format(2)) << "opening alone changes nothing";
  // A peer with an empty log: b keeps its state, with no mark, and writes no field.
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_EQ(testing::RawGet(b, "meta", "format"), format(2));
  ASSERT_TRUE((*ra)->Put("c", "x", {{"v", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*rb)->Get("c", "x").ok());
  EXPECT_EQ(testing::RawGet(b, "meta", "format"), format(kFormatFastSums));
  EXPECT_NE((*rb)->Peer((*ra)->Meta()->id)->mark, 0u);
}

// Two processes on one replica: one raises the format past what the other read at open;
// the other, raising it for its own reason to less, leaves it where it is (an older
// build must go on refusing what it cannot read).
TEST(LmdbStore, RaisingTheFormatNeverLowersWhatAnotherProcessWrote) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  auto format = [](uint32_t f) { return std::string(reinterpret_cast<const char*>(&f), 4); };
  auto ra = CreateReplica(a);
  ASSERT_TRUE(ra.ok());
  ASSERT_EQ(testing::RawGet(a, "meta", "format"), format(kFormatMark));
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // another process, with a newer build
    testing::RawPut(a, "meta", "format", format(kFormatLazyLog));
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  engine::VersionVector collected;
  collected.Raise((*ra)->Meta()->id, 1);
  auto txn = StoreOf(**ra).BeginWrite();
  ASSERT_TRUE(txn.ok());
  ASSERT_TRUE((*txn)->PutCollected(collected).ok());  // needs format 4
  ASSERT_TRUE((*txn)->Commit().ok());
  ra->reset();
  EXPECT_EQ(testing::RawGet(a, "meta", "format"), format(kFormatLazyLog));
}

// A field written again leaves its earlier log entry in place (the write touches no page
// of the log's past), readers see each field once at its latest change, and a commit
// removes stale entries a slice at a time once they pile up: the log stays bounded.
TEST(LmdbStore, AFieldWrittenAgainLeavesAStaleEntryThatReadersSkipAndCompactionRemoves) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  auto format = [](uint32_t f) { return std::string(reinterpret_cast<const char*>(&f), 4); };
  auto ra = CreateReplica(a);
  auto rb = CreateReplica(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  const int fields = 2000;
  auto write_all = [&](int round) {
    ASSERT_TRUE((*ra)
                    ->Write([&](engine::Batch& bt) {
                      for (int i = 0; i < fields; ++i)
                        TANDEM_RETURN_IF_ERROR(bt.Put("c", "r" + std::to_string(i / 10),
                                                      "f" + std::to_string(i % 10),
                                                      Value{int64_t{round}}));
                      return Status::Ok();
                    })
                    .ok());
  };
  write_all(0);
  // Any field write by a process alone with the replica raises it to 13 (checksums).
  EXPECT_EQ(testing::RawGet(a, "meta", "format"), format(kFormatFastSums));
  write_all(1);
  // Each transaction's entries are stored in a few runs, not one stored entry each.
  EXPECT_LE(testing::RawCount(a, "log", MDB_INTEGERKEY), size_t{2 * fields / 50});
  EXPECT_EQ(LogEntries(**ra), uint64_t{2 * fields}) << "left stale";
  {  // Counting what a peer has not acknowledged reads no field: stale entries count.
    auto txn = StoreOf(**ra).BeginRead();
    ASSERT_TRUE(txn.ok());
    uint64_t n = 0;
    ASSERT_TRUE((*txn)->CountLog(0, 1000000, &n).ok());
    EXPECT_EQ(n, uint64_t{2 * fields});
    ASSERT_TRUE((*txn)->CountLog(0, 150, &n).ok());
    EXPECT_EQ(n, uint64_t{150});
    ASSERT_TRUE((*txn)->CountLog(UINT64_MAX, 10, &n).ok());
    EXPECT_EQ(n, uint64_t{0});
  }
  // Readers see every field once, at its latest change.
  auto page = (*ra)->CollectDeltas(0, 100000, nullptr);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->deltas.size(), size_t{fields});
  EXPECT_TRUE(page->done);
  for (const auto& d : page->deltas)
    EXPECT_EQ(d.state.markers.begin()->second.value, Value{int64_t{1}});
  auto changes = (*ra)->Changes(0, 100000);
  ASSERT_TRUE(changes.ok());
  EXPECT_EQ(changes->changes.size(), size_t{fields / 10});
  {
    CheckReport rep;
    ASSERT_TRUE(Check(StoreOf(**ra), &rep).ok());
    EXPECT_EQ(rep.log_entries, size_t{fields});
  }
  // A peer gets each field once, however often it was written.
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_EQ((*rb)->Peer((*ra)->Meta()->id)->fields_received, uint64_t{fields});
  // Thirty more rounds: without compaction the log would hold 64,000 entries.
  for (int round = 2; round < 32; ++round) write_all(round);
  const size_t log = LogEntries(**ra);
  EXPECT_LE(log, fields + kCompactFloor + fields / 4 + 2 * kCompactSlice);
  EXPECT_GE(log, size_t{fields});
  {
    CheckReport rep;
    ASSERT_TRUE(Check(StoreOf(**ra), &rep).ok());
    EXPECT_EQ(rep.log_entries, size_t{fields});
  }
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  auto rec = (*rb)->Get("c", "r7");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->fields.at("f3").scalar, Value{int64_t{31}});
  EXPECT_EQ((*rb)->Peer((*ra)->Meta()->id)->fields_received, uint64_t{2 * fields});
}

// Builds before format 7 stored one change-log entry per seq. Such a log, runs written
// after it, reads, seeks into a run, compacts and syncs as one log.
TEST(LmdbStore, AChangeLogOfSingleEntriesAndRunsReadsCompactsAndSyncsAsOne) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  Options o;
  o.compact_floor = 0;  // compaction at every commit that leaves a stale entry
  o.compact_slice = 7;
  auto put_round = [](engine::Replica& r, int round, int records) {
    ASSERT_TRUE(r.Write([&](engine::Batch& bt) {
                   for (int i = 0; i < records; ++i)
                     for (const char* f : {"x", "y"})
                       TANDEM_RETURN_IF_ERROR(
                           bt.Put("c", "r" + std::to_string(i), f, Value{int64_t{round}}));
                   return Status::Ok();
                 }).ok());
  };
  {
    auto ra = CreateReplica(a, o);
    ASSERT_TRUE(ra.ok());
    for (int round = 0; round < 3; ++round) put_round(**ra, round, 20);
    for (int i = 15; i < 20; ++i) ASSERT_TRUE((*ra)->Delete("c", "r" + std::to_string(i)).ok());
  }
  size_t stored = 0;
  {  // The log as an older build leaves it: each entry stored on its own, not counted.
    testing::RawWriter w(a);
    MDB_txn* txn = w.txn;
    const MDB_dbi log = w.Open("log", MDB_INTEGERKEY), meta = w.Open("meta");
    std::vector<std::pair<uint64_t, std::string>> entries;
    MDB_cursor* cur;
    ASSERT_EQ(mdb_cursor_open(txn, log, &cur), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      uint64_t key_seq;
      std::memcpy(&key_seq, k.mv_data, 8);
      ASSERT_TRUE(IsLogRun(View(v)));
      ASSERT_TRUE(ForEachLogEntry(key_seq, View(v), [&](uint64_t seq, std::string_view fk) {
                    entries.emplace_back(seq, std::string(fk));
                    return true;
                  }).ok());
    }
    mdb_cursor_close(cur);
    ASSERT_GE(entries.size(), 40u);
    stored = entries.size();
    ASSERT_EQ(mdb_drop(txn, log, 0), 0);
    for (auto& [seq, fk] : entries) {
      MDB_val ek{8, &seq}, ev = Val(fk);
      ASSERT_EQ(mdb_put(txn, log, &ek, &ev, MDB_APPEND), 0);
    }
    MDB_val ck = Val("log-entries");
    ASSERT_EQ(mdb_del(txn, meta, &ck, nullptr), 0);
    uint32_t six = kFormatLazyLog;
    MDB_val fk = Val("format"), fv{4, &six};
    ASSERT_EQ(mdb_put(txn, meta, &fk, &fv, 0), 0);
    // Nor does it know `fresh`: its values go where an older build would have put them.
    const MDB_dbi fields = w.Open("fields"), fresh = w.Open("fresh");
    ASSERT_EQ(mdb_cursor_open(txn, fresh, &cur), 0);
    std::vector<std::pair<std::string, std::string>> values;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
      values.emplace_back(View(k), View(v));
    mdb_cursor_close(cur);
    ASSERT_EQ(mdb_drop(txn, fresh, 0), 0);
    for (auto& [field_key, value] : values) {
      MDB_val ek = Val(field_key), ev = Val(value);
      ASSERT_EQ(mdb_put(txn, fields, &ek, &ev, 0), 0);
    }
    w.Commit();
  }
  auto ra = OpenReplica(a, o);
  ASSERT_TRUE(ra.ok());
  EXPECT_EQ(LogEntries(**ra), stored);
  EXPECT_TRUE(Check(StoreOf(**ra)).ok());
  // Collecting the deleted records writes no field, only the log's count: the format
  // goes to 7 all the same, so that no older build writes the log and leaves it wrong.
  {
    engine::Replica::CollectStats stats;
    ASSERT_TRUE((*ra)->Collect((*ra)->Meta()->vv, &stats, 0).ok());
    EXPECT_EQ(stats.collected, 9u);  // not the newest log entry's field
    const uint32_t seven = kFormatLogRuns;
    EXPECT_EQ(testing::RawGet(a, "meta", "format"),
              std::string(reinterpret_cast<const char*>(&seven), 4));
    EXPECT_TRUE(Check(StoreOf(**ra)).ok());
  }
  // Runs after the single entries; overwrites leave stale entries in both, and each
  // commit compacts a slice of them.
  for (int round = 3; round < 8; ++round) {
    put_round(**ra, round, round % 2 ? 20 : 7);
    ASSERT_TRUE(Check(StoreOf(**ra)).ok()) << round;
  }
  // A cursor in the middle of a run: the entries after it, in order.
  uint64_t before = 0;
  {
    auto txn = StoreOf(**ra).BeginRead();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->LastLogSeq(&before).ok());
  }
  put_round(**ra, 8, 5);  // one run of ten entries
  {
    auto txn = StoreOf(**ra).BeginRead();
    ASSERT_TRUE(txn.ok());
    uint64_t last = 0;
    ASSERT_TRUE((*txn)->LastLogSeq(&last).ok());
    EXPECT_EQ(last, before + 10);
    std::vector<uint64_t> seqs;
    ASSERT_TRUE((*txn)
                    ->ScanLog(before + 4,
                              [&](uint64_t seq, const engine::FieldKey&) {
                                seqs.push_back(seq);
                                return true;
                              })
                    .ok());
    EXPECT_EQ(seqs, (std::vector<uint64_t>{before + 5, before + 6, before + 7, before + 8,
                                           before + 9, before + 10}));
    uint64_t n = 0;
    ASSERT_TRUE((*txn)->CountLog(before + 4, 100, &n).ok());
    EXPECT_EQ(n, 6u);
  }
  // Every field once, at its latest change, to a peer.
  auto rb = CreateReplica(b);
  ASSERT_TRUE(rb.ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  for (int i = 0; i < 20; ++i) {
    auto rec = (*rb)->Get("c", "r" + std::to_string(i));
    ASSERT_TRUE(rec.ok()) << i;
    const int64_t want = i < 5 ? 8 : 7;
    EXPECT_EQ(rec->fields.at("x").scalar, Value{want}) << i;
  }
  EXPECT_EQ((*rb)->Peer((*ra)->Meta()->id)->fields_received, 40u);
  // A repack leaves the live entries only, counted.
  engine::Replica::CollectStats stats;
  ASSERT_TRUE((*ra)->Collect((*ra)->Meta()->vv, &stats, 0).ok());
  CheckReport rep;
  ASSERT_TRUE(Check(StoreOf(**ra), &rep).ok());
  EXPECT_EQ(rep.log_entries, 40u);
}

// A run's entries read back as written, and a malformed run (a corrupt replica
// directory) is an error, never a crash or an entry at a made-up seq.
TEST(LmdbStore, ChangeLogRunsReadBackAndRefuseMalformedBytes) {
  LogRunWriter w;
  const std::vector<std::pair<uint64_t, std::string>> want = {{7, std::string("\x02r1\0\x05", 5)},
                                                              {8, std::string("\x02r1\0\x06", 5)},
                                                              {20, std::string("\x02r10\0\x05", 6)},
                                                              {21, std::string("\x03z", 2)}};
  for (const auto& [seq, key] : want) w.Add(seq, key);
  std::vector<std::pair<uint64_t, std::string>> got;
  auto collect = [&](uint64_t seq, std::string_view key) {
    got.emplace_back(seq, std::string(key));
    return true;
  };
  ASSERT_TRUE(IsLogRun(w.bytes()));
  ASSERT_TRUE(ForEachLogEntry(w.first(), w.bytes(), collect).ok());
  EXPECT_EQ(got, want);
  // A field key stored on its own, as older builds did.
  got.clear();
  ASSERT_TRUE(ForEachLogEntry(9, std::string("\x02r\0\x01", 4), collect).ok());
  EXPECT_EQ(got,
            (std::vector<std::pair<uint64_t, std::string>>{{9, std::string("\x02r\0\x01", 4)}}));
  const std::string run(w.bytes());
  const std::vector<std::string> bad = {
      std::string("\0\0\2\0\0\1a", 7),          // a version this build does not know
      std::string("\0\0\1", 3),                 // no entry
      std::string("\0\0\1\0\0\5ab", 8),         // a key longer than what is left
      std::string("\0\0\1\0\0\1a\0\1\1b", 11),  // a second entry at the same seq
      std::string("\0\0\1\0\3\1a", 7),          // more shared than the previous key
      std::string("\0\0\1\0\0\0", 6),           // an empty key
      std::string("\0\0\1\x80", 4),             // a truncated varint
      run.substr(0, run.size() - 1),
      std::string(),
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    got.clear();
    EXPECT_EQ(ForEachLogEntry(1, bad[i], collect).code(), Code::kCorrupt) << i;
  }
  // Every truncation and every byte changed: an error or entries in ascending seqs.
  for (size_t n = 0; n <= run.size(); ++n) {
    for (int flip : {0, 1, 0x80}) {
      std::string b = run.substr(0, n);
      if (flip && n > 0) b[n - 1] = static_cast<char>(b[n - 1] ^ flip);
      got.clear();
      if (ForEachLogEntry(1, b, collect).ok()) {
        for (size_t j = 1; j < got.size(); ++j) EXPECT_LT(got[j - 1].first, got[j].first);
      }
    }
  }
}

// Collection removes field states and their log entries in place: the replica stays
// consistent, says it may no longer be opened by a build that would take back what was
// collected, and remembers what it collected across a reopen.
TEST(LmdbStore, CollectionShrinksTheTablesAndIsRememberedAcrossAReopen) {
  testing::TempDir tmp;
  const std::string dir = tmp / "db";
  engine::FieldState stale;
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    for (int i = 0; i < 30; ++i)
      ASSERT_TRUE((*r)->Put("c", "r" + std::to_string(i), {{"x", Value{int64_t{i}}}}).ok());
    stale = (*r)->GetState("c", "r4")->fields.at("x");
    ASSERT_TRUE((*r)->Write([](engine::Batch& b) {
                      for (int i = 0; i < 20; ++i)
                        TANDEM_RETURN_IF_ERROR(b.Delete("c", "r" + std::to_string(i)));
                      return b.Put("c", "last", "x", Value{int64_t{1}});
                    })
                    .ok());
    CheckReport before;
    ASSERT_TRUE(Check(StoreOf(**r), &before).ok());
    EXPECT_EQ(before.fields, 31u);
    const uint64_t bytes_before = StoreOf(**r).DataBytes().value();
    engine::Replica::CollectStats stats;
    ASSERT_TRUE((*r)->Collect((*r)->Meta()->vv, &stats, 5).ok());
    EXPECT_EQ(stats.collected, 20u);
    EXPECT_TRUE(stats.repacked);
    EXPECT_LE(StoreOf(**r).DataBytes().value(), bytes_before);
    CheckReport after;
    ASSERT_TRUE(Check(StoreOf(**r), &after).ok());
    EXPECT_EQ(after.fields, 11u);
    EXPECT_EQ(after.log_entries, 11u);
    EXPECT_FALSE((*r)->Get("c", "r4").ok());
    EXPECT_TRUE((*r)->Get("c", "r24").ok());
  }
  // The rewrite left out the change-log entries the deletions had made stale.
  EXPECT_EQ(testing::RawCount(dir, "log", MDB_INTEGERKEY), 11u);
  // At least the format that says so (6 here: the deletions wrote fields again).
  uint32_t format = 0;
  const std::string raw = testing::RawGet(dir, "meta", "format");
  ASSERT_EQ(raw.size(), 4u);
  std::memcpy(&format, raw.data(), 4);
  EXPECT_GE(format, kFormatCollected);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok());
  auto collected = (*r)->Collected();
  ASSERT_TRUE(collected.ok());
  EXPECT_FALSE(collected->empty());
  size_t changed = 9;
  ASSERT_TRUE((*r)->ApplyDeltas({{{"c", "r4", "x"}, stale}}, &changed).ok());
  EXPECT_EQ(changed, 0u);
  EXPECT_FALSE((*r)->Get("c", "r4").ok());
  ASSERT_TRUE((*r)->Put("c", "r4", {{"x", Value{int64_t{7}}}}).ok());  // written anew: lives
  EXPECT_EQ((*r)->Get("c", "r4")->fields.at("x").scalar, Value{int64_t{7}});
  EXPECT_TRUE(Check(StoreOf(**r)).ok());
}

// Blobs survive a reopen, are checked chunk by chunk, and mark the replica format 5; a
// replica from before the blob tables gets them at its first open.
// `data` attached to files/f.doc as text, read from memory.
Result<engine::BlobRef> AttachText(engine::Replica& r, const std::string& data) {
  size_t at = 0;
  return r.Attach(
      "files", "f", "doc",
      [&](char* buf, size_t cap) -> Result<size_t> {
        const size_t n = std::min(cap, data.size() - at);
        std::memcpy(buf, data.data() + at, n);
        at += n;
        return n;
      },
      "text/plain");
}

// Every pass of ScanPasses reads one snapshot: what is written during the first is in
// none (an export's header and rows agree on the fields there are).
TEST(LmdbStore, ScanPassesReadOneSnapshot) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Put("c", "r1", {{"a", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*r)->Put("c", "r2", {{"a", Value{int64_t{2}}}}).ok());
  std::vector<std::string> first, second;
  ASSERT_TRUE((*r)->ScanPasses("c", {[&](const engine::Record& rec) {
                                       // Written by another writer meanwhile, in effect.
                                       EXPECT_TRUE((*r)->Put("c", "r2", {{"b", Value{true}}}).ok());
                                       EXPECT_TRUE((*r)->Put("c", "r3", {{"a", Value{true}}}).ok());
                                       for (const auto& [n, f] : rec.fields)
                                         first.push_back(rec.id + "." + n);
                                       return true;
                                     },
                                     [&](const engine::Record& rec) {
                                       for (const auto& [n, f] : rec.fields)
                                         second.push_back(rec.id + "." + n);
                                       return true;
                                     }})
                  .ok());
  EXPECT_EQ(first, (std::vector<std::string>{"r1.a", "r2.a"}));
  EXPECT_EQ(second, first);
  EXPECT_TRUE((*r)->Get("c", "r3").ok());
}

// A blob's reader may write to the replica from its sink, even what makes the map grow
// (which waits for every transaction of the process to end): no snapshot is open then.
TEST(LmdbStore, ABlobsReaderMayWriteFromItsSink) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db", TinyMap());
  ASSERT_TRUE(r.ok());
  const std::string data(engine::kBlobChunkBytes * 9 + 7, 'b');
  auto ref = AttachText(**r, data);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  std::string back;
  int writes = 0;
  Status st = (*r)->ReadBlob(ref->hash, [&](std::string_view b) {
    back.append(b);
    return (*r)->Put("c", std::to_string(writes++), {{"v", Value{std::string(2 << 20, 'x')}}});
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(back == data);
  EXPECT_EQ(writes, 10);
}

TEST(LmdbStore, BlobsAreDurableCheckedAndRaiseTheFormat) {
  testing::TempDir tmp;
  const std::string dir = tmp / "db";
  const std::string data(engine::kBlobChunkBytes * 2 + 100, 'q');
  engine::BlobRef ref;
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    auto got = AttachText(**r, data);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ref = *got;
  }
  uint32_t format = 0;
  const std::string raw_format = testing::RawGet(dir, "meta", "format");
  ASSERT_EQ(raw_format.size(), 4u);
  std::memcpy(&format, raw_format.data(), 4);
  EXPECT_GE(format, kFormatBlobs);
  {
    auto r = OpenReplica(dir);
    ASSERT_TRUE(r.ok());
    std::string back;
    ASSERT_TRUE((*r)->ReadBlob(ref.hash,
                               [&](std::string_view b) {
                                 back.append(b);
                                 return Status::Ok();
                               })
                    .ok());
    EXPECT_EQ(back, data);
    CheckReport rep;
    ASSERT_TRUE(Check(StoreOf(**r), &rep).ok());
    EXPECT_EQ(rep.blobs, 1u);
    EXPECT_EQ(rep.blob_bytes, data.size());
    // A damaged chunk is found.
    auto info = (*r)->Blob(ref.hash);
    ASSERT_TRUE(info.ok() && *info);
    auto txn = (*r)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->DeleteChunk((*info)->chunks[2]).ok());
    ASSERT_TRUE((*txn)->PutChunk((*info)->chunks[2], "not the chunk").ok());
    ASSERT_TRUE((*txn)->Commit().ok());
    Status st = Check(StoreOf(**r));
    EXPECT_EQ(st.code(), Code::kCorrupt);
    EXPECT_NE(st.message().find("chunk 2 does not match its hash"), std::string::npos)
        << st.ToString();
    // Storing the chunk's bytes again mends it.
    txn = (*r)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(
        (*txn)->PutChunk((*info)->chunks[2], data.substr(2 * engine::kBlobChunkBytes)).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
    EXPECT_TRUE(Check(StoreOf(**r)).ok());
  }
}

}  // namespace
}  // namespace tandem::storage
