// Refusals and watermarks: what a receiver refuses for good (a revoked replica's later
// events, a write without permission) leaves it without the other events the refused
// state carried, and no watermark may claim those.
#include "sync_harness.h"

namespace tandem::engine {
namespace {

// The records of refused fields a replica keeps (ReadTxn::ListRefused).
std::map<std::string, VersionVector> Refused(Node& n) {
  std::map<std::string, VersionVector> out;
  auto txn = n.replica.store().BeginRead();
  EXPECT_TRUE(txn.ok());
  EXPECT_TRUE((*txn)
                  ->ListRefused([&](const FieldKey& k, const VersionVector& unseen) {
                    out[k.collection + "/" + k.record + "." + k.field] = unseen;
                    return true;
                  })
                  .ok());
  return out;
}

// h writes two fields; l, whose events are refused, overwrites the first at its replica;
// x meets l first: it refuses l's state of the first field and takes the second. A later
// session with l that refuses nothing must not let x claim h's first write (its own
// states of h's second write have seen it), or h would skip it when x meets h: x would
// never hold h's value there.
TEST(Refusal, AWatermarkNeverClaimsWhatARefusedStateAloneCarried) {
  Node h(1), l(2), x(3);
  ASSERT_TRUE(h.replica.Put("c", "k", {{"v", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(h.replica.Put("c", "f", {{"v", Value{int64_t{2}}}}).ok());
  ASSERT_TRUE(Link(l, h).Run().ok());
  ASSERT_TRUE(l.replica.Put("c", "k", {{"v", Value{int64_t{9}}}}).ok());
  const ReplicaId lid = Rid(2);
  SessionOptions ox;
  ox.revoked = [lid] { return std::map<ReplicaId, uint64_t>{{lid, 0}}; };
  {
    Link link(x, l, ox, {});
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_refused, 1u);
  }
  EXPECT_EQ(x.replica.Get("c", "k").status().code(), Code::kNotFound);
  ASSERT_TRUE(x.replica.Get("c", "f").ok());
  // Recorded: h's write, which the refused state had seen; not l's, whose value it is.
  VersionVector unseen;
  unseen.Raise(Rid(1), 1);
  EXPECT_EQ(Refused(x), (std::map<std::string, VersionVector>{{"c/k.v", unseen}}));
  {
    Link link(x, l, ox, {});  // nothing new: nothing refused
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_refused, 0u);
  }
  // Until it holds h's first write, x does not claim it.
  EXPECT_LT(x.Vv().Get(Rid(1)), 1u);
  ASSERT_TRUE(Link(x, h, ox, {}).Run().ok());
  auto k = x.replica.Get("c", "k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->fields.at("v").scalar, Value{int64_t{1}});
  EXPECT_EQ(x.Dump(), h.Dump());
  EXPECT_TRUE(Refused(x).empty());  // the field has seen it now
  EXPECT_EQ(x.Vv().Get(Rid(1)), h.Vv().Get(Rid(1)));
}

// m's price and t's, written concurrently, meet at t: its state holds both (siblings),
// while m refuses t's. x meets t first and refuses that state for t's value; m's value
// came with it, and x must not claim it until it holds it, or m would never send it.
TEST(Refusal, AValueConcurrentWithARefusedOneIsNotClaimed) {
  Node t(1), m(2), x(3);
  const ReplicaId tid = Rid(1), mid = Rid(2);
  SessionOptions limited;
  limited.revoked = [tid] { return std::map<ReplicaId, uint64_t>{{tid, 0}}; };
  ASSERT_TRUE(m.replica.Put("prices", "k", {{"v", Value{int64_t{5}}}}).ok());
  ASSERT_TRUE(t.replica.Put("prices", "k", {{"v", Value{int64_t{9}}}}).ok());
  ASSERT_TRUE(Link(m, t, limited, {}).Run().ok());
  ASSERT_EQ(t.replica.GetState("prices", "k")->fields.at("v").markers.size(), 2u);
  {
    Link link(x, t, limited, {});
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_refused, 1u);
  }
  VersionVector unseen;
  unseen.Raise(mid, 1);  // m's value, not t's
  EXPECT_EQ(Refused(x), (std::map<std::string, VersionVector>{{"prices/k.v", unseen}}));
  EXPECT_LT(x.Vv().Get(mid), 1u);
  ASSERT_TRUE(Link(x, m, limited, {}).Run().ok());
  auto k = x.replica.Get("prices", "k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->fields.at("v").scalar, Value{int64_t{5}});
  EXPECT_TRUE(Refused(x).empty());
}

// h took l's overwrite of h's own write before l was revoked; m still holds h's value.
// x refuses l's state and h's copy of it. A later session with h refuses nothing new,
// yet h never sent its write's value (no one but m holds it): x must still not claim
// it, or m would skip it.
TEST(Refusal, ASessionThatRefusesNothingNewDoesNotReleaseWhatItNeverSent) {
  Node h(1), l(2), x(3), m(4);
  ASSERT_TRUE(h.replica.Put("c", "k", {{"v", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(Link(m, h).Run().ok());
  ASSERT_TRUE(Link(l, h).Run().ok());
  ASSERT_TRUE(l.replica.Put("c", "k", {{"v", Value{int64_t{9}}}}).ok());
  ASSERT_TRUE(Link(h, l).Run().ok());  // h takes the overwrite
  const ReplicaId lid = Rid(2);
  SessionOptions ox;
  ox.revoked = [lid] { return std::map<ReplicaId, uint64_t>{{lid, 0}}; };
  ASSERT_TRUE(Link(x, l, ox, {}).Run().ok());
  {
    Link link(x, h, ox, {});
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_refused, 1u);
  }
  {
    Link link(x, h, ox, {});  // nothing new, nothing refused
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_refused, 0u);
  }
  EXPECT_EQ(x.Vv().Get(Rid(1)), 0u);
  ASSERT_TRUE(Link(x, m, ox, {}).Run().ok());
  auto k = x.replica.Get("c", "k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->fields.at("v").scalar, Value{int64_t{1}});
  EXPECT_TRUE(Refused(x).empty());
}

// A refused state whose context claims far more of h than exists (forged) would hold h's
// entry back for good; a session with h itself that refuses nothing shows what h holds,
// and h leaves the record.
TEST(Refusal, ASessionWithAReplicaReleasesItFromTheRecords) {
  Node h(1), l(2), x(3);
  ASSERT_TRUE(h.replica.Put("c", "f", {{"v", Value{int64_t{2}}}}).ok());
  ASSERT_TRUE(l.replica.Put("c", "k", {{"v", Value{int64_t{9}}}}).ok());
  const ReplicaId lid = Rid(2);
  SessionOptions ox;
  ox.revoked = [lid] { return std::map<ReplicaId, uint64_t>{{lid, 0}}; };
  {
    Link link(x, l, ox, {});
    link.from_b = [](Message& m) {
      if (auto* b = std::get_if<DeltaBatch>(&m))
        for (auto& d : b->deltas) d.state.ctx.Raise(Rid(1), 1000);
    };
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_refused, 1u);
  }
  ASSERT_EQ(Refused(x).size(), 1u);
  ASSERT_TRUE(Link(x, h, ox, {}).Run().ok());
  EXPECT_TRUE(Refused(x).empty());
  EXPECT_EQ(x.Vv().Get(Rid(1)), h.Vv().Get(Rid(1)));
  EXPECT_EQ(x.Dump(), h.Dump());
}

}  // namespace
}  // namespace tandem::engine
