// The LMDB store's records of fields whose incoming state was refused for good
// (engine::ReadTxn::ListRefused): durable, and holding a watermark back until the field
// has seen what the refused state had.
#include <gtest/gtest.h>

#include "../../integration/process.h"
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

}  // namespace
}  // namespace tandem::storage
