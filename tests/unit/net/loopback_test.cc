// The in-process transport: each side on its own thread, every message encoded.
#include "tandem/net/loopback.h"

#include <gtest/gtest.h>

#include <string>

#include "../engine/sync_harness.h"

namespace tandem::net {
namespace {

using engine::Node;

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
  Node a('a'), b('b');
  Load(a.replica, "a", 6000);
  Load(b.replica, "b", 4000);
  auto res = SyncLoopback(a.replica, b.replica);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_TRUE(res->caught_up);
  EXPECT_EQ(res->fields_applied, 2u * (6000 + 4000));
  EXPECT_GT(res->messages, 8u);
  EXPECT_EQ(Count(a.replica), 2u * 10000);
  EXPECT_EQ(Count(b.replica), 2u * 10000);
  auto rec = b.replica.Get("items", "a5999");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(std::get<int64_t>(rec->fields.at("n").scalar), 5999);

  // Nothing new: nothing applied, and it still ends.
  auto again = SyncLoopback(b.replica, a.replica);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->caught_up);
  EXPECT_EQ(again->fields_applied, 0u);
}

// An error on one side ends the sync with that error, whichever thread met it.
TEST(Loopback, AnErrorOnEitherSideEndsIt) {
  Node a('a'), copy('a');
  Load(a.replica, "a", 2000);
  auto res = SyncLoopback(a.replica, copy.replica);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.status().ToString().find("our own replica id"), std::string::npos)
      << res.status().ToString();
}

}  // namespace
}  // namespace tandem::net
