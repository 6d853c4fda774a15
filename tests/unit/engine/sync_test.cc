// The sync session state machine, over in-memory replicas and an in-process link.
#include "tandem/engine/sync.h"

#include <gtest/gtest.h>

#include <set>

#include "sync_harness.h"

namespace tandem::engine {
namespace {

TEST(Sync, TwoReplicasConvergeAndCaughtUpIsTrue) {
  Node a(1), b(2);
  Fill(a, "products", 30, "a");
  Fill(b, "products", 20, "b");
  ASSERT_TRUE(a.replica.Put("products", "a1", {{"name", Value{std::string("A says")}}}).ok());
  ASSERT_TRUE(b.replica.Put("products", "a1", {{"name", Value{std::string("B says")}}}).ok());
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sa.caught_up());
  EXPECT_TRUE(link.sb.caught_up());
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_EQ(a.Vv(), b.Vv());
  auto c = a.replica.Conflicts("products", "a1");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->size(), 1u);  // the concurrent puts stay visible
}

// A sender told how far its log may go (SessionOptions::send_upto, as a node says how
// far it has judged the peer) sends nothing past it and is not caught up until the limit
// moves; a Poll then sends the rest.
TEST(Sync, NothingPastTheSendLimitGoes) {
  Node a(1), b(2);
  Fill(a, "products", 3, "p");
  uint64_t upto = 0;
  {
    auto txn = a.replica.store().BeginRead();
    ASSERT_TRUE(txn.ok() && (*txn)->LastLogSeq(&upto).ok());
  }
  Fill(a, "products", 2, "q");
  SessionOptions limited;
  limited.send_upto = [&] { return upto; };
  Link link(a, b, limited);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(b.replica.Get("products", "p2").ok());
  EXPECT_FALSE(b.replica.Get("products", "q0").ok());
  EXPECT_FALSE(link.sa.caught_up());
  EXPECT_EQ(link.sa.capped_at(), upto);
  EXPECT_FALSE(b.Vv().Covers(a.Vv())) << "no claim past what was sent";
  upto = UINT64_MAX;
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_TRUE(b.replica.Get("products", "q1").ok());
  EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
  EXPECT_EQ(link.sa.capped_at(), 0u);
  EXPECT_EQ(a.Dump(), b.Dump());
}

TEST(Sync, SecondSyncSendsNothing) {
  Node a(1), b(2);
  Fill(a, "products", 40, "a");
  Fill(b, "products", 10, "b");
  ASSERT_TRUE(Link(a, b).Run().ok());
  Link again(a, b);
  ASSERT_TRUE(again.Run().ok());
  EXPECT_EQ(again.sa.stats().fields_sent, 0u);
  EXPECT_EQ(again.sb.stats().fields_sent, 0u);
  EXPECT_TRUE(again.sa.caught_up() && again.sb.caught_up());
}

// After a full sync, the next one reads only what changed since: neither side rereads
// the part of its log the last session filled with what the other sent it.
TEST(Sync, AnIncrementalSyncDoesNotRereadWhatTheLastOneExchanged) {
  Node a(1), b(2);
  Fill(a, "products", 300, "a");  // 600 fields, relayed into B's log
  Fill(b, "products", 100, "b");  // 200 fields, relayed into A's log
  ASSERT_TRUE(Link(a, b).Run().ok());
  Fill(a, "products", 3, "a");  // 6 changed fields each
  Fill(b, "products", 3, "b");
  Link again(a, b);
  ASSERT_TRUE(again.Run().ok());
  EXPECT_EQ(again.sa.stats().fields_sent, 6u);
  EXPECT_EQ(again.sb.stats().fields_sent, 6u);
  EXPECT_LE(again.sa.stats().log_entries_scanned, 6u);
  EXPECT_LE(again.sb.stats().log_entries_scanned, 6u);
  EXPECT_EQ(a.Dump(), b.Dump());
}

// The shortcut stops at the first part of the log holding something the requester
// lacks: A took in C's data after its last session with B, and B still gets it.
TEST(Sync, SkippingStopsBeforeWhatTheRequesterLacks) {
  Node a(1), b(2), c(3);
  Fill(a, "products", 50, "a");
  Fill(b, "products", 50, "b");
  ASSERT_TRUE(Link(a, b).Run().ok());
  Fill(c, "products", 20, "c");
  ASSERT_TRUE(Link(a, c).Run().ok());
  Fill(b, "products", 2, "b");
  Link again(a, b);
  ASSERT_TRUE(again.Run().ok());
  EXPECT_EQ(again.sa.stats().fields_sent, 40u);  // C's 20 records
  EXPECT_LE(again.sa.stats().log_entries_scanned, 40u + 4u);
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_NE(b.Dump().find("products/c19"), std::string::npos);
}

TEST(LogHull, CheckpointsStaySpreadOverTheLogAndSkipOnlyWhatIsCovered) {
  LogHull h;
  const ReplicaId x = Rid(1), y = Rid(2);
  for (uint64_t seq = 1; seq <= 100; ++seq) {
    h.hull.Raise(seq % 2 ? x : y, seq);
    h.Checkpoint(seq);
    ASSERT_LE(h.checkpoints.size(), LogHull::kMaxCheckpoints);
  }
  EXPECT_EQ(h.checkpoints.front().seq, 1u);
  EXPECT_EQ(h.checkpoints.back().seq, 100u);
  for (size_t i = 1; i < h.checkpoints.size(); ++i) {
    EXPECT_LT(h.checkpoints[i - 1].seq, h.checkpoints[i].seq);
    EXPECT_TRUE(h.checkpoints[i].hull.Covers(h.checkpoints[i - 1].hull));
  }
  // The same hull again moves the newest checkpoint on instead of adding one.
  h.Checkpoint(120);
  EXPECT_EQ(h.checkpoints.back().seq, 120u);
  EXPECT_EQ(h.checkpoints.size(), LogHull::kMaxCheckpoints);

  VersionVector all;
  all.Raise(x, 99);
  all.Raise(y, 100);
  EXPECT_EQ(h.SkipFor(all, 0), 120u);
  EXPECT_EQ(h.SkipFor(all, 130), 130u) << "never backwards";
  VersionVector part;
  part.Raise(x, 51);
  part.Raise(y, 50);
  const uint64_t to = h.SkipFor(part, 0);
  EXPECT_LE(to, 51u);
  for (const auto& c : h.checkpoints)
    if (c.seq <= to) {
      EXPECT_TRUE(part.Covers(c.hull));
    }
  EXPECT_EQ(h.SkipFor(VersionVector{}, 7), 7u);
  // Before `base` nothing is known.
  h.base = 10;
  EXPECT_EQ(h.SkipFor(all, 9), 9u);
  EXPECT_EQ(h.SkipFor(all, 10), 120u);
}

