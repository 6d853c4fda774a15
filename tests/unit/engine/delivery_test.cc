// Delivery status (which records a peer holds) and conflict rules picked at read time,
// over in-memory replicas and an in-process link.
#include <gtest/gtest.h>

#include <set>

#include "sync_harness.h"
#include "tandem/engine/sync.h"

namespace tandem::engine {
namespace {

// ---- Delivery status: which records a peer holds ----------------------------------

ReplicaId PeerOf(Node& n) { return n.replica.Meta()->id; }
template <typename T>
T Val(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : T{};
}

TEST(Delivery, APeerHoldsWhatItAcknowledgedAndNotWhatCameLater) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("orders", "o1", {{"total", Value{int64_t{5}}}}).ok());
  auto before = a.replica.Peer(PeerOf(b));
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(Val(a.replica.Holds("orders", "o1", *before)));
  ASSERT_TRUE(Link(a, b).Run().ok());
  auto ps = a.replica.Peer(PeerOf(b));
  ASSERT_TRUE(ps.ok());
  EXPECT_TRUE(Val(a.replica.Holds("orders", "o1", *ps)));
  bool exact = false;
  EXPECT_EQ(Val(a.replica.CountUnheld(*ps, 1000, &exact)), 0u);
  EXPECT_TRUE(exact);
  // A later change is not held until the next sync.
  ASSERT_TRUE(a.replica.Put("orders", "o1", {{"total", Value{int64_t{6}}}}).ok());
  ASSERT_TRUE(a.replica.Put("orders", "o2", {{"total", Value{int64_t{7}}}}).ok());
  EXPECT_FALSE(Val(a.replica.Holds("orders", "o1", *ps)));
  EXPECT_EQ(Val(a.replica.CountUnheld(*ps, 1000, &exact)), 2u);
  // b's own writes, as b reported them, are held by b.
  ASSERT_TRUE(b.replica.Put("orders", "b1", {{"total", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(Link(a, b).Run().ok());
  ps = a.replica.Peer(PeerOf(b));
  EXPECT_TRUE(Val(a.replica.Holds("orders", "o1", *ps)));
  EXPECT_TRUE(Val(a.replica.Holds("orders", "b1", *ps)));
  EXPECT_EQ(Val(a.replica.CountUnheld(*ps, 1000, &exact)), 0u);
  EXPECT_EQ(a.replica.Holds("orders", "nope", *ps).status().code(), Code::kNotFound);
}

TEST(Delivery, AFilteredPeerHoldsWhatItReceivesAndNeverTheRest) {
  // b receives orders only: its version vector never covers a's events (its sessions
  // are filtered), yet it holds a's orders.
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("orders", "o1", {{"total", Value{int64_t{5}}}}).ok());
  ASSERT_TRUE(a.replica.Put("customers", "c1", {{"name", Value{std::string("Ann")}}}).ok());
  SessionOptions ob;
  ob.accept = CollectionFilter::Only({"orders"});
  ASSERT_TRUE(Link(a, b, {}, ob).Run().ok());
  auto ps = a.replica.Peer(PeerOf(b));
  ASSERT_TRUE(ps.ok());
  EXPECT_FALSE(ps->vv.Covers(a.Vv()));
  EXPECT_TRUE(Val(a.replica.Holds("orders", "o1", *ps)));
  EXPECT_FALSE(Val(a.replica.Holds("customers", "c1", *ps)));
  EXPECT_FALSE(ps->delivery.Allows("customers"));
  bool exact = false;
  EXPECT_EQ(Val(a.replica.CountUnheld(*ps, 1000, &exact)), 0u);  // customers never go there
}

TEST(Delivery, CountUnheldChecksOnlyTheNewestEntriesWhenAsked) {
  Node a(1), b(2);
  Fill(a, "products", 50, "p");  // 100 fields
  auto ps = a.replica.Peer(PeerOf(b));
  bool exact = true;
  const uint64_t n = Val(a.replica.CountUnheld(*ps, 10, &exact));
  EXPECT_FALSE(exact);
  EXPECT_EQ(n, 10u);
  EXPECT_EQ(Val(a.replica.CountUnheld(*ps, 1000, &exact)), 100u);
  EXPECT_TRUE(exact);
}

// ---- Conflict rules picked at read time --------------------------------------------

// Picks the smallest integer among concurrent values of "price".
class MinPrice : public CollectionRules {
 public:
  Status CheckOp(std::string_view, Op, Value*) const override { return Status::Ok(); }
  Status CheckRecord(std::string_view, const RecordState&,
                     const std::set<std::string>&) const override {
    return Status::Ok();
  }
  int PickWinner(std::string_view field, const std::vector<Sibling>& s) const override {
    if (field != "price") return -1;
    size_t best = 0;
    for (size_t i = 1; i < s.size(); ++i)
      if (CompareValues(s[i].value, s[best].value) < 0) best = i;
    return static_cast<int>(best);
  }
};
class MinPricePolicy : public WritePolicy {
 public:
  Result<std::shared_ptr<const CollectionRules>> RulesFor(ReadTxn&, std::string_view c) override {
    if (c != "products") return std::shared_ptr<const CollectionRules>();
    return std::shared_ptr<const CollectionRules>(std::make_shared<MinPrice>());
  }
};

TEST(ConflictRules, EveryReadShowsTheRulesWinnerAndConflictsListItFirst) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("products", "p", {{"price", Value{int64_t{3}}}}).ok());
  ASSERT_TRUE(b.replica.Put("products", "p", {{"price", Value{int64_t{9}}}}).ok());  // later
  ASSERT_TRUE(Link(a, b).Run().ok());
  for (Node* n : {&a, &b}) {
    EXPECT_EQ(n->replica.Get("products", "p")->fields.at("price").scalar, Value{int64_t{9}});
    n->replica.SetWritePolicy(std::make_shared<MinPricePolicy>());
    EXPECT_EQ(n->replica.Get("products", "p")->fields.at("price").scalar, Value{int64_t{3}});
    int seen = 0;
    ASSERT_TRUE(n->replica
                    .Scan("products", "",
                          [&](const Record& r) {
                            EXPECT_EQ(r.fields.at("price").scalar, Value{int64_t{3}});
                            ++seen;
                            return true;
                          })
                    .ok());
    EXPECT_EQ(seen, 1);
    auto page = n->replica.Changes(0, 100);
    ASSERT_TRUE(page.ok());
    ASSERT_FALSE(page->changes.empty());
    EXPECT_EQ(page->changes.back().record->fields.at("price").scalar, Value{int64_t{3}});
    auto c = n->replica.Conflicts("products", "p");
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(c->size(), 1u);
    const auto& sibs = c->front().second;
    ASSERT_EQ(sibs.size(), 2u);
    EXPECT_TRUE(sibs[0].winner);
    EXPECT_EQ(sibs[0].value, Value{int64_t{3}});
    EXPECT_FALSE(sibs[1].winner);
  }
}

}  // namespace
}  // namespace tandem::engine
