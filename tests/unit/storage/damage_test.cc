// Field values damaged on disk: refused where they are read and by the integrity check,
// never read as another state (which a merge would then take as what the replica holds).
#include <gtest/gtest.h>
#include <lmdb.h>

#include <fstream>
#include <initializer_list>
#include <string>

#include "../../../storage/src/field_value.h"
#include "../../integration/process.h"
#include "../../integration/raw_lmdb.h"
#include "log_entries.h"
#include "sync_once.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Value;

// Field "c/r.a" as stored, made with the library so that "c" and "a" are the first names
// interned: varint(index of "c") "r" \0 varint(index of "a") (format.md).
const std::string kKey("\0r\0\x01", 4);
const std::string kKeyOfS("\0s\0\x01", 4);  // c/s.a, written after it

std::string MakeReplicaWithAString(const std::string& dir, size_t size = 100) {
  auto r = CreateReplica(dir);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE((*r)->Put("c", "r", {{"a", Value{std::string(size, 'x')}}}).ok());
  return testing::RawGet(dir, "fields", kKey);
}

// Makes a replica in `dir` holding c/<id>.a = 1 for each id, written in that order.
void MakeRecords(const std::string& dir, std::initializer_list<const char*> ids) {
  auto r = CreateReplica(dir);
  ASSERT_TRUE(r.ok());
  for (const char* id : ids) ASSERT_TRUE((*r)->Put("c", id, {{"a", Value{int64_t{1}}}}).ok());
}

// Scans collection c; *seen gets how many records it read.
Status ScanC(engine::Replica& r, int* seen) {
  *seen = 0;
  return r.Scan("c", "", [&](const engine::Record&) {
    ++*seen;
    return true;
  });
}

TEST(Damage, AChangedByteInAFieldValueIsRefusedNotReadAsAnotherValue) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  std::string v = MakeReplicaWithAString(dir);
  ASSERT_FALSE(v.empty());
  ASSERT_EQ(v[0], '\0') << "written with a checksum";
  // One letter of the string becomes another: still a valid state, a different one.
  v[v.find('x') + 50] = 'y';
  testing::RawPut(dir, "fields", kKey, v);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto got = (*r)->Get("c", "r");
  EXPECT_EQ(got.status().code(), Code::kCorrupt) << got.status().ToString();
  EXPECT_NE(got.status().message().find("checksum"), std::string::npos) << got.status().ToString();
  EXPECT_NE(got.status().message().find("c/r.a"), std::string::npos) << got.status().ToString();
  // A write over it reads it first: refused too, so nothing is merged into the damage.
  Status st = (*r)->Put("c", "r", {{"a", Value{int64_t{1}}}});
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("c/r.a"), std::string::npos) << st.ToString();
  st = (*r)->Scan("c", "", [](const engine::Record&) { return true; });
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("c/r.a"), std::string::npos) << st.ToString();
  st = Check(*dynamic_cast<LmdbStore*>(&(*r)->store()));
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_NE(st.message().find("c/r.a"), std::string::npos) << st.ToString();
}

// The check names every damaged value (up to eight), not the first alone.
TEST(Damage, TheCheckNamesEveryDamagedValue) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  std::string v = MakeReplicaWithAString(dir);
  ASSERT_FALSE(v.empty());
  {
    auto r = OpenReplica(dir);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Put("c", "s", {{"a", Value{std::string(200, 'x')}}}).ok());
  }
  std::string w = testing::RawGet(dir, "fields", kKeyOfS);
  ASSERT_FALSE(w.empty());
  v[v.find('x') + 50] = 'y';
  w[w.find('x') + 50] = 'y';
  testing::RawPut(dir, "fields", kKey, v);
  testing::RawPut(dir, "fields", kKeyOfS, w);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok());
  Status st = Check(*dynamic_cast<LmdbStore*>(&(*r)->store()));
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_NE(st.message().find("2 field values are damaged (c/r.a, c/s.a)"), std::string::npos)
      << st.ToString();
}

