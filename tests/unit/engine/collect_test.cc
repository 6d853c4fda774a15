// Collection of field states every member holds: what goes, what stays, and that nothing
// collected comes back.
#include <gtest/gtest.h>

#include <set>

#include "busy_store.h"
#include "sync_harness.h"

namespace tandem::engine {
namespace {

// Entry by entry, the smaller: what every one of the vectors covers.
VersionVector Everyone(const std::vector<Node*>& nodes) {
  VersionVector out = nodes.front()->Vv();
  for (auto* n : nodes) out = VersionVector::Meet(out, n->Vv());
  return out;
}

size_t FieldStates(Node& n) {
  size_t count = 0;
  auto txn = n.replica.store().BeginRead();
  EXPECT_TRUE(txn.ok());
  EXPECT_TRUE((*txn)->ScanLog(0, [&](uint64_t, const FieldKey&) { return ++count, true; }).ok());
  return count;
}

void Sync(Node& a, Node& b) {
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  ASSERT_TRUE(link.sa.caught_up() && link.sb.caught_up());
}

void DeleteRange(Node& n, const std::string& prefix, int from, int to) {
  ASSERT_TRUE(n.replica
                  .Write([&](Batch& b) {
                    for (int i = from; i < to; ++i)
                      TANDEM_RETURN_IF_ERROR(b.Delete("products", prefix + std::to_string(i)));
                    return Status::Ok();
                  })
                  .ok());
}

TEST(Collect, DeletionsEveryMemberHoldsGoAndReadsDoNotChange) {
  Node a(1), b(2), c(3);
  Fill(a, "products", 50, "p");
  Sync(a, b);
  Sync(a, c);
  DeleteRange(a, "p", 0, 40);
  Sync(a, b);
  Sync(a, c);
  const std::string before = a.Dump();
  ASSERT_EQ(FieldStates(a), 100u);

  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b, &c}), &stats, 7).ok());
  EXPECT_EQ(stats.examined, 100u);
  // 40 records of two fields: their names, and p0's stock (never incremented); the other
  // stocks hold counter totals, which stay (FieldCounterTest.ADeletedCounterKeeps...).
  // The newest log entry (the last deletion) waits.
  EXPECT_EQ(stats.collected + stats.kept_newest, 41u);
  EXPECT_LE(stats.kept_newest, 1u);
  EXPECT_GT(stats.bytes, 0u);
  EXPECT_GT(stats.transactions, 10u) << "bounded transactions";
  EXPECT_EQ(FieldStates(a), 100u - stats.collected);
  EXPECT_EQ(a.Dump(), before);
  EXPECT_FALSE(a.replica.Get("products", "p3").ok());

  // Sync with members that still hold the tombstones, both ways: nothing comes back,
  // and a second collection finds nothing more to do.
  Sync(b, a);
  Sync(c, a);
  EXPECT_EQ(a.Dump(), before);
  EXPECT_EQ(b.Dump(), before);
  ASSERT_TRUE(b.replica.Collect(Everyone({&a, &b, &c}), &stats).ok());
  EXPECT_GE(stats.collected, 40u);
  EXPECT_EQ(b.Dump(), before);
  Sync(a, b);
  EXPECT_EQ(a.Dump(), before);
}

TEST(Collect, NothingGoesThatAMemberHasNotAbsorbed) {
  Node a(1), b(2), c(3);
  Fill(a, "products", 10, "p");
  Sync(a, b);
  Sync(a, c);
  DeleteRange(a, "p", 0, 5);
  Sync(a, b);  // c has not seen the deletions
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b, &c}), &stats).ok());
  EXPECT_EQ(stats.collected, 0u);
  Sync(c, a);
  EXPECT_EQ(c.Dump(), a.Dump());
  EXPECT_FALSE(c.replica.Get("products", "p1").ok());
}