TEST(Sync, NoEchoInATriangle) {
  Node a(1), b(2), c(3);
  Fill(a, "products", 50, "a");
  ASSERT_TRUE(Link(a, b).Run().ok());
  ASSERT_TRUE(Link(b, c).Run().ok());
  Link ca(c, a);
  ASSERT_TRUE(ca.Run().ok());
  // C got A's data through B; neither sends it back to the other.
  EXPECT_EQ(ca.sa.stats().fields_sent, 0u);
  EXPECT_EQ(ca.sb.stats().fields_sent, 0u);
  EXPECT_EQ(a.Dump(), c.Dump());
}

TEST(Sync, MultiHopKeepsTheOriginalWriter) {
  Node a(1), b(2), c(3);
  ASSERT_TRUE(a.replica.Put("orders", "o1", {{"total", Value{12.5}}}).ok());
  ASSERT_TRUE(Link(a, b).Run().ok());
  ASSERT_TRUE(Link(b, c).Run().ok());
  auto st = c.replica.GetState("orders", "o1");
  ASSERT_TRUE(st.ok());
  const auto& f = st->fields.at("total");
  ASSERT_EQ(f.markers.size(), 1u);
  EXPECT_EQ(f.markers.begin()->first.replica, Rid(1));  // A's dot, not B's
  EXPECT_EQ(c.Vv().Get(Rid(1)), a.Vv().Get(Rid(1)));
}

TEST(Sync, DroppedLinkResumesWhereItStopped) {
  Node a(1), b(2);
  Fill(a, "products", 500, "a");  // 1000 fields
  SessionOptions small;
  small.batch_fields = 50;
  small.window = 2;
  Link first(a, b, small, small);
  ASSERT_TRUE(first.Run(9).ok());  // the link drops mid-transfer
  const uint64_t applied = first.sb.stats().fields_applied;
  ASSERT_GT(applied, 0u);
  ASSERT_LT(applied, 1000u);
  EXPECT_FALSE(first.sb.caught_up());
  EXPECT_EQ(b.Vv().Get(Rid(1)), 0u);  // no watermark before CaughtUp
  Link second(a, b, small, small);
  ASSERT_TRUE(second.Run().ok());
  // Exactly the rest is sent: what was applied before the drop is not sent again.
  EXPECT_EQ(second.sa.stats().fields_sent, 1000u - applied);
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_EQ(a.Vv(), b.Vv());
}

// The transport resizes the window during a session: batches in flight follow it, and
// the data arrives the same.
TEST(Sync, TheWindowCanChangeDuringASession) {
  Node a(1), b(2);
  Fill(a, "products", 500, "a");  // 1000 fields
  SessionOptions small;
  small.batch_fields = 20;
  small.window = 1;
  Link link(a, b, small, small);
  auto in_flight = [&] {
    return std::count_if(link.to_b.begin(), link.to_b.end(),
                         [](const Message& m) { return std::holds_alternative<DeltaBatch>(m); });
  };
  std::vector<Message> out;
  ASSERT_TRUE(link.sa.Start(&out).ok());
  for (auto& m : out) link.to_b.push_back(std::move(m));
  out.clear();
  ASSERT_TRUE(link.sb.Start(&out).ok());
  for (auto& m : out) link.to_a.push_back(std::move(m));
  long most = 0;
  for (int step = 0; step < 30; ++step) {
    ASSERT_TRUE(link.Pump(link.delivered + 1).ok());
    most = std::max<long>(most, in_flight());
  }
  EXPECT_EQ(most, 1);
  link.sa.set_window(6);
  EXPECT_EQ(link.sa.window(), 6u);
  most = 0;
  while (!link.to_a.empty() || !link.to_b.empty()) {
    ASSERT_TRUE(link.Pump(link.delivered + 1).ok());
    most = std::max<long>(most, in_flight());
  }
  EXPECT_EQ(most, 6);
  EXPECT_EQ(a.Dump(), b.Dump());
  link.sa.set_window(0);
  EXPECT_EQ(link.sa.window(), 1u);
  link.sa.set_window(1000);
  EXPECT_EQ(link.sa.window(), Session::kMaxWindow);
}

TEST(Sync, OneWayPolicySendsAndAcceptsOnlyWhatItSays) {
  Node shop(1), office(2);
  Fill(shop, "orders", 5, "o");
  Fill(shop, "scratch", 5, "s");
  Fill(office, "products", 5, "p");
  SessionOptions shop_opt;
  shop_opt.send = CollectionFilter::Only({"orders"});
  shop_opt.accept = CollectionFilter::Only({"products"});
  SessionOptions office_opt;
  office_opt.send = CollectionFilter::Only({"products"});
  office_opt.accept = CollectionFilter::Only({"orders"});
  Link link(shop, office, shop_opt, office_opt);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
  EXPECT_TRUE(office.replica.Get("orders", "o1").ok());
  EXPECT_FALSE(office.replica.Get("scratch", "s1").ok());
  EXPECT_TRUE(shop.replica.Get("products", "p1").ok());
  // Filtered directions do not merge version vectors (the data did not all arrive).
  EXPECT_EQ(office.Vv().Get(Rid(1)), 0u);
}

TEST(Sync, RefusedDataIsCountedAndNotApplied) {
  Node a(1), b(2);
  SessionOptions only_products;
  only_products.accept = CollectionFilter::Only({"products"});
  Session s(b.replica, only_products);
  std::vector<Message> out;
  ASSERT_TRUE(s.Start(&out).ok());
  ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, false, {}}, &out).ok());
  // A sender that ignores our policy.
  FieldState f;
  ApplyPut(f, Dot{Rid(1), 1}, MakeHlc(1, 0), Value{int64_t{1}});
  DeltaBatch batch{
      {FieldDelta{{"orders", "o1", "x"}, f}, FieldDelta{{"products", "p1", "x"}, f}}, 0, 1};
  ASSERT_TRUE(s.Receive(batch, &out).ok());
  EXPECT_EQ(s.stats().fields_refused, 1u);
  EXPECT_FALSE(b.replica.Get("orders", "o1").ok());
  EXPECT_TRUE(b.replica.Get("products", "p1").ok());
  EXPECT_EQ(b.replica.Peer(Rid(1))->fields_refused, 1u);
}

