// Deltas between replicas and version vectors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "replica_node.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {
namespace {

// ---- sync ---------------------------------------------------------------------------

void ExpectSameData(Node& a, Node& b,
                    const std::vector<std::pair<std::string, std::string>>& keys) {
  for (const auto& [c, id] : keys) {
    auto sa = a.replica.GetState(c, id);
    auto sb = b.replica.GetState(c, id);
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(*sa, *sb) << c << "/" << id;
    auto ra = a.replica.Get(c, id);
    auto rb = b.replica.Get(c, id);
    EXPECT_EQ(ra.ok(), rb.ok()) << c << "/" << id;
    if (ra.ok() && rb.ok()) {
      EXPECT_EQ(*ra, *rb) << c << "/" << id;
    }
  }
}

TEST(ReplicaTest, DeltaExchangeConverges) {
  Node a(1, 1000), b(2, 1500);
  ASSERT_TRUE(a.replica.Put("users", "u1", {{"name", S("Ann")}, {"age", I(30)}}).ok());
  ASSERT_TRUE(a.replica.Incr("stats", "s", "visits", 3).ok());
  ASSERT_TRUE(a.replica.Add("users", "u1", "tags", S("x")).ok());
  Sync(a, b);
  ExpectSameData(a, b, {{"users", "u1"}, {"stats", "s"}});
  // Concurrent edits on both sides.
  ASSERT_TRUE(a.replica.Put("users", "u1", {{"name", S("Anna")}}).ok());
  ASSERT_TRUE(a.replica.Incr("stats", "s", "visits", 2).ok());
  ASSERT_TRUE(a.replica.Remove("users", "u1", "tags", S("x")).ok());
  ASSERT_TRUE(b.replica.Incr("stats", "s", "visits", 10).ok());
  ASSERT_TRUE(b.replica.Add("users", "u1", "tags", S("x")).ok());
  ASSERT_TRUE(b.replica.Add("users", "u1", "tags", S("y")).ok());
  ASSERT_TRUE(b.replica.Put("users", "u2", {{"name", S("Bo")}}).ok());
  ASSERT_TRUE(b.replica.Delete("users", "u1").ok());
  ASSERT_TRUE(b.replica.Put("users", "u1", {{"age", I(31)}}).ok());
  Sync(a, b);
  Sync(b, a);
  std::vector<std::pair<std::string, std::string>> keys = {
      {"users", "u1"}, {"users", "u2"}, {"stats", "s"}};
  ExpectSameData(a, b, keys);
  Record u1 = a.Get("users", "u1");
  EXPECT_TRUE(SameValue(Scalar(u1, "name"), S("Anna")));  // concurrent with the delete
  EXPECT_TRUE(SameValue(Scalar(u1, "age"), I(31)));       // written after the delete
  // b's delete cleared every tag it had (its own re-adds included); a's remove of x was
  // concurrent with the delete, so the field stays live, as an empty set.
  ASSERT_TRUE(u1.fields.count("tags"));
  EXPECT_EQ(u1.fields.at("tags").kind, Kind::kSet);
  EXPECT_TRUE(u1.fields.at("tags").set.empty());
  EXPECT_EQ(a.Get("stats", "s").fields.at("visits").count, 15);
  EXPECT_TRUE(SameValue(Scalar(a.Get("users", "u2"), "name"), S("Bo")));
  // Both version vectors now cover everything: nothing left to send.
  VersionVector avv = a.Meta().vv, bvv = b.Meta().vv;
  EXPECT_TRUE(a.AllDeltas(&bvv).empty());
  EXPECT_TRUE(b.AllDeltas(&avv).empty());
  EXPECT_EQ(a.Meta().vv, b.Meta().vv);
}

TEST(ReplicaTest, DeleteConcurrentWithIncrementKeepsOnlyUnseenIncrements) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Incr("c", "r", "n", 5).ok());
  Sync(a, b);
  ASSERT_TRUE(b.replica.Delete("c", "r").ok());
  ASSERT_TRUE(a.replica.Incr("c", "r", "n", 2).ok());
  Sync(a, b);
  Sync(b, a);
  for (Node* n : {&a, &b}) {
    Record r = n->Get("c", "r");
    EXPECT_EQ(r.fields.at("n").count, 2);
  }
}

