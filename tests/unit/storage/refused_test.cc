// The LMDB store's records of fields whose incoming state was refused for good
// (engine::ReadTxn::ListRefused): durable, and holding a watermark back until the field
// has seen what the refused state had.
#include <gtest/gtest.h>

#include "../../integration/process.h"
#include "../../integration/raw_lmdb.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::FieldKey;
using engine::ReplicaId;
using engine::Value;
using engine::VersionVector;

TEST(Refused, ARecordSurvivesAReopenAndHoldsTheClaimUntilTheFieldHasSeenIt) {
  testing::TempDir tmp;
  ReplicaId h;
  h.bytes.fill(7);
  const FieldKey key{"c", "k", "v"};
  VersionVector unseen;
  unseen.Raise(h, 1);
  {
    auto r = CreateReplica(tmp / "db");
    ASSERT_TRUE(r.ok());
    auto txn = (*r)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->PutRefused(key, unseen).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  auto r = OpenReplica(tmp / "db");
  ASSERT_TRUE(r.ok());
  {
    auto txn = (*r)->store().BeginRead();
    ASSERT_TRUE(txn.ok());
    std::optional<VersionVector> got;
    ASSERT_TRUE((*txn)->GetRefused(key, &got).ok());
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, unseen);
    std::vector<FieldKey> listed;
    ASSERT_TRUE((*txn)
                    ->ListRefused([&](const FieldKey& k, const VersionVector& v) {
                      listed.push_back(k);
                      EXPECT_EQ(v, unseen);
                      return true;
                    })
                    .ok());
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0], key);
  }
  // A claim of h's first two events: the field has seen none of h, so none is taken.
  VersionVector claim;
  claim.Raise(h, 2);
  ASSERT_TRUE((*r)->MergeVersionVector(claim).ok());
  EXPECT_EQ((*r)->Meta()->vv.Get(h), 0u);
  // h's own state of the field arrives: the claim goes through, and the record goes.
  engine::FieldState s;
  engine::ApplyPut(s, engine::Dot{h, 1}, engine::MakeHlc(1'700'000'000'000, 0), Value{int64_t{1}});
  ASSERT_TRUE((*r)->ApplyDeltas({engine::FieldDelta{key, s}}).ok());
  ASSERT_TRUE((*r)->MergeVersionVector(claim).ok());
  EXPECT_EQ((*r)->Meta()->vv.Get(h), 2u);
  auto txn = (*r)->store().BeginRead();
  ASSERT_TRUE(txn.ok());
  std::optional<VersionVector> got;
  ASSERT_TRUE((*txn)->GetRefused(key, &got).ok());
  EXPECT_FALSE(got.has_value());
}

// Records `unseen` as refused for `key`, in a transaction of its own.
void PutRecord(engine::Replica& r, const FieldKey& key, const VersionVector& unseen) {
  auto txn = r.store().BeginWrite();
  ASSERT_TRUE(txn.ok());
  ASSERT_TRUE((*txn)->PutRefused(key, unseen).ok());
  ASSERT_TRUE((*txn)->Commit().ok());
}

// The meta keys of the records of refused fields, read directly.
std::vector<std::string> RefusedKeys(const std::string& dir) {
  testing::RawReader raw(dir, "meta");
  MDB_cursor* cur;
  EXPECT_EQ(mdb_cursor_open(raw.txn, raw.dbi, &cur), 0);
  std::vector<std::string> keys;
  const std::string prefix = "refused/";
  MDB_val k{prefix.size(), const_cast<char*>(prefix.data())}, v;
  for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    std::string key(static_cast<char*>(k.mv_data), k.mv_size);
    if (key.compare(0, prefix.size(), prefix) != 0) break;
    keys.push_back(std::move(key));
  }
  mdb_cursor_close(cur);
  return keys;
}

// A damaged record (LMDB keeps no checksums) must not stop every later watermark merge,
// and so every sync: it reads as none, is passed over, and Check counts it without
// failing (a backup holding one still restores). A later version's record is passed over.
TEST(Refused, ADamagedRecordIsPassedOverAndCountedAndStopsNoMerge) {
  testing::TempDir tmp;
  const std::string dir = tmp / "db";
  ReplicaId h;
  h.bytes.fill(7);
  const FieldKey good{"c", "k", "v"}, hit{"c", "k", "w"};
  VersionVector unseen;
  unseen.Raise(h, 1);
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    PutRecord(**r, hit, unseen);
  }
  // The record of `hit` is damaged in place, one no build wrote appears beside it, and
  // one of a later version.
  const std::vector<std::string> keys = RefusedKeys(dir);
  ASSERT_EQ(keys.size(), 1u);
  testing::RawPut(dir, "meta", keys[0], std::string("\x01\x05", 2) + "c");
  testing::RawPut(dir, "meta", "refused/0123456789abcdef", std::string("\x01\x09", 2));
  testing::RawPut(dir, "meta", "refused/fedcba9876543210", std::string("\x02later", 6));
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok());
  PutRecord(**r, good, unseen);
  CheckReport report;
  ASSERT_TRUE(Check(dynamic_cast<LmdbStore&>((*r)->store()), &report).ok());
  EXPECT_EQ(report.refused_damaged, 2u);
  {
    auto txn = (*r)->store().BeginRead();
    ASSERT_TRUE(txn.ok());
    std::optional<VersionVector> got;
    ASSERT_TRUE((*txn)->GetRefused(hit, &got).ok());
    EXPECT_FALSE(got.has_value());
    std::vector<FieldKey> listed;
    ASSERT_TRUE((*txn)
                    ->ListRefused([&](const FieldKey& k, const VersionVector&) {
                      listed.push_back(k);
                      return true;
                    })
                    .ok());
    EXPECT_EQ(listed, std::vector<FieldKey>{good});
  }
  // A merge goes through, and the sound record still holds h back.
  VersionVector claim;
  claim.Raise(h, 2);
  ASSERT_TRUE((*r)->MergeVersionVector(claim).ok());
  EXPECT_EQ((*r)->Meta()->vv.Get(h), 0u);
  // A refusal of `hit` again writes a sound record over the damaged one.
  PutRecord(**r, hit, unseen);
  ASSERT_TRUE(Check(dynamic_cast<LmdbStore&>((*r)->store()), &report).ok());
  EXPECT_EQ(report.refused_damaged, 1u);
  r->reset();
  EXPECT_EQ(RefusedKeys(dir).size(), 4u);  // nothing dropped
}

}  // namespace
}  // namespace tandem::storage