TEST(Sync, LiveSessionsPushNewChanges) {
  Node a(1), b(2);
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  ASSERT_TRUE(a.replica.Incr("inv", "i1", "stock", 5).ok());
  ASSERT_TRUE(b.replica.Incr("inv", "i1", "stock", -2).ok());
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
  EXPECT_EQ(a.replica.Get("inv", "i1")->fields.at("stock").count, 3);
  EXPECT_EQ(a.Dump(), b.Dump());
}

TEST(Sync, LiveSessionsDoNotOfferThePeersOwnChangesBack) {
  Node a(1), b(2);
  Link link(a, b);
  Fill(a, "c", 50, "a");
  ASSERT_TRUE(link.Run().ok());
  // b applied a's 100 fields; its next poll must not send them back to a.
  const uint64_t sent_before = link.sb.stats().fields_sent;
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_EQ(link.sb.stats().fields_sent, sent_before);
  // Live: a's new change reaches b, and b does not echo it after a's CaughtUp.
  ASSERT_TRUE(a.replica.Incr("c", "a1", "stock", 5).ok());
  ASSERT_TRUE(link.Poll().ok());
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_EQ(link.sb.stats().fields_sent, sent_before);
  EXPECT_EQ(a.Dump(), b.Dump());
}

TEST(Sync, RevokedReplicasLaterValuesAreRefusedForGoodAndNotClaimed) {
  Node a(1), b(2), x(3);
  // x's early and late events both reach a; b has x revoked with cutoff 1.
  ASSERT_TRUE(x.replica.Put("c", "early", {{"v", Value{int64_t{1}}}}).ok());
  {
    Link lx(x, a);
    ASSERT_TRUE(lx.Run().ok());
  }
  ASSERT_TRUE(x.replica.Put("c", "late", {{"v", Value{int64_t{2}}}}).ok());
  {
    Link lx(x, a);
    ASSERT_TRUE(lx.Run().ok());
  }
  ASSERT_TRUE(a.replica.Put("c", "own", {{"v", Value{int64_t{3}}}}).ok());
  const ReplicaId xid = Rid(3);
  SessionOptions ob;
  ob.revoked = [xid] { return std::map<ReplicaId, uint64_t>{{xid, 1}}; };
  {
    Link link(a, b, {}, ob);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_TRUE(b.replica.Get("c", "early").ok());
    EXPECT_TRUE(b.replica.Get("c", "own").ok());
    EXPECT_EQ(b.replica.Get("c", "late").status().code(), Code::kNotFound);
    EXPECT_EQ(link.sb.stats().fields_refused, 1u);
  }
  // The peer is not marked for a re-read, and a later session (refusing nothing new)
  // still does not claim x's later events.
  auto ps = b.replica.Peer(Rid(1));
  ASSERT_TRUE(ps.ok());
  EXPECT_FALSE(ps->filtered);
  EXPECT_EQ(ps->fields_refused, 1u);
  {
    Link link(a, b, {}, ob);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sb.stats().fields_refused, 0u);
  }
  EXPECT_EQ(b.Vv().Get(Rid(1)), a.Vv().Get(Rid(1)));  // the rest merged
  EXPECT_LE(b.Vv().Get(xid), 1u);
  // Once a member overwrites x's late value, the overwrite flows: the field is not
  // frozen.
  ASSERT_TRUE(a.replica.Put("c", "late", {{"v", Value{int64_t{4}}}}).ok());
  {
    Link link(a, b, {}, ob);
    ASSERT_TRUE(link.Run().ok());
  }
  auto late = b.replica.Get("c", "late");
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->fields.at("v").scalar, Value{int64_t{4}});
}