// A replica that missed the deletions and was left out of the frontier (a backup
// restored, a device silent past the horizon) comes back: what was collected does not
// come back through it, its own view is repaired by a rebase (its deleted records go),
// and what it wrote meanwhile arrives, an edit of a deleted record included (add-wins).
// A field withheld from a rebasing peer (too large for this session) is not in what it
// received, and what was collected would be dropped from it: the rebase waits instead.
TEST(Collect, ARebaseWaitsForAFieldThatWasWithheld) {
  Node a(1), b(2), stale(4);
  Fill(a, "products", 20, "p");
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(
        a.replica.Add("docs", "set", "photos", Value{std::string(400'000, char('a' + i))}).ok());
  Sync(a, b);
  Sync(a, stale);
  DeleteRange(a, "p", 0, 10);
  Sync(a, b);
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
  ASSERT_GE(stats.collected, 10u);  // the names, and p0's stock
  SessionOptions small;
  small.max_state_bytes = 1 << 20;
  {
    Link link(stale, a, small, small);
    Status st = link.Run();
    EXPECT_EQ(st.code(), Code::kUnsupported) << st.ToString();
    EXPECT_NE(st.message().find("rebase waits"), std::string::npos) << st.ToString();
    EXPECT_FALSE(link.sa.stats().rebased);
  }
  auto set = stale.replica.Get("docs", "set");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->fields.at("photos").set.size(), 4u) << "the stale replica keeps the set";
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_EQ(stale.replica.Get("docs", "set")->fields.at("photos").set.size(), 4u);
  EXPECT_FALSE(stale.replica.Get("products", "p4").ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
}

TEST(Collect, AStalePeerIsRebasedAndBringsBackNothingCollected) {
  Node a(1), b(2), stale(4);
  Fill(a, "products", 20, "p");
  Sync(a, b);
  Sync(a, stale);
  // Offered directly later, as a relay would: the state of a record before its deletion.
  auto old = stale.replica.GetState("products", "p4");
  ASSERT_TRUE(old.ok());
  DeleteRange(a, "p", 0, 10);
  Sync(a, b);
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
  ASSERT_GE(stats.collected, 10u);  // the names, and p0's stock
  ASSERT_TRUE(b.replica.Collect(Everyone({&a, &b}), &stats).ok());

  ASSERT_TRUE(stale.replica.Put("products", "p15", {{"note", Value{std::string("late")}}}).ok());
  ASSERT_TRUE(stale.replica.Put("products", "p3", {{"note", Value{std::string("kept")}}}).ok());
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    ASSERT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_TRUE(link.sa.stats().rebased);
    EXPECT_TRUE(link.sb.stats().whole_sent);
    // p0..p9's names and p0's stock, but the ones a still holds (it sent the other
    // stocks' tombstones, which keep their counter totals).
    EXPECT_GE(link.sa.stats().rebased_fields, 10u);
  }
  for (int i = 0; i < 10; ++i) {
    if (i == 3) continue;
    const std::string id = "p" + std::to_string(i);
    EXPECT_FALSE(a.replica.Get("products", id).ok()) << i;
    EXPECT_FALSE(stale.replica.Get("products", id).ok()) << i;
  }
  auto p3 = a.replica.Get("products", "p3");
  ASSERT_TRUE(p3.ok());
  EXPECT_EQ(p3->fields.size(), 1u);  // only the edit made offline
  EXPECT_EQ(a.replica.Get("products", "p15")->fields.count("note"), 1u);
  EXPECT_EQ(stale.Dump(), a.Dump());
  // Repaired once: the next session is an ordinary one.
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_FALSE(link.sa.stats().rebased);
  }
  Sync(b, a);
  Sync(b, stale);
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_EQ(stale.Dump(), b.Dump());

  std::vector<FieldDelta> deltas;
  for (const auto& [f, s] : old->fields) deltas.push_back({{"products", "p4", f}, s});
  ASSERT_FALSE(deltas.empty());
  size_t changed = 99;
  ASSERT_TRUE(a.replica.ApplyDeltas(deltas, &changed).ok());
  EXPECT_EQ(changed, 0u);
  EXPECT_FALSE(a.replica.Get("products", "p4").ok());
}

// The deleter collects a record and then writes its fields again: the new states' contexts
// no longer show the removal of what the record held. A replica restored from before the
// deletion, with an offline add of its own, rebases on it and must lose the deleted set
// element and the deleted register value (a later timestamp than the new one's, so it
// would win), though the peer sent those fields; its own add stays.
TEST(Collect, ARebaseDropsWhatThePeerCollectedFromFieldsItWroteAgain) {
  Node a(1), b(2), stale(4);
  ASSERT_TRUE(b.replica.Add("products", "r1", "tags", Value{std::string("deleted")}).ok());
  b.now += 86'400'000;  // a day ahead: its value is the later one
  ASSERT_TRUE(b.replica.Put("products", "r1", {{"name", Value{std::string("deleted")}}}).ok());
  Sync(a, b);
  Sync(a, stale);
  ASSERT_TRUE(a.replica.Delete("products", "r1").ok());
  ASSERT_TRUE(a.replica.Put("products", "r8", {{"x", Value{int64_t{1}}}}).ok());  // newest
  Sync(a, b);
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
  ASSERT_EQ(stats.collected, 2u);  // both of r1's fields
  auto gone = a.replica.GetState("products", "r1");
  ASSERT_TRUE(!gone.ok() || gone->fields.empty());
  ASSERT_TRUE(b.replica.Collect(Everyone({&a, &b}), &stats).ok());
  ASSERT_TRUE(a.replica.Add("products", "r1", "tags", Value{std::string("new")}).ok());
  ASSERT_TRUE(a.replica.Put("products", "r1", {{"name", Value{std::string("new")}}}).ok());
  ASSERT_TRUE(a.replica.Put("products", "r9", {{"x", Value{int64_t{1}}}}).ok());  // newest
  ASSERT_TRUE(stale.replica.Add("products", "r1", "tags", Value{std::string("offline")}).ok());
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    ASSERT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_TRUE(link.sa.stats().rebased);
    EXPECT_EQ(link.sa.stats().rebased_fields, 2u);  // tags and name, though both were sent
  }
  Sync(a, b);
  for (Node* n : {&a, &b, &stale}) {
    auto r1 = n->replica.GetState("products", "r1");
    ASSERT_TRUE(r1.ok());
    const FieldState& tags = r1->fields.at("tags");
    std::set<std::string> elements;
    for (const auto& [e, dots] : tags.elements) elements.insert(std::get<std::string>(e));
    EXPECT_EQ(elements, (std::set<std::string>{"new", "offline"}));
    const FieldState& name = r1->fields.at("name");
    ASSERT_EQ(name.markers.size(), 1u);  // no sibling left behind
    EXPECT_EQ(std::get<std::string>(name.markers.begin()->second.value), "new");
  }
  EXPECT_EQ(stale.Dump(), a.Dump());
  EXPECT_EQ(b.Dump(), a.Dump());
}

// A reader of the returning replica's change feed saw the records live; the rebase that
// drops them must show them deleted there, though the deletions never came.
TEST(Collect, ARebaseShowsWhatItDroppedInTheChangeFeed) {
  Node a(1), b(2), stale(4);
  Fill(a, "products", 6, "p");
  Sync(a, b);
  Sync(a, stale);
  auto seen = stale.replica.Changes(0, 1000);
  ASSERT_TRUE(seen.ok());
  ASSERT_EQ(seen->changes.size(), 6u);
  DeleteRange(a, "p", 0, 3);
  Sync(a, b);
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
  ASSERT_GE(stats.collected, 3u);
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    ASSERT_TRUE(link.sa.stats().rebased);
  }
  auto after = stale.replica.Changes(seen->next_cursor, 1000);
  ASSERT_TRUE(after.ok());
  std::set<std::string> deleted;
  for (const auto& c : after->changes)
    if (!c.record) deleted.insert(c.id);
  EXPECT_EQ(deleted, (std::set<std::string>{"p0", "p1", "p2"}));
  EXPECT_EQ(stale.Dump(), a.Dump());
  // And the tombstones the rebase left go with the next collection (but the one at the
  // newest log entry, which goes at a later run).
  stats = {};
  ASSERT_TRUE(stale.replica.Collect(Everyone({&a, &b, &stale}), &stats).ok());
  EXPECT_GE(stats.collected, 2u);
}