// The two checksums as format.md defines them, on fixed bytes: a build whose hash gave
// other sums (an xxhash before 0.8, say) would refuse every value another build wrote.
TEST(Damage, TheChecksumsAreTheOnesTheFormatDefines) {
  const std::string value = std::string("\0\x05", 2) + "a field state";
  char sum[kValueChecksum];
  FastChecksum(kKey, value.data(), value.size(), sum);
  EXPECT_EQ(std::string(sum, kValueChecksum), std::string("\x6a\x7e\x0e\x61", 4));
  SipChecksum(kKey, value.data(), value.size(), sum);
  EXPECT_EQ(std::string(sum, kValueChecksum), std::string("\x75\xe8\x2d\x29", 4));
}

// Since format 13 a value's checksum is XXH3's; one written before, SipHash's, reads as
// well (a replica raised to 13 keeps them), and a changed byte in either is refused.
TEST(Damage, ValuesOfEitherChecksumAreReadAndTheirDamageRefused) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  const std::string fast = MakeReplicaWithAString(dir);
  ASSERT_GE(fast.size(), 2 + kValueChecksum);
  const size_t n = fast.size() - kValueChecksum;
  char sum[kValueChecksum];
  FastChecksum(kKey, fast.data(), n, sum);
  EXPECT_EQ(fast.substr(n), std::string(sum, kValueChecksum)) << "XXH3's, as format.md says";
  // The same value as a build of format 8 to 12 wrote it.
  std::string sip = fast;
  SipChecksum(kKey, sip.data(), n, sip.data() + n);
  ASSERT_NE(sip, fast);
  for (const std::string& sound : {sip, fast}) {
    SCOPED_TRACE(&sound == &fast ? "XXH3" : "SipHash");
    testing::RawPut(dir, "fields", kKey, sound);
    {
      auto r = OpenReplica(dir);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      auto got = (*r)->Get("c", "r");
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_TRUE(engine::SameValue(got->fields.at("a").scalar, Value{std::string(100, 'x')}));
      EXPECT_TRUE(Check(*dynamic_cast<LmdbStore*>(&(*r)->store())).ok());
    }
    std::string damaged = sound;
    damaged[damaged.find('x') + 50] = 'y';
    testing::RawPut(dir, "fields", kKey, damaged);
    auto r = OpenReplica(dir);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)->Get("c", "r").status().code(), Code::kCorrupt);
    EXPECT_EQ(Check(*dynamic_cast<LmdbStore*>(&(*r)->store())).code(), Code::kCorrupt);
  }
}

// A backup is checked as restore checks it: a damaged replica gets none (a copy of it
// would not restore), and nothing is left at the target.
TEST(Damage, ADamagedReplicaGetsNoBackup) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a", bak = tmp / "bak";
  std::string v = MakeReplicaWithAString(dir);
  v[v.find('x') + 50] = 'y';
  testing::RawPut(dir, "fields", kKey, v);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Status st = Backup(*dynamic_cast<LmdbStore*>(&(*r)->store()), bak);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_NE(st.message().find("no backup made"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("c/r.a"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(bak));
}

// One damaged value stops only what reads its state: other fields are written over
// (past the point where the change log is compacted), deleted, and read.
TEST(Damage, ADamagedValueStopsOnlyWhatReadsIt) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  std::string v = MakeReplicaWithAString(dir);
  ASSERT_FALSE(v.empty());
  v[v.find('x') + 50] = 'y';
  testing::RawPut(dir, "fields", kKey, v);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int round = 0; round < 12; ++round) {
    Status st = (*r)->Write([&](engine::Batch& b) {
      for (int i = 0; i < 1000; ++i)
        TANDEM_RETURN_IF_ERROR(b.Put("c", "o" + std::to_string(i), "n", Value{int64_t{round}}));
      return Status::Ok();
    });
    ASSERT_TRUE(st.ok()) << round << ": " << st.ToString();
  }
  EXPECT_LE(LogEntries(**r), uint64_t{1000 + kCompactFloor + 1000}) << "compacted";
  EXPECT_TRUE((*r)->Delete("c", "o1").ok());
  EXPECT_TRUE((*r)->Get("c", "o2").ok());
  EXPECT_EQ((*r)->Get("c", "r").status().code(), Code::kCorrupt);
}