// A state that proves itself (SessionOptions::proves_itself: a signed binding, say) is
// judged by `admit` alone: a revoked replica's later events there are not refused by the
// cutoff, while the same replica's later events elsewhere are.
TEST(Sync, AStateThatProvesItselfIsJudgedByAdmitAloneNotByTheCutoffs) {
  Node a(1), x(3);
  ASSERT_TRUE(x.replica.Put("c", "late", {{"v", Value{int64_t{2}}}}).ok());
  ASSERT_TRUE(x.replica.Put("proof", "p", {{"v", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(x.replica.Put("proof", "bad", {{"v", Value{int64_t{0}}}}).ok());
  const ReplicaId xid = Rid(3);
  SessionOptions oa;
  oa.revoked = [xid] { return std::map<ReplicaId, uint64_t>{{xid, 0}}; };
  oa.proves_itself = [](const FieldDelta& d) { return d.key.collection == "proof"; };
  oa.admit = [](const FieldDelta& d, const FieldState*) {
    return d.key.record == "bad" ? Admission::kRefuse : Admission::kAccept;
  };
  Link link(a, x, oa, {});
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(a.replica.Get("proof", "p").ok());
  EXPECT_EQ(a.replica.Get("proof", "bad").status().code(), Code::kNotFound);
  EXPECT_EQ(a.replica.Get("c", "late").status().code(), Code::kNotFound);
  EXPECT_EQ(link.sa.stats().fields_refused, 2u);
}

// A record deletion leaves no marker, only context: a revoked replica's deletions are
// refused where they show, whoever relays them, while a member's later write flows.
// A peer whose CaughtUp claims events of a third replica it never delivered: the
// receiver's watermark takes the claim only as far as the data bears it out, so it
// still asks for those events, and gets them from a replica that has them.
TEST(Sync, AClaimOfEventsNeverDeliveredDoesNotBecomeAWatermark) {
  Node a(1), liar(2), c(3), d(4);
  Fill(c, "products", 5, "c");
  Fill(liar, "products", 2, "l");
  const uint64_t c_events = c.Vv().Get(Rid(3));
  ASSERT_GT(c_events, 0u);
  {
    Link link(a, liar);
    // Every CaughtUp the liar sends a claims all of c.
    link.from_b = [&](Message& m) {
      if (auto* cu = std::get_if<CaughtUp>(&m)) cu->vv.Merge(c.Vv());
    };
    ASSERT_TRUE(link.Run().ok());
    ASSERT_TRUE(link.sa.caught_up());
  }
  EXPECT_EQ(a.Vv().Get(Rid(3)), 0u);                     // the claim was not taken
  EXPECT_EQ(a.Vv().Get(Rid(2)), liar.Vv().Get(Rid(2)));  // what it did deliver was
  // c's events reach a through d, which a would otherwise have told it already holds.
  ASSERT_TRUE(Link(d, c).Run().ok());
  ASSERT_TRUE(Link(a, d).Run().ok());
  EXPECT_EQ(a.Dump(), d.Dump());
  EXPECT_NE(a.Dump().find("products/c4"), std::string::npos);
}

// c writes x, then y; the liar holds only y (whose context covers x's event) and tells
// a, in its CaughtUp, that it holds every event of c: a's watermark then claims x.
void PlantLie(Node& a, Node& liar, Node& c) {
  ASSERT_TRUE(c.replica.Put("products", "x", {{"price", Value{int64_t{5}}}}).ok());
  ASSERT_TRUE(c.replica.Put("products", "y", {{"price", Value{int64_t{7}}}}).ok());
  auto y = c.replica.GetState("products", "y");
  ASSERT_TRUE(y.ok());
  size_t changed = 0;
  ASSERT_TRUE(
      liar.replica.ApplyDeltas({{{"products", "y", "price"}, y->fields.at("price")}}, &changed)
          .ok());
  Link link(a, liar);
  link.from_b = [&](Message& m) {
    if (auto* cu = std::get_if<CaughtUp>(&m)) cu->vv.Merge(c.Vv());
  };
  ASSERT_TRUE(link.Run().ok());
}

SessionOptions Compare() {
  SessionOptions o;
  o.compare_states = true;
  return o;
}

// A liar that delivered one late event of a replica claims the earlier ones too: a
// context shows that event exists, not that the liar holds its predecessors, so the
// receiver's watermark takes the claim, and an honest replica that has the earlier
// event skips it. Comparing states at equal version vectors finds what is missing, and
// the next session takes the honest replica's whole state in.
TEST(Sync, ALieTheDataCannotDisproveIsFoundByComparingStates) {
  Node a(1), liar(2), c(3), d(4);
  ASSERT_NO_FATAL_FAILURE(PlantLie(a, liar, c));
  ASSERT_EQ(a.Vv().Get(Rid(3)), c.Vv().Get(Rid(3))) << "the lie is within what the data shows";
  ASSERT_FALSE(a.replica.Get("products", "x").ok());
  ASSERT_TRUE(Link(d, c).Run().ok());
  ASSERT_EQ(a.Vv(), d.Vv());
  // a's vector says it holds x; d does not send it, but the two compare their states.
  {
    Link link(a, d, Compare(), Compare());
    const Status st = link.Run();
    EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
    EXPECT_NE(st.message().find("differs in products"), std::string::npos) << st.ToString();
    EXPECT_TRUE(link.sa.repair_due() || link.sb.repair_due());
    EXPECT_TRUE(link.sa.sync_again() || link.sb.sync_again());
    EXPECT_FALSE(a.replica.Get("products", "x").ok());
  }
  // The next sessions rebase, each side that saw the difference on the other's whole
  // state (where the link ended before one side saw it, that side sees it next time).
  bool repaired = false;
  for (int i = 0; i < 2 && !a.replica.Get("products", "x").ok(); ++i) {
    Link link(a, d, Compare(), Compare());
    const Status st = link.Run();
    EXPECT_TRUE(st.ok() || st.code() == Code::kBusy) << st.ToString();
    repaired |= link.sa.stats().repaired;
  }
  EXPECT_TRUE(repaired);
  EXPECT_EQ(a.Dump(), d.Dump());
  auto x = a.replica.Get("products", "x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(DebugString(x->fields.at("price").scalar), "5");
  // Repaired, the two compare equal: no further rebase.
  Link again(a, d, Compare(), Compare());
  ASSERT_TRUE(again.Run().ok());
  EXPECT_TRUE(again.sa.stats().states_compared);
  EXPECT_FALSE(again.sa.stats().rebased);
}

// A difference a whole exchange does not mend (here, the state a lacks, which it
// refuses once it comes) is repaired once, not at every session.
TEST(Sync, ADifferenceARepairLeftIsNotRepairedAgain) {
  Node a(1), liar(2), c(3), d(4);
  ASSERT_NO_FATAL_FAILURE(PlantLie(a, liar, c));
  ASSERT_TRUE(Link(d, c).Run().ok());
  SessionOptions oa = Compare();
  oa.admit = [](const FieldDelta& dl, const FieldState*) {
    return dl.key.record == "x" ? Admission::kRefuse : Admission::kAccept;
  };
  int rebases = 0, busy = 0;
  for (int i = 0; i < 6; ++i) {
    Link link(a, d, oa, Compare());
    const Status st = link.Run();
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
      EXPECT_LT(i, 3) << "a difference repaired once ended a session again";
      ++busy;
    }
    rebases += link.sa.stats().rebased + link.sb.stats().rebased;
    if (i == 5) {
      EXPECT_TRUE(link.sa.stats().states_compared);
      EXPECT_EQ(link.sa.stats().states_differ, std::vector<std::string>{"products"});
    }
  }
  EXPECT_GE(busy, 1);
  EXPECT_LE(busy, 2);  // once per side at most
  EXPECT_GE(rebases, 1);
  EXPECT_LE(rebases, 2);
  EXPECT_FALSE(a.replica.Get("products", "x").ok());
}

TEST(Sync, ARevokedReplicasRecordDeletionsAreRefusedWhoeverRelaysThem) {
  Node a(1), b(2), c(3);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(
        a.replica
            .Put("c", "r" + std::to_string(i), {{"v", Value{int64_t{i}}}, {"w", Value{int64_t{i}}}})
            .ok());
  ASSERT_TRUE(Link(a, b).Run().ok());
  ASSERT_TRUE(Link(a, c).Run().ok());
  // a revokes b; b, unaware, deletes three records and syncs to c, which relays.
  const ReplicaId bid = Rid(2);
  const uint64_t cutoff = a.Vv().Get(bid);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.replica.Delete("c", "r" + std::to_string(i)).ok());
  ASSERT_TRUE(Link(b, c).Run().ok());
  ASSERT_FALSE(c.replica.Get("c", "r0").ok()) << "c has not heard of the revocation";
  ASSERT_TRUE(c.replica.Put("c", "r3", {{"v", Value{int64_t{100}}}}).ok());
  SessionOptions oa;
  oa.revoked = [bid, cutoff] { return std::map<ReplicaId, uint64_t>{{bid, cutoff}}; };
  {
    Link link(c, a, {}, oa);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sb.stats().fields_refused, 6u);
  }
  for (int i = 0; i < 3; ++i) {
    auto rec = a.replica.Get("c", "r" + std::to_string(i));
    ASSERT_TRUE(rec.ok()) << "r" << i << " was deleted by a revoked replica";
    EXPECT_EQ(rec->fields.at("w").scalar, Value{int64_t{i}});
  }
  EXPECT_EQ(a.replica.Get("c", "r3")->fields.at("v").scalar, Value{int64_t{100}});
  EXPECT_LE(a.Vv().Get(bid), cutoff);
  // A member writing over the deleted record brings its own operation: it flows.
  ASSERT_TRUE(c.replica.Put("c", "r0", {{"v", Value{int64_t{7}}}}).ok());
  {
    Link link(c, a, {}, oa);
    ASSERT_TRUE(link.Run().ok());
  }
  auto r0 = a.replica.Get("c", "r0");
  ASSERT_TRUE(r0.ok());
  EXPECT_EQ(r0->fields.at("v").scalar, Value{int64_t{7}});
  EXPECT_EQ(r0->fields.at("w").scalar, Value{int64_t{0}}) << "still refused";
}

TEST(Sync, AClockFarInTheFutureDoesNotDragOursAlong) {
  Node a(1), b(2);
  a.now += 10ull * 365 * 24 * 3600 * 1000;  // a thinks it is ten years later
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", Value{int64_t{1}}}}).ok());
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(b.replica.Get("c", "r")->fields.at("x").scalar, Value{int64_t{1}});
  // b's clock moved at most the drift bound past its own time...
  EXPECT_LE(HlcMillis(b.replica.Meta()->clock), b.now + kMaxClockDriftMs);
  // ...and b's own writes still carry b's time, and still overwrite what they saw.
  ASSERT_TRUE(b.replica.Put("c", "r", {{"x", Value{int64_t{2}}}}).ok());
  EXPECT_LE(HlcMillis(b.replica.Meta()->clock), b.now + kMaxClockDriftMs + 1);
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_EQ(a.replica.Get("c", "r")->fields.at("x").scalar, Value{int64_t{2}});
  EXPECT_EQ(a.Dump(), b.Dump());
}

TEST(Sync, BadMessagesEndTheSessionAndChangeNothing) {
  Node a(1), b(2);
  std::vector<Message> out;
  {
    Session s(b.replica, {});
    ASSERT_TRUE(s.Start(&out).ok());
    EXPECT_FALSE(s.Receive(DeltaBatch{}, &out).ok());  // before Hello
  }
  {
    Session s(b.replica, {});
    ASSERT_TRUE(s.Start(&out).ok());
    EXPECT_EQ(s.Receive(Hello{99, Rid(1), {}, {}, false, {}}, &out).code(), Code::kUnsupported);
  }
  {
    Session s(b.replica, {});
    ASSERT_TRUE(s.Start(&out).ok());
    EXPECT_FALSE(
        s.Receive(Hello{kProtocolVersion, Rid(2), {}, {}, false, {}}, &out).ok());  // ourselves
  }
  {
    Session s(b.replica, {});
    ASSERT_TRUE(s.Start(&out).ok());
    ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, false, {}}, &out).ok());
    EXPECT_FALSE(s.Receive(CaughtUp{7, {}, {}}, &out).ok());  // claims a batch we never got
    EXPECT_FALSE(s.Receive(Ack{1}, &out).ok());               // nothing in flight
  }
  {
    Node full(5);
    Fill(full, "c", 3, "r");
    Session s(full.replica, {});
    ASSERT_TRUE(s.Start(&out).ok());
    ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, false, {}}, &out).ok());
    ASSERT_TRUE(s.Receive(SyncRequest{{}, 0}, &out).ok());  // it sends a batch
    EXPECT_FALSE(s.Receive(Ack{12345}, &out).ok());         // for a cursor it never sent
    FieldState f;
    ApplyPut(f, Dot{Rid(1), 1}, MakeHlc(1, 0), Value{int64_t{1}});
    DeltaBatch bad{{FieldDelta{{"c", "r", "ok"}, f}, FieldDelta{{"c", "", "x"}, f}}, 0, 1};
    EXPECT_FALSE(s.Receive(bad, &out).ok());  // an invalid key: the whole batch is refused
  }
  EXPECT_EQ(b.Dump(), "");
  EXPECT_EQ(b.Vv().Get(Rid(1)), 0u);
}