// An update concurrent with a deletion survives it (add-wins); collecting the deleted
// fields leaves the record with only the update, as before collection.
TEST(Collect, AnUpdateConcurrentWithTheDeletionSurvivesCollection) {
  Node a(1), b(2);
  Fill(a, "products", 3, "p");
  Sync(a, b);
  DeleteRange(a, "p", 0, 1);
  ASSERT_TRUE(b.replica.Put("products", "p0", {{"name", Value{std::string("kept")}}}).ok());
  Sync(a, b);
  ASSERT_TRUE(a.replica.Put("products", "p2", {{"x", Value{int64_t{1}}}}).ok());  // newest
  Sync(a, b);
  const std::string before = a.Dump();
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
  EXPECT_EQ(stats.collected, 1u);  // p0's stock; its name lives on
  auto p0 = a.replica.Get("products", "p0");
  ASSERT_TRUE(p0.ok());
  EXPECT_EQ(p0->fields.size(), 1u);
  EXPECT_EQ(a.Dump(), before);
  // A counter reset by a deletion and incremented again counts only the new increment,
  // collected or not.
  ASSERT_TRUE(b.replica.Incr("products", "p0", "stock", 5).ok());
  Sync(a, b);
  p0 = a.replica.Get("products", "p0");
  ASSERT_TRUE(p0.ok());
  EXPECT_EQ(p0->fields.at("stock").count, 5);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// A peer whose writes are refused here (a reader) collected after overwriting a member's
// value: its collected vector covers that value as removed, yet the removal is its own
// refused write. A rebase on it takes that vector in for nothing, so the member's value,
// arriving later from the member, stays.
TEST(Collect, ARebaseOnAPeerWhoseWritesAreRefusedKeepsWhatItsWritesRemoved) {
  Node a(1), reader(2), stale(3);
  Fill(a, "products", 4, "p");
  ASSERT_TRUE(a.replica.Put("products", "x", {{"note", Value{std::string("a's")}}}).ok());
  DeleteRange(a, "p", 0, 2);
  Sync(a, reader);
  ASSERT_TRUE(reader.replica.Put("products", "x", {{"note", Value{std::string("reader's")}}}).ok());
  Replica::CollectStats stats;
  ASSERT_TRUE(reader.replica.Collect(Everyone({&a, &reader}), &stats).ok());
  ASSERT_GE(stats.collected, 2u);
  ASSERT_TRUE(reader.replica.Collected()->Covers(a.Vv()));

  SessionOptions refuse;  // the stale member refuses what the reader wrote
  refuse.admit = [&](const FieldDelta& d, const FieldState*) {
    return d.state.ctx.Get(Rid(2)) ? Admission::kRefuse : Admission::kAccept;
  };
  refuse.may_rebase = [](const std::string&) { return false; };
  refuse.peer_writes_everywhere = [] { return false; };
  {
    Link link(stale, reader, refuse);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(stale.replica.Get("products", "x").ok()) << "the reader's state was refused";
  EXPECT_FALSE(stale.replica.Collected()->Covers(a.Vv()));
  Sync(a, stale);
  auto x = stale.replica.Get("products", "x");
  ASSERT_TRUE(x.ok()) << "the member's value was dropped as collected";
  EXPECT_EQ(DebugString(x->fields.at("note").scalar), DebugString(Value{std::string("a's")}));
  EXPECT_EQ(stale.Dump(), a.Dump());
}

// A rebase on a peer that may write nowhere drops nothing; what that peer collected, the
// returning side still holds. Its version vector must then not cover what the peer
// collected (the states it sent bear out the events, the deletion's among them), or the
// deletion would never be sent to it again and the record would live on there for good.
TEST(Collect, ARebaseThatLeavesTheCollectedVectorAsideDoesNotClaimIt) {
  Node a(1), reader(2), stale(3);
  Fill(a, "products", 4, "p");
  Sync(a, stale);
  DeleteRange(a, "p", 0, 1);
  ASSERT_TRUE(a.replica.Put("products", "q", {{"note", Value{std::string("later")}}}).ok());
  Sync(a, reader);
  Replica::CollectStats stats;
  ASSERT_TRUE(reader.replica.Collect(Everyone({&a, &reader}), &stats).ok());
  ASSERT_GE(stats.collected, 1u);
  const VersionVector collected = reader.replica.Collected().value();

  SessionOptions nowhere;
  nowhere.may_rebase = [](const std::string&) { return false; };
  nowhere.peer_writes_everywhere = [] { return false; };
  for (int round = 0; round < 2; ++round) {  // and again at the next session
    Link link(stale, reader, nowhere);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased) << round;
    // The session goes on: a later CaughtUp in it claims no more.
    const std::string late = "late" + std::to_string(round);
    ASSERT_TRUE(reader.replica.Put("notes", late, {{"v", Value{int64_t{1}}}}).ok());
    ASSERT_TRUE(link.Poll().ok());
    ASSERT_TRUE(stale.replica.Get("notes", late).ok());
    EXPECT_TRUE(stale.replica.Get("products", "p0").ok()) << "dropped nothing";
    EXPECT_FALSE(stale.Vv().Covers(collected)) << stale.Vv().ToString();
    // What it remembers of the reader is the reader's vector, as it is.
    EXPECT_TRUE(stale.replica.Peer(reader.replica.Meta()->id)->vv.Covers(collected));
    EXPECT_TRUE(stale.replica.Get("products", "q").ok());
  }
  Sync(a, stale);  // the deletion comes again
  EXPECT_FALSE(stale.replica.Get("products", "p0").ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
}

// A peer that may write everywhere, but holds a value this replica refuses (a member's
// write past its cutoff here, which the peer took before the cutoff reached it), over
// the founder's value. Had the rebase taken the peer's collected vector, which covers
// the founder's value, this replica (holding nothing of the field) would drop that
// value when the founder sent it, and claim it: lost here for good. So does a rebase
// whose session was filtered.
TEST(Collect, ARebaseThatRefusedOrFilteredAStateLeavesTheCollectedVectorAside) {
  for (const bool filtered : {false, true}) {
    Node f(1), a(2), m(3), stale(4);
    SessionOptions refuse;  // the founder and the stale replica refuse m's prices
    refuse.admit = [](const FieldDelta& d, const FieldState*) {
      return d.key.collection == "prices" && d.state.ctx.Get(Rid(3)) ? Admission::kRefuse
                                                                     : Admission::kAccept;
    };
    Fill(f, "products", 4, "p");
    Sync(f, stale);
    ASSERT_TRUE(f.replica.Put("prices", "p3", {{"v", Value{int64_t{3}}}}).ok());
    Sync(f, m);
    ASSERT_TRUE(m.replica.Put("prices", "p3", {{"v", Value{int64_t{33}}}}).ok());
    Sync(f, a);
    Sync(m, a);  // a takes m's write over f's
    DeleteRange(f, "p", 0, 1);
    {
      Link link(f, m, refuse);
      ASSERT_TRUE(link.Run().ok());
    }
    {
      Link link(f, a, refuse);
      ASSERT_TRUE(link.Run().ok());
    }
    Replica::CollectStats stats;
    ASSERT_TRUE(a.replica.Collect(Everyone({&f, &a, &m}), &stats).ok());
    ASSERT_GE(stats.collected, 1u);
    ASSERT_TRUE(a.replica.Collected()->Covers(Dot{Rid(1), 1}));

    SessionOptions rebase = refuse;
    if (filtered) {
      rebase.admit = nullptr;
      rebase.accept = CollectionFilter::Only({"products"});
    }
    {
      Link link(stale, a, rebase);
      ASSERT_TRUE(link.Run().ok());
      EXPECT_TRUE(link.sa.stats().rebased) << filtered;
    }
    EXPECT_FALSE(stale.replica.Get("products", "p0").ok()) << filtered;
    {
      Link link(stale, f, refuse);
      ASSERT_TRUE(link.Run().ok());
    }
    auto p3 = stale.replica.Get("prices", "p3");
    ASSERT_TRUE(p3.ok()) << "the founder's value was dropped as collected; filtered " << filtered;
    EXPECT_EQ(DebugString(p3->fields.at("v").scalar), DebugString(Value{int64_t{3}}));
  }
}

// What a replica holds, as its collection report says it (net::Report): its vector, and
// what its filtered sessions bore out for the collections they took.
VersionVector Holding(Node& n) { return n.replica.Meta()->Holding(); }

// A replica that never takes a collection (its device may not read it) holds no one's
// collection back, and is not rebased at every session once the others collect; taking
// that collection later, it rebases, and nothing the others collected comes back.
TEST(Collect, AReplicaThatLeavesACollectionOutHoldsNoCollectionBack) {
  Node a(1), b(2);
  Fill(a, "products", 4, "p");
  Fill(a, "secrets", 2, "s");
  SessionOptions no_secrets;
  no_secrets.accept = CollectionFilter::Only({"products"});
  ASSERT_TRUE(Link(b, a, no_secrets).Run().ok());
  ASSERT_FALSE(b.replica.Get("secrets", "s0").ok());
  // Its vector stays behind (a filtered session merges no watermark); what it absorbed
  // covers a's events, for products.
  EXPECT_FALSE(b.Vv().Covers(a.Vv()));
  EXPECT_TRUE(Holding(b).Covers(a.Vv()));
  EXPECT_EQ(b.replica.Meta()->scope, CollectionFilter::Only({"products"}));

  // b's products hold the deletion a makes; a collects it by what b reports.
  DeleteRange(a, "p", 0, 1);
  ASSERT_TRUE(Link(b, a, no_secrets).Run().ok());
  ASSERT_FALSE(b.replica.Get("products", "p0").ok());
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(VersionVector::Meet(Holding(a), Holding(b)), &stats).ok());
  EXPECT_EQ(stats.collected, 1u) << "held back by a replica that takes no secrets";
  {
    Link link(b, a, no_secrets);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_FALSE(link.sa.stats().rebased) << "b holds what a collected, in what it takes";
  }

  // Taking secrets now: what b's vector does not cover a collected, so it rebases, and
  // then holds what a holds.
  {
    Link link(b, a);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_TRUE(b.replica.Get("secrets", "s1").ok());
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_TRUE(b.replica.Meta()->absorbed.empty()) << "its vector covers it all now";
  EXPECT_TRUE(b.replica.Meta()->scope.Everything());
}

// A replica that may not read secrets syncs with two peers, one of which holds no
// orders. Told "every collection but secrets" by both, it takes the same from each, and
// what it bore out holds for both: it never rebases. Told by each the collections it has
// (as older builds say it), its scope narrows at the one and the other's collection
// then finds it short: a rebase, the whole state again, after each collection.
TEST(Collect, PeersThatHoldDifferentCollectionsAskNoRebase) {
  for (bool older : {false, true}) {
    SCOPED_TRACE(older ? "older builds" : "this build");
    Node o(1), k(2), d(3);
    Fill(o, "products", 4, "p");
    Fill(o, "orders", 2, "o");
    Fill(o, "secrets", 2, "s");
    SessionOptions products;
    products.accept = CollectionFilter::Only({"products"});
    ASSERT_TRUE(Link(k, o, products).Run().ok());
    SessionOptions from_o, from_k;  // what each sends d
    from_o.send = from_k.send = CollectionFilter::AllBut({"secrets"});
    from_k.accept = CollectionFilter::Only({"products"});  // k holds no orders
    from_o.send_older = CollectionFilter::Only({"orders", "products"});
    from_k.send_older = CollectionFilter::Only({"products"});
    auto strip = [older](Message& m) {
      if (auto* h = std::get_if<Hello>(&m); h && older) h->send_full.reset();
    };
    auto sync_d = [&](Node& peer, const SessionOptions& opt) {
      Link link(d, peer, {}, opt);
      link.from_a = link.from_b = strip;
      EXPECT_TRUE(link.Run().ok());
      return link.sa.stats().rebased;
    };
    int rebases = 0;
    for (int round = 0; round < 3; ++round) {
      DeleteRange(o, "p", round, round + 1);
      ASSERT_TRUE(Link(k, o, products).Run().ok());
      rebases += sync_d(o, from_o);
      rebases += sync_d(k, from_k);
      Replica::CollectStats stats;
      const VersionVector all =
          VersionVector::Meet(Holding(o), VersionVector::Meet(Holding(k), Holding(d)));
      ASSERT_TRUE(o.replica.Collect(all, &stats).ok());
      EXPECT_GE(stats.collected, 1u) << "round " << round;
      rebases += sync_d(o, from_o);
    }
    EXPECT_FALSE(d.replica.Get("secrets", "s0").ok());
    EXPECT_TRUE(d.replica.Get("orders", "o1").ok());
    EXPECT_FALSE(d.replica.Get("products", "p2").ok());
    EXPECT_TRUE(d.replica.Get("products", "p3").ok());
    if (older)
      EXPECT_GE(rebases, 2);
    else
      EXPECT_EQ(rebases, 0);
  }
}

// A secret b held before it stopped taking secrets is deleted and collected meanwhile:
// when b takes secrets again, its rebase drops it.
TEST(Collect, WhatAReplicaHeldOfACollectionItStoppedTakingDoesNotComeBack) {
  Node a(1), b(2);
  Fill(a, "products", 2, "p");
  Fill(a, "secrets", 2, "s");
  Sync(a, b);
  ASSERT_TRUE(b.replica.Get("secrets", "s0").ok());
  SessionOptions no_secrets;
  no_secrets.accept = CollectionFilter::Only({"products"});
  ASSERT_TRUE(a.replica.Write([](Batch& bt) { return bt.Delete("secrets", "s0"); }).ok());
  ASSERT_TRUE(Link(b, a, no_secrets).Run().ok());
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(VersionVector::Meet(Holding(a), Holding(b)), &stats).ok());
  ASSERT_EQ(stats.collected, 1u);
  EXPECT_TRUE(b.replica.Get("secrets", "s0").ok()) << "not taken: still here";
  {
    Link link(b, a);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(b.replica.Get("secrets", "s0").ok());
  EXPECT_EQ(a.Dump(), b.Dump());
}

// The peer's collection runs while it streams to a replica the reports left out: the
// deletion it collects before the stream reaches it is never sent, yet its CaughtUp's
// vector covers it. Merged, that vector would leave the deleted record live here for
// good (the next Hello's collected vector would be covered). The CaughtUp says what the
// peer had collected by then, so the entries that moved since its Hello are held back,
// the session ends, and the next one rebases.
TEST(Collect, ACollectionDuringTheStreamIsRebasedOnAtTheNextSession) {
  Node a(1), b(2), stale(3);
  Fill(a, "products", 4, "p");
  Sync(a, stale);
  DeleteRange(a, "p", 0, 1);
  Sync(a, b);
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run(0).ok());  // the Hellos are out: a's has collected nothing yet
    Replica::CollectStats stats;
    ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
    ASSERT_GE(stats.collected, 1u);
    // The session ends there, its CaughtUp merged as far as it may, for the next one to
    // rebase.
    Status st = link.Pump();
    EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
    EXPECT_TRUE(link.sa.rebase_due() && link.sa.sync_again());
    EXPECT_FALSE(link.sa.stats().rebased);
    EXPECT_FALSE(stale.Vv().Covers(a.replica.Collected().value())) << stale.Vv().ToString();
    EXPECT_TRUE(stale.Vv().Get(Rid(1)) > 0);  // it did merge what it could
  }
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(stale.replica.Get("products", "p0").ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
  {
    Link link(stale, a);  // repaired once
    ASSERT_TRUE(link.Run().ok());
    EXPECT_FALSE(link.sa.stats().rebased);
  }
}

// The same, the collection running between two of the stream's batches.
TEST(Collect, ACollectionBetweenBatchesIsRebasedOnAtTheNextSession) {
  Node a(1), b(2), stale(3);
  Fill(a, "products", 4, "p");
  Sync(a, stale);
  for (int i = 0; i < 8; ++i)
    ASSERT_TRUE(a.replica.Put("notes", "n" + std::to_string(i), {{"v", Value{int64_t{i}}}}).ok());
  DeleteRange(a, "p", 0, 1);  // after the notes in a's log
  ASSERT_TRUE(a.replica.Put("notes", "last", {{"v", Value{int64_t{0}}}}).ok());
  Sync(a, b);
  SessionOptions one;
  one.batch_fields = 1;
  one.window = 1;
  {
    Link link(stale, a, {}, one);
    ASSERT_TRUE(link.Run(6).ok());
    ASSERT_GE(link.sb.stats().batches_sent, 1u);
    ASSERT_EQ(link.sb.stats().caught_up_sent, 0u);
    Replica::CollectStats stats;
    ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
    ASSERT_GE(stats.collected, 1u);
    EXPECT_EQ(link.Pump().code(), Code::kBusy);
    EXPECT_TRUE(link.sa.rebase_due());
  }
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(stale.replica.Get("products", "p0").ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
}

// A rebase whose peer collects during the stream drops what that removed too. Here the
// Hello's vector covers the deleter's entry but not the writer's (a frontier from a
// deleter's report older than the write it deleted), and the tombstone goes mid-stream:
// only the writer's entry moves, which this replica holds, so nothing would be held
// back, and a rebase on the Hello's vector alone would keep the record for good.
TEST(Collect, ARebaseDropsWhatThePeerCollectedDuringItsStream) {
  Node a(1), d(2), stale(3), q(5);
  ASSERT_TRUE(q.replica.Put("products", "p0", {{"name", Value{std::string("x")}}}).ok());
  Sync(q, a);
  Sync(a, stale);
  Sync(a, d);
  ASSERT_TRUE(d.replica.Put("products", "x0", {{"name", Value{std::string("y")}}}).ok());
  ASSERT_TRUE(d.replica.Delete("products", "x0").ok());
  ASSERT_TRUE(d.replica.Delete("products", "p0").ok());
  Sync(d, a);
  ASSERT_TRUE(a.replica.Put("notes", "n", {{"v", Value{int64_t{1}}}}).ok());
  Replica::CollectStats stats;
  VersionVector absorbed;  // d's own events, and none of q's
  absorbed.Raise(Rid(2), d.Vv().Get(Rid(2)));
  ASSERT_TRUE(a.replica.Collect(absorbed, &stats).ok());
  ASSERT_GE(stats.collected, 1u);  // x0 went, p0's tombstone stays
  {
    Link link(stale, a);
    ASSERT_TRUE(link.Run(0).ok());
    ASSERT_TRUE(a.replica.Collect(Everyone({&a, &d}), &stats).ok());
    ASSERT_GE(stats.collected, 1u);  // p0's tombstone goes
    ASSERT_TRUE(link.Pump().ok());
    ASSERT_TRUE(link.sa.stats().rebased);
  }
  EXPECT_FALSE(stale.replica.Get("products", "p0").ok());
  EXPECT_EQ(stale.Dump(), a.Dump());
  Link link(stale, a);  // and nothing is left to repair
  ASSERT_TRUE(link.Run().ok());
  EXPECT_FALSE(link.sa.stats().rebased);
}

// The collected vector a rebasing peer takes is the one its sender's last page saw. A
// write that lands after that page is not in the stream; were a collection that commits
// next counted in, its vector (a version vector: an entry per writer) would cover the
// write's events too, the rebasing replica would take them as held, and nobody would
// ever send the write there.
TEST(Collect, ARebaseTakesTheCollectedVectorOfTheSendersLastPage) {
  auto busy = std::make_unique<BusyStore>(std::make_unique<MemoryStore>(Rid(1)));
  BusyStore* store = busy.get();
  Node a(std::move(busy)), stale(3), q(5);
  ASSERT_TRUE(q.replica.Put("products", "p0", {{"name", Value{std::string("x")}}}).ok());
  Sync(q, a);
  Sync(a, stale);
  // Collected past what stale holds: its next session with a is a rebase.
  ASSERT_TRUE(a.replica.Delete("products", "p0").ok());
  ASSERT_TRUE(a.replica.Put("notes", "n", {{"v", Value{int64_t{1}}}}).ok());  // the newest
  Sync(a, q);
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(Everyone({&a, &q}), &stats).ok());
  ASSERT_GE(stats.collected, 1u);
  Link link(stale, a);
  ASSERT_TRUE(link.Run(0).ok());
  // Right after a's (only) page: q writes "late" and a record it deletes at once, a
  // takes both, and a collection everyone but stale counts removes the deleted one.
  store->after_scan = [&] {
    ASSERT_TRUE(q.replica.Put("products", "late", {{"name", Value{std::string("y")}}}).ok());
    ASSERT_TRUE(q.replica.Put("products", "gone", {{"name", Value{std::string("z")}}}).ok());
    ASSERT_TRUE(q.replica.Delete("products", "gone").ok());
    ASSERT_TRUE(q.replica.Put("notes", "m", {{"v", Value{int64_t{2}}}}).ok());
    Sync(q, a);
    ASSERT_TRUE(a.replica.Collect(Everyone({&a, &q}), &stats).ok());
    ASSERT_GE(stats.collected, 1u);
  };
  ASSERT_TRUE(link.Pump().ok());
  ASSERT_FALSE(store->after_scan) << "the writes went in between";
  ASSERT_TRUE(link.sa.stats().rebased);
  EXPECT_FALSE(stale.Vv().Covers(Dot{Rid(5), q.Vv().Get(Rid(5))})) << stale.Vv().ToString();
  Sync(a, stale);
  ASSERT_TRUE(stale.replica.Get("products", "late").ok()) << "the write after the page arrives";
  EXPECT_EQ(stale.Dump(), a.Dump());
}

// A member the collection counted holds what it removed: it is not held back.
TEST(Collect, AMemberIsNotHeldBackByACollectionDuringTheStream) {
  Node a(1), b(2);
  Fill(a, "products", 4, "p");
  Sync(a, b);
  DeleteRange(a, "p", 0, 1);
  ASSERT_TRUE(a.replica.Put("notes", "n", {{"v", Value{int64_t{1}}}}).ok());
  Sync(a, b);
  ASSERT_TRUE(a.replica.Put("notes", "m", {{"v", Value{int64_t{1}}}}).ok());
  {
    Link link(b, a);
    ASSERT_TRUE(link.Run(0).ok());
    Replica::CollectStats stats;
    ASSERT_TRUE(a.replica.Collect(Everyone({&a, &b}), &stats).ok());
    ASSERT_GE(stats.collected, 1u);
    ASSERT_TRUE(link.Pump().ok());
    EXPECT_FALSE(link.sa.sync_again());
  }
  EXPECT_TRUE(b.Vv().Covers(a.replica.Collected().value()));
  EXPECT_TRUE(b.Vv().Covers(a.Vv()));
  Link link(b, a);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_FALSE(link.sa.stats().rebased);
}

TEST(Collect, WhatOthersClaimIsCappedByWhatThisReplicaHolds) {
  Node a(1), b(2);
  Fill(a, "products", 4, "p");
  Sync(a, b);
  DeleteRange(a, "p", 0, 4);
  ASSERT_TRUE(a.replica.Put("products", "q", {{"x", Value{int64_t{1}}}}).ok());
  // b has not received the deletions; a claim that everyone holds everything is still
  // bounded by what b itself holds.
  VersionVector everything;
  everything.Raise(Rid(1), 1'000'000);
  Replica::CollectStats stats;
  ASSERT_TRUE(b.replica.Collect(everything, &stats).ok());
  EXPECT_EQ(stats.collected, 0u);
  auto collected = b.replica.Collected();
  ASSERT_TRUE(collected.ok());
  EXPECT_TRUE(collected->empty()) << "nothing removed: no peer is rebased for it";
  Sync(a, b);
  EXPECT_EQ(a.Dump(), b.Dump());
}

}  // namespace
}  // namespace tandem::engine
