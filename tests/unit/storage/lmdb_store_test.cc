// The LMDB store under the engine's Replica.
#include "tandem/storage/lmdb_store.h"

#include <gtest/gtest.h>

#include "../../integration/process.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Value;

// Found by the simulator: rewriting the field that holds the newest change-log entry
// handed out the same seq again, so a peer whose cursor sat at that seq never saw it.
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

TEST(LmdbStore, MapGrowsOnDemand) {
  testing::TempDir tmp;
  Options opt;
  opt.initial_map_bytes = 64 << 10;  // far too small for what follows
  auto r = CreateReplica(tmp / "db", opt);
  ASSERT_TRUE(r.ok());
  for (int batch = 0; batch < 20; ++batch) {
    ASSERT_TRUE((*r)->Write([&](engine::Batch& b) {
                      for (int i = 0; i < 200; ++i)
                        TANDEM_RETURN_IF_ERROR(b.Put("c", std::to_string(batch * 200 + i), "v",
                                                     Value{std::string(100, 'x')}));
                      return Status::Ok();
                    })
                    .ok());
  }
  CheckReport rep;
  ASSERT_TRUE(Check(StoreOf(**r), &rep).ok());
  EXPECT_EQ(rep.fields, 4000u);
  r->reset();
  auto again = OpenReplica(tmp / "db", opt);  // reopens with the grown size
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->Get("c", "3999").ok());
}

// Found by bench/net: when the new names interned at commit were what filled the map,
// the map never grew, and every retry failed the same way ("busy: name table").
TEST(LmdbStore, MapGrowsWhenNewNamesFillIt) {
  testing::TempDir tmp;
  Options opt;
  opt.initial_map_bytes = 64 << 10;
  auto r = CreateReplica(tmp / "db", opt);
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
    ASSERT_TRUE(
        (*r)->ApplyBatch(peer, {engine::FieldDelta{{"c", "r", "f"}, f}}, 33,
                         [](const engine::FieldDelta&) { return engine::Admission::kAccept; })
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

}  // namespace
}  // namespace tandem::storage
