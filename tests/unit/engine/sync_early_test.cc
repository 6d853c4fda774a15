// A request sent with the Hello (Hello::early): taken when the peer takes early requests,
// is the replica it was made for and has collected nothing the requester lacks; else
// the request follows the peer's Hello as before. Either way the replicas converge.
#include <gtest/gtest.h>

#include "sync_harness.h"
#include "tandem/engine/sync.h"

namespace tandem::engine {
namespace {

// Counts the SyncRequests one side sends, and keeps its Hello.
struct Sent {
  int requests = 0;
  std::optional<Hello> hello;
  std::function<void(Message&)> Hook(std::function<void(Message&)> rewrite = {}) {
    return [this, rewrite](Message& m) {
      if (rewrite) rewrite(m);
      if (std::holds_alternative<SyncRequest>(m)) ++requests;
      if (const auto* h = std::get_if<Hello>(&m)) hello = *h;
    };
  }
};

SessionOptions Early(const ReplicaId& expect = {}) {
  SessionOptions o;
  o.early_request = true;
  o.expect = expect;
  return o;
}

TEST(SyncEarly, ARequestWithTheHelloIsTakenAndNoOtherFollows) {
  Node a(1), b(2);
  Fill(a, "items", 40, "x");
  Fill(b, "items", 5, "y");
  Sent from_a, from_b;
  Link link(a, b, Early(), Early());
  link.from_a = from_a.Hook();
  link.from_b = from_b.Hook();
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
  EXPECT_EQ(from_a.requests, 0);
  EXPECT_EQ(from_b.requests, 0);
  ASSERT_TRUE(from_b.hello && from_b.hello->early);
  EXPECT_EQ(from_b.hello->early->cursor, 0u) << "made for any replica: from the start";
  EXPECT_EQ(a.Dump(), b.Dump());

  // Without: each side asks once it has the other's Hello.
  Node c(3);
  Sent from_c;
  Link plain(a, c);
  plain.from_b = from_c.Hook();
  ASSERT_TRUE(plain.Run().ok());
  EXPECT_EQ(from_c.requests, 1);
  EXPECT_FALSE(from_c.hello->early);
  EXPECT_EQ(a.Dump(), c.Dump());
}

// Made for the replica the peer is, the request resumes where the last session left
// off; made for another, it is not taken and the usual request follows.
TEST(SyncEarly, ARequestForTheExpectedReplicaResumesAndAnotherWaitsItsTurn) {
  Node a(1), b(2);
  Fill(a, "items", 40, "x");
  {
    Link first(a, b);
    ASSERT_TRUE(first.Run().ok());
  }
  const uint64_t cursor = b.replica.Peer(Rid(1))->cursor;
  ASSERT_GT(cursor, 0u);
  Fill(a, "items", 3, "later");

  Sent resumed;
  Link link(a, b, {}, Early(Rid(1)));
  link.from_b = resumed.Hook();
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(resumed.requests, 0);
  ASSERT_TRUE(resumed.hello && resumed.hello->early);
  EXPECT_EQ(resumed.hello->early->cursor, cursor);
  EXPECT_EQ(resumed.hello->expect, Rid(1));
  EXPECT_LE(link.sa.stats().fields_sent, 6u) << "only what changed since";
  EXPECT_EQ(a.Dump(), b.Dump());

  // Made for c, where b's cursor is far along c's log: a must not read it as one into
  // its own log (it would skip what b lacks).
  Node c(3);
  Fill(c, "other", 60, "z");
  {
    Link from_c(c, b);
    ASSERT_TRUE(from_c.Run().ok());
  }
  ASSERT_GT(b.replica.Peer(Rid(3))->cursor, cursor + 5);
  Fill(a, "items", 2, "again");
  Sent other;
  Link wrong(a, b, {}, Early(Rid(3)));
  wrong.from_b = other.Hook();
  ASSERT_TRUE(wrong.Run().ok());
  EXPECT_EQ(other.requests, 1) << "made for another replica: the usual request follows";
  EXPECT_TRUE(b.replica.Get("items", "again0").ok());
  EXPECT_TRUE(b.replica.Get("items", "again1").ok());
}

// A filtered pass over the expected replica's log, or pieces held from it, wait for its
// Hello: where the request starts depends on what it says.
TEST(SyncEarly, AFilteredPassWaitsForThePeersHello) {
  Node a(1), b(2);
  Fill(a, "items", 10, "x");
  Fill(a, "private", 10, "p");
  SessionOptions some;
  some.accept = CollectionFilter::Only({"items"});
  {
    Link first(a, b, {}, some);
    ASSERT_TRUE(first.Run().ok());
  }
  ASSERT_TRUE(b.replica.Peer(Rid(1))->filtered);
  Sent from_b;
  Link link(a, b, {}, Early(Rid(1)));
  link.from_b = from_b.Hook();
  ASSERT_TRUE(link.Run().ok());
  ASSERT_TRUE(from_b.hello);
  EXPECT_FALSE(from_b.hello->early);
  EXPECT_EQ(from_b.requests, 1);
  EXPECT_EQ(a.Dump(), b.Dump()) << "the unfiltered pass started over";
}

// A peer from before early requests drops the field (an unknown field to its decoder)
// and announces nothing: the request follows its Hello, and nothing is asked twice.
TEST(SyncEarly, APeerThatTakesNoEarlyRequestGetsTheUsualOne) {
  Node a(1), b(2);
  Fill(a, "items", 30, "x");
  Fill(b, "items", 30, "y");
  Sent from_a, from_b;
  Link link(a, b, Early(), {});
  link.from_a = from_a.Hook([](Message& m) {
    if (auto* h = std::get_if<Hello>(&m)) h->early.reset();
  });
  link.from_b = from_b.Hook([](Message& m) {
    if (auto* h = std::get_if<Hello>(&m)) h->takes_early = false;
  });
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
  EXPECT_EQ(from_a.requests, 1);
  EXPECT_EQ(from_b.requests, 1);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// An early request and then another is a second request: the session ends.
TEST(SyncEarly, ARequestAfterATakenEarlyOneEndsTheSession) {
  Node a(1), b(2);
  Fill(a, "items", 3, "x");
  Session s(a.replica, {});
  std::vector<Message> out;
  ASSERT_TRUE(s.Start(&out).ok());
  Hello h;
  h.replica = Rid(2);
  h.takes_early = true;
  h.early = SyncRequest{b.Vv()};
  out.clear();
  ASSERT_TRUE(s.Receive(h, &out).ok());
  bool batch = false;
  for (const auto& m : out) batch |= std::holds_alternative<DeltaBatch>(m);
  EXPECT_TRUE(batch) << "the early request was taken at once";
  out.clear();
  EXPECT_FALSE(s.Receive(SyncRequest{b.Vv()}, &out).ok());
}

}  // namespace
}  // namespace tandem::engine