// Found in review: a filtered session moved the cursor past data the receiver never got;
// a later unfiltered session then merged the watermark and the data was lost for good.
TEST(Sync, WideningAPolicyResendsWhatTheNarrowOneLeftOut) {
  Node a(1), b(2), c(3);
  Fill(a, "a", 5, "x");
  Fill(a, "b", 5, "y");
  SessionOptions only_a;
  only_a.accept = CollectionFilter::Only({"a"});
  ASSERT_TRUE(Link(a, b, {}, only_a).Run().ok());
  EXPECT_FALSE(b.replica.Get("b", "y1").ok());
  EXPECT_TRUE(b.replica.Peer(Rid(1))->filtered);
  Link wide(a, b);  // the policy is widened to everything
  ASSERT_TRUE(wide.Run().ok());
  EXPECT_TRUE(b.replica.Get("b", "y1").ok());
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_EQ(b.Vv().Get(Rid(1)), a.Vv().Get(Rid(1)));  // merged only now
  EXPECT_FALSE(b.replica.Peer(Rid(1))->filtered);
  ASSERT_TRUE(Link(b, c).Run().ok());  // and a third replica gets everything through B
  EXPECT_EQ(a.Dump(), c.Dump());
}

// A policy that widens but still leaves something out (a device may now read one more
// collection, not all): the collection it adds has changes before the cursor the narrow
// sessions left, and they come too, while the collection still left out stays out.
TEST(Sync, WideningAPolicyThatStillFiltersResendsWhatTheNarrowOneLeftOut) {
  Node a(1), b(2);
  Fill(a, "a", 5, "x");
  Fill(a, "b", 5, "y");
  Fill(a, "c", 5, "z");
  SessionOptions only_a;
  only_a.accept = CollectionFilter::Only({"a"});
  ASSERT_TRUE(Link(a, b, {}, only_a).Run().ok());
  ASSERT_TRUE(Link(a, b, {}, only_a).Run().ok());  // the narrow one again: nothing to re-read
  EXPECT_EQ(b.replica.Peer(Rid(1))->received, CollectionFilter::Only({"a"}));
  EXPECT_FALSE(b.replica.Get("b", "y1").ok());
  SessionOptions a_and_b;  // as a sender's send filter would say it: the peer's side
  a_and_b.send = CollectionFilter::Only({"a", "b"});
  ASSERT_TRUE(Link(a, b, a_and_b, {}).Run().ok());
  EXPECT_TRUE(b.replica.Get("b", "y1").ok()) << "the widened collection's earlier changes";
  EXPECT_FALSE(b.replica.Get("c", "z1").ok());
  EXPECT_EQ(b.replica.Peer(Rid(1))->received, CollectionFilter::Only({"a", "b"}));
  // Narrowed again, then widened back: what the narrow session passed over comes.
  Fill(a, "b", 3, "later");
  ASSERT_TRUE(Link(a, b, {}, only_a).Run().ok());
  EXPECT_FALSE(b.replica.Get("b", "later1").ok());
  EXPECT_EQ(b.replica.Peer(Rid(1))->received, CollectionFilter::Only({"a"}));
  ASSERT_TRUE(Link(a, b, a_and_b, {}).Run().ok());
  EXPECT_TRUE(b.replica.Get("b", "later1").ok());
  // Everything at last: the watermark merges and nothing is left out.
  ASSERT_TRUE(Link(a, b).Run().ok());
  EXPECT_EQ(a.Dump(), b.Dump());
  EXPECT_FALSE(b.replica.Peer(Rid(1))->filtered);
}

