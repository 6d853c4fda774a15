// Collection on a replica that leaves collections out: it collects in the collections it
// takes by what its filtered sessions bore out there, and what it removed that way never
// comes back, never leaves another replica short, and never costs it a collection it
// takes later.
#include <gtest/gtest.h>

#include "sync_harness.h"

namespace tandem::engine {
namespace {

VersionVector Holding(Node& n) { return n.replica.Meta()->Holding(); }

// A session that takes one collection alone (as a device that may read no other).
SessionOptions Taking(const std::string& collection) {
  SessionOptions o;
  o.accept = CollectionFilter::Only({collection});
  return o;
}

ReadTxn::CollectedIn CollectedIn(Node& n) {
  ReadTxn::CollectedIn out;
  auto txn = n.replica.store().BeginRead();
  EXPECT_TRUE(txn.ok());
  if (txn.ok()) {
    EXPECT_TRUE((*txn)->GetCollectedIn(&out).ok());
  }
  return out;
}

uint64_t CollectWith(Node& n, const VersionVector& absorbed) {
  Replica::CollectStats stats;
  Status st = n.replica.Collect(absorbed, &stats);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return stats.collected;
}

std::vector<FieldDelta> Everything(Node& n) {
  auto page = n.replica.CollectDeltas(0, 1 << 20, nullptr);
  EXPECT_TRUE(page.ok() && page->done);
  return page.ok() ? page->deltas : std::vector<FieldDelta>{};
}

// b takes products from a, never secrets. Its version vector stays behind, yet it
// collects a's deletion in products by what it bore out there; what it removed is
// remembered for products alone: an old state of the record does not bring it back, and
// secrets, taken later, arrive whole.
TEST(CollectScope, AReplicaThatLeavesACollectionOutCollectsInTheOnesItTakes) {
  Node a(1), b(2);
  Fill(a, "products", 3, "p");
  Fill(a, "secrets", 2, "s");
  const std::vector<FieldDelta> before = Everything(a);
  const SessionOptions products = Taking("products");
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_TRUE(a.replica.Write([](Batch& t) { return t.Delete("products", "p0"); }).ok());
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_FALSE(b.replica.Get("products", "p0").ok());
  ASSERT_FALSE(b.Vv().Covers(a.Vv())) << "a filtered session merges no watermark";

  // Every member holds the deletion (a, and b in what it takes): b removes it (what the
  // newest log entry holds waits for the next run).
  const VersionVector all = VersionVector::Meet(Holding(a), Holding(b));
  EXPECT_GE(CollectWith(b, all), 1u);
  auto in = CollectedIn(b);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in.begin()->first, "products");
  EXPECT_TRUE(in.begin()->second.Covers(a.Vv()));
  // Not told to peers: its version vector does not cover those events everywhere.
  EXPECT_TRUE(b.replica.Collected()->empty());
  EXPECT_TRUE(b.replica.Meta()->vv.Covers(b.replica.Collected().value()));

  // A stale copy of the record offered again stays gone.
  ASSERT_TRUE(b.replica.ApplyDeltas(before).ok());
  EXPECT_FALSE(b.replica.Get("products", "p0").ok()) << "collected, then taken back";
  EXPECT_TRUE(b.replica.Get("secrets", "s0").ok()) << "the same states brought secrets";