// A whole value found under another field's key (a damaged key) is refused there.
TEST(Damage, AValueUnderAnotherKeyIsRefused) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  const std::string v = MakeReplicaWithAString(dir);
  {
    auto r = OpenReplica(dir);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Put("c", "s", {{"a", Value{std::string(100, 'z')}}}).ok());
  }
  const std::string other("\0s\0\x01", 4);  // c/s.a
  ASSERT_FALSE(testing::RawGet(dir, "fields", other).empty());
  testing::RawPut(dir, "fields", other, v);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)->Get("c", "r").ok());
  auto got = (*r)->Get("c", "s");
  EXPECT_EQ(got.status().code(), Code::kCorrupt) << got.status().ToString();
}

// A damaged page can hold a key that is no key (LMDB keeps no checksums). A scan that
// meets one past its range ended there as if the range did, and read part of the
// collection as the whole: it fails instead.
TEST(Damage, AScanThatMeetsAMalformedKeyFailsInsteadOfEndingEarly) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  ASSERT_NO_FATAL_FAILURE(MakeRecords(dir, {"r1", "r2", "r3"}));
  // Past every key of "c" (the first name: index 0), under an index no name has.
  testing::RawPut(dir, "fields", std::string("\x7fx\0\x01", 4), std::string("junk"));
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok());
  int seen = 0;
  Status st = ScanC(**r, &seen);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString() << " after " << seen << " records";
  EXPECT_NE(st.message().find("damaged"), std::string::npos) << st.ToString();
  EXPECT_FALSE(Check(StoreOf(**r)).ok());
}

// A damaged byte can also turn a key into another collection's, well formed but out of
// order: the scan ended there too, and `check` passed.
TEST(Damage, AKeyOutOfOrderFailsTheScanAndTheCheck) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  ASSERT_NO_FATAL_FAILURE(MakeRecords(dir, {"record-1", "record-2", "record-3"}));  // in order
  // "c" is name 0 and "a" name 1: record-2's key, its first byte made 1 ("a/record-2.a").
  std::string data;
  {
    std::ifstream in(dir + "/data.mdb", std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string key("\0record-2\0\x01", 11);
  size_t patched = 0;
  for (size_t at = data.find(key); at != std::string::npos; at = data.find(key, at + 1)) {
    data[at] = '\x01';
    ++patched;
  }
  ASSERT_GT(patched, 0u);
  std::ofstream(dir + "/data.mdb", std::ios::binary | std::ios::trunc) << data;
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  int seen = 0;
  Status st = ScanC(**r, &seen);
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString() << " after " << seen << " records";
  EXPECT_FALSE(Check(StoreOf(**r)).ok());
}

// A value written before values had checksums (seq, then the state) reads as it did.
TEST(Damage, AValueWithoutAChecksumStillReads) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  const std::string v = MakeReplicaWithAString(dir);
  ASSERT_GT(v.size(), 10u);
  // Without the leading 0 and the 4 bytes of checksum (format.md).
  testing::RawPut(dir, "fields", kKey, v.substr(1, v.size() - 5));
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto got = (*r)->Get("c", "r");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(engine::SameValue(got->fields["a"].scalar, Value{std::string(100, 'x')}));
  EXPECT_TRUE(Check(*dynamic_cast<LmdbStore*>(&(*r)->store())).ok());
  // Written again, it gets one.
  ASSERT_TRUE((*r)->Put("c", "r", {{"a", Value{int64_t{2}}}}).ok());
  r->reset();
  EXPECT_EQ(testing::RawGet(dir, testing::RawFieldTable(dir, kKey), kKey)[0], '\0');
}