TEST(ReplicaTest, ApplyDeltasReportsChangesAndIsIdempotent) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}, {"y", I(2)}}).ok());
  auto deltas = a.AllDeltas();
  ASSERT_EQ(deltas.size(), 2u);
  size_t changed = 99;
  ASSERT_TRUE(b.replica.ApplyDeltas(deltas, &changed).ok());
  EXPECT_EQ(changed, 2u);
  auto log_after_first = b.replica.Changes(0, 100);
  ASSERT_TRUE(log_after_first.ok());
  ASSERT_TRUE(b.replica.ApplyDeltas(deltas, &changed).ok());
  EXPECT_EQ(changed, 0u);
  // Unchanged fields are not rewritten, so the change feed does not move.
  auto log_after_second = b.replica.Changes(0, 100);
  ASSERT_TRUE(log_after_second.ok());
  EXPECT_EQ(log_after_second->next_cursor, log_after_first->next_cursor);
  // Applying deltas does not advance our own version vector: that is MergeVersionVector's job.
  EXPECT_TRUE(b.Meta().vv.empty());
  // Empty input is fine.
  ASSERT_TRUE(b.replica.ApplyDeltas({}, &changed).ok());
  EXPECT_EQ(changed, 0u);
}

TEST(ReplicaTest, ApplyDeltasShowsInTheChangeFeed) {
  Node a(1), b(2);
  ASSERT_TRUE(b.replica.Put("c", "local", {{"x", I(1)}}).ok());
  auto before = b.replica.Changes(0, 100);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(a.replica.Put("c", "remote", {{"x", I(1)}}).ok());
  ASSERT_TRUE(b.replica.ApplyDeltas(a.AllDeltas()).ok());
  auto page = b.replica.Changes(before->next_cursor, 100);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->changes.size(), 1u);
  EXPECT_EQ(page->changes[0].id, "remote");
}

TEST(ReplicaTest, ApplyDeltasObservesRemoteClock) {
  Node a(1, 50000), b(2, 100);  // b's wall clock is far behind
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", S("a")}}).ok());
  Sync(a, b);
  EXPECT_GE(b.Meta().clock, MakeHlc(50000, 0));
  ASSERT_TRUE(b.replica.Put("c", "r", {{"x", S("b")}}).ok());
  auto st = b.replica.GetState("c", "r");
  ASSERT_TRUE(st.ok());
  EXPECT_GT(st->fields.at("x").markers.begin()->second.hlc, MakeHlc(50000, 0));
  // b's write causally follows a's, and a adopts it.
  Sync(b, a);
  EXPECT_TRUE(SameValue(Scalar(a.Get("c", "r"), "x"), S("b")));
  auto conflicts = a.replica.Conflicts("c", "r");
  ASSERT_TRUE(conflicts.ok());
  EXPECT_TRUE(conflicts->empty());
}

TEST(ReplicaTest, ApplyDeltasRejectsInvalidKeysAndAppliesNothing) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  auto good = a.AllDeltas();
  ASSERT_EQ(good.size(), 1u);
  std::vector<FieldKey> bad_keys = {
      {"", "r", "x"},
      {"c", "", "x"},
      {"c", "r", ""},
      {"c", "r", "id"},
      {std::string("c\0d", 3), "r", "x"},
      {"c", std::string("r\0", 2), "x"},
      {"c", "r", "\xff"},
      {std::string(kMaxCollectionName + 1, 'c'), "r", "x"},
      {"c", std::string(kMaxRecordId + 1, 'r'), "x"},
      {"c", "r", std::string(kMaxFieldName + 1, 'f')},
  };
  for (const FieldKey& k : bad_keys) {
    std::vector<FieldDelta> deltas = good;
    deltas.push_back(FieldDelta{k, good[0].state});
    size_t changed = 99;
    Status st = b.replica.ApplyDeltas(deltas, &changed);
    EXPECT_EQ(st.code(), Code::kInvalidArgument)
        << k.collection << "/" << k.record << "/" << k.field;
    EXPECT_EQ(b.replica.Get("c", "r").status().code(), Code::kNotFound);
  }
  auto cols = b.replica.Collections();
  ASSERT_TRUE(cols.ok());
  EXPECT_TRUE(cols->empty());
}

TEST(ReplicaTest, ApplyDeltasRejectsClaimsOfOurOwnUnissuedEvents) {
  Node a(1), b(2);
  ASSERT_TRUE(b.replica.Put("c", "mine", {{"x", I(1)}}).ok());  // b has issued event 1
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  std::vector<FieldDelta> deltas = a.AllDeltas();
  // A forged state naming b's event 2, which b never issued.
  FieldState forged;
  ApplyPut(forged, Dot{b.id, 2}, MakeHlc(1, 0), I(666));
  deltas.push_back(FieldDelta{FieldKey{"c", "forged", "x"}, forged});
  ReplicaMeta before = b.Meta();
  Status st = b.replica.ApplyDeltas(deltas);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_EQ(b.replica.Get("c", "r").status().code(), Code::kNotFound);  // valid one too
  EXPECT_EQ(b.replica.Get("c", "forged").status().code(), Code::kNotFound);
  EXPECT_EQ(b.Meta(), before);
  // b's next event is still number 2, and it is not shadowed by anything.
  ASSERT_TRUE(b.replica.Put("c", "mine", {{"x", I(2)}}).ok());
  EXPECT_EQ(b.Meta().vv.Get(b.id), 2u);
  EXPECT_TRUE(SameValue(Scalar(b.Get("c", "mine"), "x"), I(2)));
}

