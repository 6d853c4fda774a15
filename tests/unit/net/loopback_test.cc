// The in-process transport: each side on its own thread, every message encoded.
#include "tandem/net/loopback.h"

#include <gtest/gtest.h>

#include <string>

#include "tandem/engine/memory_store.h"
#include "tandem/storage/replica.h"

namespace tandem::net {
namespace {

engine::ReplicaId Id(char c) {
  engine::ReplicaId id;
  id.bytes.fill(static_cast<uint8_t>(c));
  return id;
}

struct Side {
  explicit Side(char id)
      : r(
            std::make_unique<engine::MemoryStore>(Id(id)), [this] { return now++; },
            storage::Blake2b256) {}
  uint64_t now = 1;
  engine::Replica r;
};

// Writes `records` records of two fields, 500 records per transaction.
void Load(engine::Replica& r, const std::string& prefix, int records) {
  for (int n = 0; n < records; n += 500)
    ASSERT_TRUE(r.Write([&](engine::Batch& b) {
                   for (int i = n; i < n + 500 && i < records; ++i) {
                     const std::string id = prefix + std::to_string(i);
                     TANDEM_RETURN_IF_ERROR(b.Put("items", id, "name", engine::Value{id}));
                     TANDEM_RETURN_IF_ERROR(
                         b.Put("items", id, "n", engine::Value{static_cast<int64_t>(i)}));
                   }
                   return Status::Ok();
                 }).ok());
}

uint64_t Count(engine::Replica& r) {
  uint64_t n = 0;
  EXPECT_TRUE(r.Scan("items", "", [&](const engine::Record& rec) {
                 n += rec.fields.size();
                 return true;
               }).ok());
  return n;
}

// Enough fields each way for many batches in flight at once in both directions.
TEST(Loopback, BothSidesConvergeEachOnItsOwnThread) {
  Side a('a'), b('b');
  Load(a.r, "a", 6000);
  Load(b.r, "b", 4000);
  auto res = SyncLoopback(a.r, b.r);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_TRUE(res->caught_up);
  EXPECT_EQ(res->fields_applied, 2u * (6000 + 4000));
  EXPECT_GT(res->messages, 8u);
  EXPECT_EQ(Count(a.r), 2u * 10000);
  EXPECT_EQ(Count(b.r), 2u * 10000);
  auto rec = b.r.Get("items", "a5999");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(std::get<int64_t>(rec->fields.at("n").scalar), 5999);

  // Nothing new: nothing applied, and it still ends.
  auto again = SyncLoopback(b.r, a.r);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->caught_up);
  EXPECT_EQ(again->fields_applied, 0u);
}

// An error on one side ends the sync with that error, whichever thread met it.
TEST(Loopback, AnErrorOnEitherSideEndsIt) {
  Side a('a'), copy('a');
  Load(a.r, "a", 2000);
  auto res = SyncLoopback(a.r, copy.r);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.status().ToString().find("our own replica id"), std::string::npos)
      << res.status().ToString();
}

}  // namespace
}  // namespace tandem::net
