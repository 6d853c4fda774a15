// Refusals and watermarks: what a receiver refuses for good (a revoked replica's later
// events, a write without permission) leaves it without the other events the refused
// state carried, and no watermark may claim those.
#include "sync_harness.h"

namespace tandem::engine {
namespace {

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
}

}  // namespace
}  // namespace tandem::engine