TEST(Sync, CollectionFiltersCombine) {
  using F = CollectionFilter;
  EXPECT_EQ(F::Both(F::AllBut({"x"}), F::AllBut({"y"})), F::AllBut({"x", "y"}));
  EXPECT_EQ(F::Both(F::AllBut({"x"}), F::Only({"x", "y"})), F::Only({"y"}));
  EXPECT_EQ(F::Both(F::Only({"x", "y"}), F::AllBut({"y"})), F::Only({"x"}));
  EXPECT_EQ(F::Both(F{}, F::AllBut({"y"})), F::AllBut({"y"}));
  EXPECT_TRUE(F::AllBut({"x", "y"}).Within(F::AllBut({"x"})));
  EXPECT_FALSE(F::AllBut({"x"}).Within(F::AllBut({"x", "y"})));
  EXPECT_TRUE(F::Only({"y"}).Within(F::AllBut({"x"})));
  EXPECT_FALSE(F::Only({"x", "y"}).Within(F::AllBut({"x"})));
  EXPECT_FALSE(F::AllBut({"x"}).Within(F::Only({"y", "z"})));
  EXPECT_TRUE(F::AllBut({"x"}).Within(F{}));
  EXPECT_FALSE(F{}.Within(F::AllBut({"x"})));
  EXPECT_TRUE(F::AllBut({"x"}).Excludes() && !F::AllBut({"x"}).Everything());
  EXPECT_FALSE(F::AllBut({"x"}).Allows("x"));
  EXPECT_TRUE(F::AllBut({"x"}).Allows("anything else"));
}

// A policy that leaves a collection out sends every other, one made after the session
// started included, and is remembered as such; toward a peer of an older build (its
// Hello carries no send_full) it is what `send_older` says, and nothing without it.
TEST(Sync, APolicyThatLeavesACollectionOutSendsEveryOther) {
  Node a(1), b(2);
  Fill(a, "a", 3, "x");
  Fill(a, "secret", 3, "s");
  SessionOptions to_b;
  to_b.send = CollectionFilter::AllBut({"secret"});
  to_b.send_older = CollectionFilter::Only({"a"});
  ASSERT_TRUE(Link(a, b, to_b, {}).Run().ok());
  EXPECT_TRUE(b.replica.Get("a", "x1").ok());
  EXPECT_FALSE(b.replica.Get("secret", "s1").ok());
  EXPECT_EQ(b.replica.Peer(Rid(1))->received, CollectionFilter::AllBut({"secret"}));
  EXPECT_EQ(b.replica.Meta()->scope, CollectionFilter::AllBut({"secret"}));

  // A new collection goes too, made during a live session or between two, and the
  // peer's log is not read again from the start.
  {
    Link link(a, b, to_b, {});
    ASSERT_TRUE(link.Run().ok());
    Fill(a, "live", 2, "q");
    Fill(a, "secret", 1, "t");
    ASSERT_TRUE(link.Poll().ok());
    EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
    EXPECT_EQ(link.sa.stats().fields_sent, 4u);
  }
  EXPECT_TRUE(b.replica.Get("live", "q1").ok());
  EXPECT_FALSE(b.replica.Get("secret", "t0").ok());
  Fill(a, "b", 2, "y");
  {
    Link link(a, b, to_b, {});
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_sent, 4u) << "only the new records' fields";
  }
  EXPECT_TRUE(b.replica.Get("b", "y1").ok());
  EXPECT_FALSE(b.replica.Get("secret", "s1").ok());

  // Older builds on both sides (no send_full): what send_older names.
  auto older = [](Message& m) {
    if (auto* h = std::get_if<Hello>(&m)) h->send_full.reset();
  };
  Fill(a, "a", 5, "later");
  Fill(a, "c", 2, "z");
  {
    Link link(a, b, to_b, {});
    link.from_a = older;
    link.from_b = older;
    ASSERT_TRUE(link.Run().ok());
  }
  EXPECT_TRUE(b.replica.Get("a", "later4").ok());
  EXPECT_FALSE(b.replica.Get("c", "z1").ok()) << "not in send_older";
  EXPECT_FALSE(b.replica.Get("secret", "s1").ok());
  // And nothing at all without it.
  Fill(a, "a", 7, "last");
  to_b.send_older.reset();
  {
    Link link(a, b, to_b, {});
    link.from_a = older;
    link.from_b = older;
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sa.stats().fields_sent, 0u);
  }
  EXPECT_FALSE(b.replica.Get("a", "last6").ok());
  // Both builds new again: what the older sessions passed over comes.
  to_b.send_older = CollectionFilter::Only({"a"});
  ASSERT_TRUE(Link(a, b, to_b, {}).Run().ok());
  EXPECT_TRUE(b.replica.Get("a", "last6").ok());
  EXPECT_TRUE(b.replica.Get("c", "z1").ok());
  EXPECT_FALSE(b.replica.Get("secret", "s1").ok());
}