// A damaged value does not stop the sync of the others: its sender withholds it (its
// CaughtUp claims nothing the peer lacked of what the log's hull says the field may
// hold), and a peer's state of the field is held aside. Small, and large enough to go in
// pieces.
TEST(Damage, ADamagedValueIsWithheldFromPeersAndTheirsIsHeldAside) {
  for (const size_t size : {size_t{100}, size_t{1'500'000}})
    for (const bool in_seq : {false, true}) {
      SCOPED_TRACE(std::to_string(size) + (in_seq ? ", its log position" : ", its state"));
      testing::TempDir tmp;
      const std::string dir = tmp / "a";
      std::string v = MakeReplicaWithAString(dir, size);
      if (in_seq)
        v[1] = static_cast<char>(v[1] ^ 0x04);  // another position (format.md): looks stale
      else
        v[v.find('x') + 50] = 'y';
      {
        auto a = OpenReplica(dir);
        ASSERT_TRUE(a.ok());
        for (int i = 0; i < 30; ++i)
          ASSERT_TRUE((*a)->Put("c", "o" + std::to_string(i), {{"n", Value{int64_t{i}}}}).ok());
      }
      testing::RawPut(dir, "fields", kKey, v);
      auto a = OpenReplica(dir);
      auto b = CreateReplica(tmp / "b");
      ASSERT_TRUE(a.ok() && b.ok());
      for (int round = 0; round < 2; ++round) {
        const Status st = SyncOnce(**a, **b);
        ASSERT_TRUE(st.ok()) << round << ": " << st.ToString();
        EXPECT_TRUE((*b)->Get("c", "o29").ok());
        EXPECT_EQ((*b)->Get("c", "r").status().code(), Code::kNotFound);
        EXPECT_EQ((*b)->Meta()->vv.Get((*a)->Meta()->id), 0u) << "nothing of a's claimed";
        // `tandem status` counts it as not yet held there.
        bool exact = false;
        auto unheld = (*a)->CountUnheld((*a)->Peer((*b)->Meta()->id).value(), 100000, &exact);
        ASSERT_TRUE(unheld.ok()) << unheld.status().ToString();
        EXPECT_GE(*unheld, 1u);
      }
      // b writes the field: its state is held aside at a (nothing can be joined into the
      // damage), and the rest still goes both ways.
      ASSERT_TRUE((*b)->Put("c", "r", {{"a", Value{std::string("mended")}}}).ok());
      ASSERT_TRUE((*b)->Put("c", "p", {{"n", Value{int64_t{1}}}}).ok());
      ASSERT_TRUE(SyncOnce(**a, **b).ok());
      EXPECT_TRUE((*a)->Get("c", "p").ok());
      EXPECT_EQ((*a)->Get("c", "r").status().code(), Code::kCorrupt);
      auto aside = (*a)->Quarantined();
      ASSERT_TRUE(aside.ok());
      ASSERT_EQ(aside->size(), 1u);
      EXPECT_NE(aside->front().reason.find("damaged"), std::string::npos) << aside->front().reason;
      EXPECT_EQ((*a)->Meta()->vv.Get((*b)->Meta()->id), 0u) << "nor is b's put claimed";
    }
}