  // A replica taking secrets from a (a pass from the start) holds what a holds.
  Node c(3);
  ASSERT_TRUE(Link(c, a, products).Run().ok());
  ASSERT_TRUE(a.replica.Write([](Batch& t) { return t.Delete("products", "p1"); }).ok());
  ASSERT_TRUE(Link(c, a, products).Run().ok());
  EXPECT_GE(CollectWith(c, VersionVector::Meet(Holding(a), Holding(c))), 2u);
  ASSERT_TRUE(Link(c, a).Run().ok());
  EXPECT_TRUE(c.replica.Get("secrets", "s0").ok());
  EXPECT_TRUE(c.replica.Get("secrets", "s1").ok());
  EXPECT_EQ(a.Dump(), c.Dump());
}

// b collected p0's deletion by what it bore out of products; later an unfiltered
// session with a (which collected nothing) moves its version vector over the deletion.
// A replica that never saw the deletion then syncs with b first: b's Hello says it
// collected the deletion (its vector covers it now), so the stale replica rebases and
// drops p0, rather than merging a watermark that claims the deletion without it, which
// would keep p0 live there for good.
TEST(CollectScope, AReplicaBehindWhatALimitedOneCollectedRebasesOnIt) {
  Node a(1), b(2), stale(3);
  Fill(a, "products", 2, "p");
  Fill(a, "secrets", 1, "s");
  ASSERT_TRUE(Link(stale, a).Run().ok());
  ASSERT_TRUE(stale.replica.Get("products", "p0").ok());
  const SessionOptions products = Taking("products");
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_TRUE(a.replica.Write([](Batch& t) { return t.Delete("products", "p0"); }).ok());
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  // The stale replica is left out (past the horizon at b, say).
  ASSERT_GE(CollectWith(b, VersionVector::Meet(Holding(a), Holding(b))), 1u);
  ASSERT_TRUE(Link(b, a).Run().ok());
  ASSERT_TRUE(b.Vv().Covers(a.Vv()));
  EXPECT_TRUE(b.replica.Collected()->Covers(a.Vv())) << "told now: its vector covers it";
  {
    Link link(stale, b);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(stale.replica.Get("products", "p0").ok());
  ASSERT_TRUE(Link(stale, a).Run().ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
  EXPECT_EQ(stale.Dump(), b.Dump());
}

// b collected p0's deletion by what it bore out of products (and a deletion of its own
// everywhere), then takes secrets too, in a session with p, which rebases on it. b streams
// slowly and takes p's secret, never held before, during it: nothing of secrets, which
// b's collection never judged, is dropped at p, and p ends holding what a holds.
TEST(CollectScope, ARebaseOnALimitedReplicaThatWidensDropsOnlyWhatItCollected) {
  Node a(1), b(2), p(3);
  Fill(a, "products", 3, "p");
  Fill(a, "secrets", 1, "s");
  ASSERT_TRUE(Link(p, a).Run().ok());
  const SessionOptions products = Taking("products");
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_TRUE(a.replica.Write([](Batch& t) { return t.Delete("products", "p0"); }).ok());
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  // b deletes a record of its own, which only a holds besides: a collection p is behind.
  Fill(b, "products", 4, "b");
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_TRUE(b.replica.Write([](Batch& t) { return t.Delete("products", "b0"); }).ok());
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_GE(CollectWith(b, VersionVector::Meet(Holding(a), Holding(b))), 2u);
  ASSERT_FALSE(CollectedIn(b).empty());
  ASSERT_FALSE(p.Vv().Covers(b.replica.Collected().value()));
  SessionOptions slow;
  slow.batch_fields = 1;
  slow.window = 1;
  {
    Link link(p, b, {}, slow);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_TRUE(p.replica.Get("secrets", "s0").ok()) << "dropped as collected by b";
  ASSERT_TRUE(Link(p, a).Run().ok());
  EXPECT_EQ(p.Dump(), a.Dump());
}

// A replica restored from before a deletion reaches the group only through b, which
// collected the deletion by what it bore out of products while its vector stayed
// behind. b's Hello says what it collected in products, so the replica rebases there
// and drops the record (b no longer holds its tombstone to send), records that it did,
// and its next session with b is no rebase.
TEST(CollectScope, AReplicaBehindALimitedOnesCollectionDropsItThroughItAlone) {
  Node a(1), b(2), stale(3);
  Fill(a, "secrets", 1, "s");
  const SessionOptions products = Taking("products");
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_TRUE(
      a.replica
          .Write([](Batch& t) { return t.Put("products", "p5", "name", Value{std::string("x")}); })
          .ok());
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  ASSERT_TRUE(Link(stale, b).Run().ok());  // as a backup taken now
  ASSERT_TRUE(stale.replica.Get("products", "p5").ok());
  ASSERT_TRUE(a.replica.Write([](Batch& t) { return t.Delete("products", "p5"); }).ok());
  ASSERT_TRUE(Link(b, a, products).Run().ok());
  Fill(b, "notes", 1, "n");  // the newest log entry, which collection keeps for now
  ASSERT_EQ(CollectWith(b, VersionVector::Meet(Holding(a), Holding(b))), 1u);
  ASSERT_FALSE(b.replica.Collected()->Covers(a.Vv())) << "b's vector is behind";
  {
    Link link(stale, b);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(stale.replica.Get("products", "p5").ok()) << "deleted and collected";
  EXPECT_EQ(CollectedIn(stale).count("products"), 1u);
  {
    Link link(stale, b);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_FALSE(link.sa.stats().rebased) << "it holds what b removed now";
  }
  ASSERT_TRUE(Link(stale, a).Run().ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
}

// The same with requests sent in the Hello: the stale replica's early request does not
// cover what b collected in products, so both sides take it as not taken, and the usual
// request (a rebase) follows. A requester of an older build, which reads no collectedIn,
// has its early request taken by both sides' rule: the session ends caught up, never
// waiting on a request neither sends (its record stays, as without collectedIn).
TEST(CollectScope, AnEarlyRequestIsJudgedByWhatThePeerCollectedInACollection) {
  for (const bool older : {false, true}) {
    SCOPED_TRACE(older ? "older requester" : "this build");
    Node a(1), b(2), stale(3);
    const SessionOptions products = Taking("products");
    ASSERT_TRUE(
        a.replica.Write([](Batch& t) { return t.Put("products", "p5", "n", Value{int64_t{1}}); })
            .ok());
    ASSERT_TRUE(Link(b, a, products).Run().ok());
    ASSERT_TRUE(Link(stale, a).Run().ok());  // its vector covers what it holds: it asks early
    ASSERT_TRUE(a.replica.Write([](Batch& t) { return t.Delete("products", "p5"); }).ok());
    ASSERT_TRUE(Link(b, a, products).Run().ok());
    Fill(b, "notes", 1, "n");
    ASSERT_EQ(CollectWith(b, VersionVector::Meet(Holding(a), Holding(b))), 1u);
    SessionOptions early;
    early.early_request = true;
    Link link(stale, b, early, early);
    int requests = 0;
    link.from_a = [&](Message& m) {
      if (std::holds_alternative<SyncRequest>(m)) ++requests;
      if (auto* h = std::get_if<Hello>(&m); h && older) {
        h->reads_collected_in = false;
        h->collected_in.clear();
      }
    };
    link.from_b = [&](Message& m) {  // an older build reads no collectedIn
      if (auto* h = std::get_if<Hello>(&m); h && older) h->collected_in.clear();
    };
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_EQ(requests, older ? 0 : 1);
    EXPECT_EQ(link.sa.stats().rebased, !older);
    EXPECT_EQ(stale.replica.Get("products", "p5").ok(), older);
  }
}

}  // namespace
}  // namespace tandem::engine