TEST(Sync, LargeFieldsSplitIntoBatchesUnderTheFrameLimit) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica
                  .Write([&](Batch& bt) {
                    for (int i = 0; i < 12; ++i)
                      TANDEM_RETURN_IF_ERROR(bt.Put("files", "f" + std::to_string(i), "data",
                                                    Value{Bytes{std::string(200 << 10, 'z')}}));
                    return Status::Ok();
                  })
                  .ok());
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  EXPECT_GE(link.sa.stats().batches_sent, 3u);  // 2.4 MB cannot go in one message
  EXPECT_EQ(a.Dump(), b.Dump());
}

TEST(Sync, AFieldTooLargeForAnyMessageStillSyncs) {
  Node a(1), b(2), c(3), e(4);
  // Four concurrent 256 KiB writes stay as siblings: one field state over 1 MiB.
  for (Node* n : {&a, &b, &c, &e})
    ASSERT_TRUE(
        n->replica.Put("files", "big", {{"data", Value{Bytes{std::string(256 << 10, 'q')}}}}).ok());
  for (Node* n : {&b, &c, &e}) ASSERT_TRUE(Link(*n, a).Run().ok());
  ASSERT_EQ(a.replica.GetState("files", "big")->fields.at("data").markers.size(), 4u);
  Node d(5);
  Link link(a, d);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(d.replica.GetState("files", "big")->fields.at("data").markers.size(), 4u);
  EXPECT_TRUE(link.sa.caught_up() && link.sb.caught_up());
}

TEST(Sync, ReorderedOrDuplicatedBatchesAreRejectedBeforeApplying) {
  Node a(1), b(2);
  Session s(b.replica, {});
  std::vector<Message> out;
  ASSERT_TRUE(s.Start(&out).ok());
  ASSERT_TRUE(s.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, false, {}}, &out).ok());
  FieldState f1, f2;
  ApplyPut(f1, Dot{Rid(1), 1}, MakeHlc(1, 0), Value{int64_t{1}});
  ApplyPut(f2, Dot{Rid(1), 2}, MakeHlc(2, 0), Value{int64_t{2}});
  DeltaBatch first{{FieldDelta{{"c", "r1", "x"}, f1}}, 0, 10};
  DeltaBatch second{{FieldDelta{{"c", "r2", "x"}, f2}}, 10, 20};
  // The second batch arriving first would store cursor 20 and lose the first for good.
  EXPECT_FALSE(s.Receive(second, &out).ok());
  EXPECT_FALSE(b.replica.Get("c", "r2").ok());
  EXPECT_EQ(b.replica.Peer(Rid(1))->cursor, 0u);
  Session t(b.replica, {});
  ASSERT_TRUE(t.Start(&out).ok());
  ASSERT_TRUE(t.Receive(Hello{kProtocolVersion, Rid(1), {}, {}, false, {}}, &out).ok());
  ASSERT_TRUE(t.Receive(first, &out).ok());
  EXPECT_FALSE(t.Receive(first, &out).ok());  // a duplicate
  EXPECT_EQ(b.replica.Peer(Rid(1))->cursor, 10u);
}

// A state held until what proves its writer arrives (a binding, say) is judged again at
// the end of the batch that brought the proof, before the session moves on.
TEST(Sync, HeldStatesAreJudgedAgainWhenTheBatchBringsTheirProof) {
  for (bool hook : {true, false}) {
    Node a(1), b(2);
    ASSERT_TRUE(a.replica.Put("c", "r", {{"x", Value{int64_t{1}}}}).ok());
    ASSERT_TRUE(a.replica.Put("keys", "k1", {{"k", Value{int64_t{1}}}}).ok());
    SessionOptions ob;
    ob.admit = [&b](const FieldDelta& d, const FieldState*) {
      return d.key.collection == "c" && !b.replica.Get("keys", "k1").ok() ? Admission::kHold
                                                                          : Admission::kAccept;
    };
    ob.proves_itself = [](const FieldDelta& d) { return d.key.collection == "keys"; };
    if (hook)
      ob.judge_held = [&b, admit = ob.admit] { return b.replica.JudgeHeld(admit).status(); };
    Link link(a, b, {}, ob);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_EQ(link.sb.stats().fields_quarantined, 1u);
    EXPECT_EQ(b.replica.Get("c", "r").ok(), hook) << hook;
    EXPECT_EQ(b.replica.Quarantined()->size(), hook ? 0u : 1u);
  }
}

// Every other peer offers held states again (the watermark stops below them): each is
// held once, across batches and peers, and a changed one is a new entry.
TEST(Sync, EachHeldStateIsKeptOnceHoweverOftenItComes) {
  Node a(1), b(2), c(3), d(4);
  Fill(a, "c", 1500, "r");  // 3,000 field states, in two batches at least
  SessionOptions hold;
  hold.admit = [](const FieldDelta&, const FieldState*) { return Admission::kHold; };
  for (Node* relay : {&c, &d}) {
    Link copy(a, *relay);
    ASSERT_TRUE(copy.Run().ok());
  }
  for (Node* from : {&a, &c, &d}) {
    Link link(*from, b, {}, hold);
    ASSERT_TRUE(link.Run().ok());
    EXPECT_GE(link.sa.stats().batches_sent, 2u);
    EXPECT_EQ(b.replica.Quarantined()->size(), 3000u);
  }
  ASSERT_TRUE(a.replica.Put("c", "r7", {{"name", Value{std::string("changed")}}}).ok());
  Link link(a, b, {}, hold);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(b.replica.Quarantined()->size(), 3001u);
}

}  // namespace
}  // namespace tandem::engine