// A state held aside for its writer's binding, and one refused for good, while the field
// was sound; then the field is damaged. The watermark stays below their events as for a
// field not held at all, the merge goes on, the held state stays held (nothing can be
// joined into the damage), and a peer's new state of the field is held aside too.
TEST(Damage, StatesKeptAsideForADamagedFieldCapTheWatermarkAndTheMergeGoesOn) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  std::string v = MakeReplicaWithAString(dir);
  engine::ReplicaId peer, other;
  peer.bytes.fill(7);
  other.bytes.fill(9);
  {
    auto a = OpenReplica(dir);
    ASSERT_TRUE(a.ok());
    engine::FieldDelta d{{"c", "r", "a"}, {}};
    engine::ApplyPut(d.state, engine::Dot{peer, 1}, engine::MakeHlc(1, 0), Value{int64_t{1}});
    const engine::AdmitFn hold = [](const engine::FieldDelta&, const engine::FieldState*) {
      return engine::Admission::kHold;
    };
    size_t held = 0;
    ASSERT_TRUE(
        (*a)->ApplyBatch(peer, {d}, 1, hold, nullptr, nullptr, nullptr, nullptr, nullptr, &held)
            .ok());
    EXPECT_EQ(held, 1u);
    // Its context has seen another replica's event, which the watermark must not claim
    // on the strength of the refused state alone.
    engine::FieldDelta refused{{"c", "r", "a"}, {}};
    refused.state.ctx.Raise(other, 5);
    engine::ApplyPut(refused.state, engine::Dot{peer, 2}, engine::MakeHlc(2, 0), Value{int64_t{2}});
    const engine::AdmitFn refuse = [](const engine::FieldDelta&, const engine::FieldState*) {
      return engine::Admission::kRefuse;
    };
    ASSERT_TRUE((*a)->ApplyBatch(peer, {refused}, 2, refuse).ok());
  }
  v[v.find('x') + 50] = 'y';
  testing::RawPut(dir, "fields", kKey, v);
  auto a = OpenReplica(dir);
  ASSERT_TRUE(a.ok());
  engine::VersionVector claim;
  claim.Raise(peer, 2);
  claim.Raise(other, 5);
  const Status st = (*a)->CompletePeerSync(peer, claim, true);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ((*a)->Meta()->vv.Get(peer), 0u);
  EXPECT_EQ((*a)->Meta()->vv.Get(other), 0u);
  auto judged = (*a)->JudgeHeld([](const engine::FieldDelta&, const engine::FieldState*) {
    return engine::Admission::kAccept;
  });
  ASSERT_TRUE(judged.ok()) << judged.status().ToString();
  EXPECT_EQ(judged->applied, 0u);
  EXPECT_EQ(judged->held, 1u);
  engine::FieldDelta next{{"c", "r", "a"}, {}};
  engine::ApplyPut(next.state, engine::Dot{peer, 3}, engine::MakeHlc(3, 0), Value{int64_t{3}});
  size_t aside = 0;
  ASSERT_TRUE((*a)->ApplyBatch(peer, {next}, 3, nullptr, nullptr, nullptr, nullptr, nullptr,
                               nullptr, &aside)
                  .ok());
  EXPECT_EQ(aside, 1u);
  EXPECT_EQ((*a)->Get("c", "r").status().code(), Code::kCorrupt) << "left as it is";
}

// A damaged value stops neither collection nor a rebase: both pass it over, collection
// counts it and then collects no blob (what the damaged state references is unknown).
TEST(Damage, CollectionAndRebasePassADamagedValueOver) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  std::string v = MakeReplicaWithAString(dir);
  v[v.find('x') + 50] = 'y';
  {
    auto a = OpenReplica(dir);
    ASSERT_TRUE(a.ok());
    for (int i = 0; i < 20; ++i)
      ASSERT_TRUE((*a)->Put("c", "o" + std::to_string(i), {{"n", Value{int64_t{i}}}}).ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*a)->Delete("c", "o" + std::to_string(i)).ok());
    ASSERT_TRUE((*a)->Put("c", "z", {{"n", Value{int64_t{1}}}}).ok());  // the newest, kept
  }
  testing::RawPut(dir, testing::RawFieldTable(dir, kKey), kKey, v);
  auto a = OpenReplica(dir);
  ASSERT_TRUE(a.ok());
  engine::Replica::CollectStats stats;
  const Status st = (*a)->Collect((*a)->Meta()->vv, &stats, 4);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(stats.damaged, 1u);
  EXPECT_EQ(stats.collected, 10u);
  EXPECT_EQ((*a)->Get("c", "o3").status().code(), Code::kNotFound);
  EXPECT_TRUE((*a)->Get("c", "o13").ok());
  EXPECT_EQ((*a)->Get("c", "r").status().code(), Code::kCorrupt) << "left as it is";
  engine::VersionVector collected;
  collected.Raise((*a)->Meta()->id, 1);
  auto rebased =
      (*a)->Rebase(collected, true, {}, engine::CollectionFilter{}, nullptr, nullptr, false, 4);
  ASSERT_TRUE(rebased.ok()) << rebased.status().ToString();
  EXPECT_EQ((*a)->Get("c", "r").status().code(), Code::kCorrupt);
}

}  // namespace
}  // namespace tandem::storage