TEST(ReplicaTest, ApplyDeltasAcceptsOurOwnEventsEchoedBack) {
  Node a(1), b(2);
  ASSERT_TRUE(b.replica.Put("c", "r", {{"x", I(1)}}).ok());
  Sync(b, a);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"y", I(2)}}).ok());
  size_t changed = 0;
  Status st = b.replica.ApplyDeltas(a.AllDeltas(), &changed);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(changed, 1u);  // x came back unchanged; y is new
  Record r = b.Get("c", "r");
  EXPECT_EQ(r.fields.size(), 2u);
}

TEST(ReplicaTest, CollectDeltasPagesAndReportsDone) {
  Node a(1);
  for (const char* id : {"r1", "r2", "r3"}) ASSERT_TRUE(a.replica.Put("c", id, {{"x", I(1)}}).ok());
  uint64_t cursor = 0;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto page = a.replica.CollectDeltas(cursor, 1, nullptr);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->deltas.size(), 1u);
    ids.push_back(page->deltas[0].key.record);
    EXPECT_GT(page->next_cursor, cursor);
    cursor = page->next_cursor;
    EXPECT_EQ(page->done, i == 2);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"r1", "r2", "r3"}));
  auto last = a.replica.CollectDeltas(cursor, 1, nullptr);
  ASSERT_TRUE(last.ok());
  EXPECT_TRUE(last->deltas.empty());
  EXPECT_TRUE(last->done);
  EXPECT_EQ(last->next_cursor, cursor);
}

TEST(ReplicaTest, CollectDeltasSkipsWhatThePeerAlreadyHas) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "r2", {{"x", I(1)}}).ok());
  Sync(a, b);
  ASSERT_TRUE(a.replica.Put("c", "r2", {{"x", I(2)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "r3", {{"x", I(3)}}).ok());
  VersionVector bvv = b.Meta().vv;
  auto deltas = a.AllDeltas(&bvv);
  ASSERT_EQ(deltas.size(), 2u);
  EXPECT_EQ(deltas[0].key.record, "r2");
  EXPECT_EQ(deltas[1].key.record, "r3");
  // A skipped delta still advances the cursor.
  auto page = a.replica.CollectDeltas(0, 1, &bvv);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->deltas.empty());
  EXPECT_EQ(page->next_cursor, 1u);
  EXPECT_FALSE(page->done);
}

TEST(ReplicaTest, CollectDeltasIncludesTombstones) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  Sync(a, b);
  ASSERT_TRUE(a.replica.Delete("c", "r").ok());
  Sync(a, b);
  EXPECT_EQ(b.replica.Get("c", "r").status().code(), Code::kNotFound);
}

// ---- version vectors ----------------------------------------------------------------

TEST(ReplicaTest, MergeVersionVector) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  VersionVector peer;
  peer.Raise(Rid(2), 7);
  peer.Raise(Rid(3), 1);
  peer.Raise(a.id, 1);  // our own event, which we did issue
  ASSERT_TRUE(a.replica.MergeVersionVector(peer).ok());
  ReplicaMeta m = a.Meta();
  EXPECT_EQ(m.vv.Get(Rid(2)), 7u);
  EXPECT_EQ(m.vv.Get(Rid(3)), 1u);
  EXPECT_EQ(m.vv.Get(a.id), 1u);
  // Lower values never lower ours.
  VersionVector lower;
  lower.Raise(Rid(2), 3);
  ASSERT_TRUE(a.replica.MergeVersionVector(lower).ok());
  EXPECT_EQ(a.Meta().vv.Get(Rid(2)), 7u);
  ASSERT_TRUE(a.replica.MergeVersionVector(VersionVector{}).ok());
  EXPECT_EQ(a.Meta(), m);
}

TEST(ReplicaTest, MergeVersionVectorRejectsClaimsAboutOurOwnEvents) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  ReplicaMeta before = a.Meta();
  VersionVector claim;
  claim.Raise(Rid(2), 4);
  claim.Raise(a.id, 2);  // we issued only 1
  EXPECT_EQ(a.replica.MergeVersionVector(claim).code(), Code::kCorrupt);
  EXPECT_EQ(a.Meta(), before);  // nothing merged, not even the valid entry
  // Our next dot is 2, as if the claim had never arrived.
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(2)}}).ok());
  EXPECT_EQ(a.Meta().vv.Get(a.id), 2u);
}

}  // namespace
}  // namespace tandem::engine