namespace tandem::engine {
namespace {

// A field's share of the sums: its operations, whatever its context says it has seen;
// nothing for a state that holds nothing (collection may remove it at any time).
TEST(Digests, AFieldsShareIsItsOperationsAlone) {
  Node n(1);
  const FieldKey key{"products", "p1", "price"};
  FieldState s;
  ApplyPut(s, {Rid(1), 1}, MakeHlc(1700000000000, 0), Value{int64_t{5}});
  const auto share = n.replica.FieldDigest(key, s);
  EXPECT_NE(share, (std::array<uint8_t, 16>{}));
  FieldState seen_more = s;
  seen_more.ctx.Raise(Rid(2), 9);  // has seen more elsewhere, holds the same
  EXPECT_EQ(n.replica.FieldDigest(key, seen_more), share);
  EXPECT_NE(n.replica.FieldDigest({"products", "p2", "price"}, s), share);
  FieldState other = s;
  ApplyPut(other, {Rid(2), 1}, MakeHlc(1700000000001, 0), Value{int64_t{5}});
  EXPECT_NE(n.replica.FieldDigest(key, other), share) << "another operation, the same value";
  FieldState counted;
  ApplyIncr(counted, {Rid(1), 2}, MakeHlc(1700000000002, 0), 3);
  FieldState counted_more = counted;
  ApplyIncr(counted_more, {Rid(1), 3}, MakeHlc(1700000000003, 0), 1);
  EXPECT_NE(n.replica.FieldDigest(key, counted), n.replica.FieldDigest(key, counted_more));
  FieldState gone = s;
  ApplyDelete(gone, {Rid(1), 4});
  EXPECT_EQ(n.replica.FieldDigest(key, gone), (std::array<uint8_t, 16>{}));

  // Two replicas that synced agree; a write on one makes its collection's sum differ.
  Node a(1), b(2);
  Fill(a, "products", 20, "p");
  Fill(b, "orders", 5, "o");
  ASSERT_TRUE(Link(a, b).Run().ok());
  auto da = a.replica.Digests(), db = b.replica.Digests();
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_EQ(da->sums, db->sums);
  EXPECT_EQ(da->sums.size(), 2u);
  ASSERT_TRUE(a.replica.Put("products", "p3", {{"name", Value{std::string("new")}}}).ok());
  auto again = a.replica.Digests();
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->sums.at("products"), db->sums.at("products"));
  EXPECT_EQ(again->sums.at("orders"), db->sums.at("orders"));
}

}  // namespace
}  // namespace tandem::engine

namespace tandem::engine {
namespace {

// A repair takes the peer's whole state in and drops nothing of ours: where states
// differ at equal version vectors, the peer's collected vector is in doubt too (a lie it
// took may have let it collect what it never held), so what it covers and did not send
// is no proof that the peer removed it.
TEST(Sync, ARepairDropsNothingThePeersCollectedVectorCovers) {
  Node a(1), b(2), c(3);
  ASSERT_TRUE(c.replica.Put("products", "f", {{"price", Value{int64_t{5}}}}).ok());
  ASSERT_TRUE(Link(a, c).Run().ok());
  ASSERT_TRUE(c.replica.Put("products", "g", {{"price", Value{int64_t{6}}}}).ok());
  ASSERT_TRUE(Link(a, c).Run().ok());
  // b holds only g, claims c's events, and has collected what c:1 was.
  auto g = c.replica.GetState("products", "g");
  ASSERT_TRUE(g.ok());
  size_t changed = 0;
  ASSERT_TRUE(
      b.replica.ApplyDeltas({{{"products", "g", "price"}, g->fields.at("price")}}, &changed).ok());
  ASSERT_TRUE(b.replica.MergeVersionVector(a.Vv()).ok());
  ASSERT_TRUE(a.replica.MergeVersionVector(b.Vv()).ok());
  {
    auto txn = b.replica.store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    VersionVector collected;
    collected.Raise(Rid(3), 1);
    ASSERT_TRUE((*txn)->PutCollected(collected).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  ASSERT_EQ(a.Vv(), b.Vv());
  bool repaired = false;
  for (int i = 0; i < 4; ++i) {
    Link link(a, b, Compare(), Compare());
    const Status st = link.Run();
    EXPECT_TRUE(st.ok() || st.code() == Code::kBusy) << st.ToString();
    repaired |= link.sa.stats().repaired;
  }
  EXPECT_TRUE(repaired);
  auto f = a.replica.Get("products", "f");
  ASSERT_TRUE(f.ok()) << "a repair dropped a value the peer never held";
  EXPECT_EQ(DebugString(f->fields.at("price").scalar), "5");
}

}  // namespace
}  // namespace tandem::engine

namespace tandem::engine {
namespace {

// A repair whose session is cut before the peer's whole state is in is not taken for
// done: the next comparison finds the same difference and repairs it.
TEST(Sync, ARepairCutShortIsDoneAgain) {
  Node a(1), liar(2), c(3), d(4);
  ASSERT_NO_FATAL_FAILURE(PlantLie(a, liar, c));
  ASSERT_TRUE(Link(d, c).Run().ok());
  // a has seen its data differ from d's (as a comparison would note it).
  const Replica::Difference differ{{"products", {{1}, {2}}}};
  ASSERT_TRUE(a.replica.NoteDifference(Rid(4), differ));
  EXPECT_FALSE(a.replica.NoteDifference(Rid(4), differ)) << "noted once";
  {
    Link cut(a, d, Compare(), Compare());
    ASSERT_TRUE(cut.Run(2).ok());  // the Hellos only: a asked for d's whole state
    EXPECT_FALSE(a.replica.RepairDue(nullptr)) << "the session took the repair";
  }
  ASSERT_FALSE(a.replica.Get("products", "x").ok());
  EXPECT_TRUE(a.replica.NoteDifference(Rid(4), differ)) << "a repair cut short is not done";
  for (int i = 0; i < 3 && !a.replica.Get("products", "x").ok(); ++i) {
    Link link(a, d, Compare(), Compare());
    const Status st = link.Run();
    EXPECT_TRUE(st.ok() || st.code() == Code::kBusy) << st.ToString();
  }
  EXPECT_TRUE(a.replica.Get("products", "x").ok());
}

}  // namespace
}  // namespace tandem::engine
