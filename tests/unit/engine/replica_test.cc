// Local reads and writes, deletes, scans, conflicts, the change feed and batches.
#include "tandem/engine/replica.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "replica_node.h"

namespace tandem::engine {
namespace {

// ---- basic reads and writes ---------------------------------------------------------

// Repeated operations on one field in a batch are written once; everything the batch
// does must read and sync exactly as if each operation had been its own transaction.
TEST(ReplicaTest, ABatchOfRepeatedOperationsEqualsTheOperationsOneByOne) {
  Node batched(1), single(1);
  using Op = std::function<Status(Batch&)>;
  const std::vector<Op> ops = {
      [](Batch& b) { return b.Incr("c", "r", "n", 5); },
      [](Batch& b) { return b.Incr("c", "r", "n", -2); },
      [](Batch& b) { return b.Incr("c", "r", "n", 10); },
      [](Batch& b) { return b.Put("c", "r", "name", S("a")); },
      [](Batch& b) { return b.Incr("c", "r", "n", 1); },
      [](Batch& b) { return b.Add("c", "r", "tags", S("x")); },
      [](Batch& b) { return b.Add("c", "r", "tags", S("y")); },
      [](Batch& b) { return b.Remove("c", "r", "tags", S("x")); },
      [](Batch& b) {
        RecordState st;
        TANDEM_RETURN_IF_ERROR(b.ReadRecord("c", "r", &st));
        // The batch's own writes, the held-back ones included, are visible.
        auto rec = Read("r", st);
        if (!rec || rec->fields.at("tags").set.size() != 1)
          return Status::Corrupt("batch did not see its own writes");
        return Status::Ok();
      },
      [](Batch& b) { return b.Incr("c", "r", "n", 100); },
      [](Batch& b) { return b.Delete("c", "r"); },
      [](Batch& b) { return b.Incr("c", "r", "n", 7); },
      [](Batch& b) { return b.Incr("c", "r", "n", 7); },
      [](Batch& b) { return b.Put("c", "r2", "v", I(1)); },
      [](Batch& b) { return b.Put("c", "r2", "v", I(2)); },
  };
  ASSERT_TRUE(batched.replica
                  .Write([&](Batch& b) {
                    for (const auto& op : ops) TANDEM_RETURN_IF_ERROR(op(b));
                    return Status::Ok();
                  })
                  .ok());
  for (const auto& op : ops) ASSERT_TRUE(single.replica.Write(op).ok());
  EXPECT_EQ(batched.Get("c", "r"), single.Get("c", "r"));
  EXPECT_EQ(batched.Get("c", "r").fields.at("n").count, 14);
  EXPECT_EQ(batched.Get("c", "r2"), single.Get("c", "r2"));
  EXPECT_EQ(batched.Meta().vv, single.Meta().vv);
  EXPECT_EQ(batched.replica.GetState("c", "r").value(), single.replica.GetState("c", "r").value());
  // And a failed batch leaves nothing, held-back writes included.
  Status st = batched.replica.Write([](Batch& b) {
    TANDEM_RETURN_IF_ERROR(b.Incr("c", "r", "n", 1000));
    TANDEM_RETURN_IF_ERROR(b.Incr("c", "r", "n", 1000));
    return Status::Invalid("changed my mind");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(batched.Get("c", "r").fields.at("n").count, 14);
}

TEST(ReplicaTest, FreshReplicaIsEmpty) {
  Node a(1);
  ReplicaMeta m = a.Meta();
  EXPECT_EQ(m.id, a.id);
  EXPECT_EQ(m.clock, 0u);
  EXPECT_TRUE(m.vv.empty());
  auto got = a.replica.Get("users", "u1");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kNotFound);
  auto cols = a.replica.Collections();
  ASSERT_TRUE(cols.ok());
  EXPECT_TRUE(cols->empty());
  auto page = a.replica.Changes(0, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->changes.empty());
  EXPECT_EQ(page->next_cursor, 0u);
}

TEST(ReplicaTest, PutThenGet) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("users", "u1", {{"name", S("Ann")}, {"age", I(30)}}).ok());
  Record r = a.Get("users", "u1");
  EXPECT_EQ(r.id, "u1");
  ASSERT_EQ(r.fields.size(), 2u);
  EXPECT_TRUE(SameValue(Scalar(r, "name"), S("Ann")));
  EXPECT_TRUE(SameValue(Scalar(r, "age"), I(30)));
  // Other records and collections are unaffected.
  EXPECT_EQ(a.replica.Get("users", "u2").status().code(), Code::kNotFound);
  EXPECT_EQ(a.replica.Get("other", "u1").status().code(), Code::kNotFound);
}

TEST(ReplicaTest, EachOperationTakesADotAndATimestamp) {
  Node a(1, 5000);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}, {"y", I(2)}}).ok());
  ReplicaMeta m = a.Meta();
  EXPECT_EQ(m.vv.Get(a.id), 2u);  // one dot per field written
  EXPECT_EQ(m.clock, MakeHlc(5000, 1));
  auto st = a.replica.GetState("c", "r");
  ASSERT_TRUE(st.ok());
  const FieldState& x = st->fields.at("x");
  const FieldState& y = st->fields.at("y");
  ASSERT_EQ(x.markers.size(), 1u);
  ASSERT_EQ(y.markers.size(), 1u);
  EXPECT_EQ(x.markers.begin()->first, (Dot{a.id, 1}));
  EXPECT_EQ(y.markers.begin()->first, (Dot{a.id, 2}));
  EXPECT_EQ(x.markers.begin()->second.hlc, MakeHlc(5000, 0));
  EXPECT_EQ(y.markers.begin()->second.hlc, MakeHlc(5000, 1));
  *a.now = 6000;
  ASSERT_TRUE(a.replica.Incr("c", "r", "n", 1).ok());
  EXPECT_EQ(a.Meta().clock, MakeHlc(6000, 0));
  EXPECT_EQ(a.Meta().vv.Get(a.id), 3u);
}

TEST(ReplicaTest, ClockGoingBackwardsStillOrdersWrites) {
  Node a(1, 9000);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  *a.now = 10;  // the wall clock jumps back
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(2)}}).ok());
  auto st = a.replica.GetState("c", "r");
  ASSERT_TRUE(st.ok());
  const auto& markers = st->fields.at("x").markers;
  ASSERT_EQ(markers.size(), 1u);
  EXPECT_GT(markers.begin()->second.hlc, MakeHlc(9000, 0));
  EXPECT_TRUE(SameValue(Scalar(a.Get("c", "r"), "x"), I(2)));
}

TEST(ReplicaTest, PutRejectsInvalidInputAndWritesNothing) {
  Node a(1);
  EXPECT_EQ(a.replica.Put("c", "r", {}).code(), Code::kInvalidArgument);
  // The first field is fine, the second is reserved: the whole put is rejected.
  EXPECT_EQ(a.replica.Put("c", "r", {{"ok", I(1)}, {"id", I(2)}}).code(), Code::kInvalidArgument);
  // A field named twice: neither value is taken.
  Status twice = a.replica.Put("c", "r", {{"f", I(1)}, {"g", I(2)}, {"f", I(3)}});
  EXPECT_EQ(twice.code(), Code::kInvalidArgument);
  EXPECT_NE(twice.message().find("\"f\" is given twice"), std::string::npos) << twice.ToString();
  EXPECT_EQ(a.replica.Put("", "r", {{"f", I(1)}}).code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Put("c", "", {{"f", I(1)}}).code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Put("c", std::string("r\0x", 3), {{"f", I(1)}}).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Put("c", "r", {{"f", S("\xff")}}).code(), Code::kInvalidArgument);
  Status big = a.replica.Put("c", "r", {{"f", Value{std::string(kMaxValueBytes + 1, 'x')}}});
  EXPECT_EQ(big.code(), Code::kInvalidArgument);
  EXPECT_NE(big.message().find("over the 16 MiB a value may hold"), std::string::npos)
      << big.ToString();
  EXPECT_EQ(a.replica.Put(std::string(kMaxCollectionName + 1, 'c'), "r", {{"f", I(1)}}).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Get("c", "r").status().code(), Code::kNotFound);
  ReplicaMeta m = a.Meta();
  EXPECT_TRUE(m.vv.empty());
  EXPECT_EQ(m.clock, 0u);
  auto page = a.replica.Changes(0, 100);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->changes.empty());
}

TEST(ReplicaTest, OtherMutatorsValidateToo) {
  Node a(1);
  EXPECT_EQ(a.replica.Incr("c", "r", "id", 1).code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Add("c", "r", "s", S("\xc0\x80")).code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Remove("c", "r", "", I(1)).code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Delete("", "r").code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Get("c", "").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(a.replica.Scan("", "", [](const Record&) { return true; }).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(a.Meta().vv.empty());
}

TEST(ReplicaTest, CounterAndSetOperations) {
  Node a(1);
  ASSERT_TRUE(a.replica.Incr("c", "r", "n", 5).ok());
  ASSERT_TRUE(a.replica.Incr("c", "r", "n", -8).ok());
  ASSERT_TRUE(a.replica.Add("c", "r", "tags", S("b")).ok());
  ASSERT_TRUE(a.replica.Add("c", "r", "tags", S("a")).ok());
  ASSERT_TRUE(a.replica.Add("c", "r", "tags", S("c")).ok());
  ASSERT_TRUE(a.replica.Remove("c", "r", "tags", S("b")).ok());
  Record r = a.Get("c", "r");
  EXPECT_EQ(r.fields.at("n").kind, Kind::kCounter);
  EXPECT_EQ(r.fields.at("n").count, -3);
  const auto& tags = r.fields.at("tags");
  EXPECT_EQ(tags.kind, Kind::kSet);
  ASSERT_EQ(tags.set.size(), 2u);
  EXPECT_TRUE(SameValue(tags.set[0], S("a")));
  EXPECT_TRUE(SameValue(tags.set[1], S("c")));
}

// ---- delete -------------------------------------------------------------------------

TEST(ReplicaTest, DeleteOfMissingRecordIsNotFound) {
  Node a(1);
  EXPECT_EQ(a.replica.Delete("c", "nope").code(), Code::kNotFound);
  EXPECT_TRUE(a.Meta().vv.empty());  // no dot spent on a failed delete
}

TEST(ReplicaTest, DeleteHidesTheRecordAndSecondDeleteIsNotFound) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Add("c", "r", "s", I(1)).ok());
  ASSERT_TRUE(a.replica.Delete("c", "r").ok());
  EXPECT_EQ(a.Meta().vv.Get(a.id), 3u);
  EXPECT_EQ(a.replica.Get("c", "r").status().code(), Code::kNotFound);
  EXPECT_EQ(a.replica.Conflicts("c", "r").status().code(), Code::kNotFound);
  EXPECT_TRUE(a.ScanIds("c").empty());
  EXPECT_EQ(a.replica.Delete("c", "r").code(), Code::kNotFound);
  EXPECT_EQ(a.Meta().vv.Get(a.id), 3u);
  // The tombstone is still there to carry the deletion.
  auto st = a.replica.GetState("c", "r");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->fields.size(), 2u);
  EXPECT_FALSE(st->Live());
  // Writing again brings the record back with only the new field.
  ASSERT_TRUE(a.replica.Put("c", "r", {{"y", I(2)}}).ok());
  Record r = a.Get("c", "r");
  EXPECT_EQ(r.fields.size(), 1u);
  EXPECT_TRUE(r.fields.count("y"));
}

// A removal from a field that holds nothing has no dot to drop: it writes nothing, so a
// deleted record stays deleted and a missing one is not made up, on any path of a batch.
TEST(ReplicaTest, RemoveFromAFieldThatHoldsNothingWritesNothing) {
  Node a(1), b(2);
  ASSERT_TRUE(b.replica.Put("c", "d", {{"x", I(1)}}).ok());
  ASSERT_TRUE(b.replica.Add("c", "d", "t", S("k")).ok());
  Sync(b, a);
  ASSERT_TRUE(a.replica.Delete("c", "d").ok());  // its tombstones name b's events
  const VersionVector before = a.Meta().vv;
  ASSERT_TRUE(a.replica.Remove("c", "d", "t", S("k")).ok());
  ASSERT_TRUE(a.replica.Remove("c", "never", "t", S("k")).ok());
  EXPECT_EQ(a.Meta().vv, before);
  EXPECT_EQ(a.replica.Get("c", "d").status().code(), Code::kNotFound);
  EXPECT_EQ(a.replica.Get("c", "never").status().code(), Code::kNotFound);
  // In one batch: the tombstone read for a removal stands for nothing afterwards, and the
  // same field written after it is written from what is stored.
  ASSERT_TRUE(a.replica
                  .Write([&](Batch& bt) {
                    TANDEM_RETURN_IF_ERROR(bt.Remove("c", "d", "t", S("k")));
                    TANDEM_RETURN_IF_ERROR(bt.Put("c", "e", "t", I(5)));
                    TANDEM_RETURN_IF_ERROR(bt.Remove("c", "d", "t", S("k")));
                    TANDEM_RETURN_IF_ERROR(bt.Add("c", "d", "t", S("m")));
                    return bt.Remove("c", "d", "t", S("m"));
                  })
                  .ok());
  auto e = a.replica.GetState("c", "e");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->fields.at("t").ctx.Get(b.id), 0u);  // nothing of d's tombstone
  EXPECT_EQ(a.Meta().vv.Get(a.id), before.Get(a.id) + 3);
  // d came back through the add, an empty set once removed again; its state keeps the
  // deletion of b's writes.
  Record d = a.Get("c", "d");
  ASSERT_EQ(d.fields.size(), 1u);
  EXPECT_EQ(d.fields.at("t").kind, Kind::kSet);
  EXPECT_TRUE(d.fields.at("t").set.empty());
  auto dt = a.replica.GetState("c", "d");
  ASSERT_TRUE(dt.ok());
  EXPECT_GE(dt->fields.at("t").ctx.Get(b.id), 2u);
  // A live field still takes removals (of elements it has, or not).
  ASSERT_TRUE(a.replica.Remove("c", "d", "t", S("zzz")).ok());
  EXPECT_EQ(a.Meta().vv.Get(a.id), before.Get(a.id) + 4);
  // And EmptySet writes an empty set whatever the field held: nothing, or elements.
  ASSERT_TRUE(a.replica.Add("c", "g", "t", S("x")).ok());
  ASSERT_TRUE(a.replica.Add("c", "g", "t", S("y")).ok());
  for (const char* rec : {"f", "g"}) {
    ASSERT_TRUE(a.replica.Write([&](Batch& bt) { return bt.EmptySet("c", rec, "t"); }).ok());
    Record f = a.Get("c", rec);
    ASSERT_EQ(f.fields.size(), 1u) << rec;
    EXPECT_EQ(f.fields.at("t").kind, Kind::kSet) << rec;
    EXPECT_TRUE(f.fields.at("t").set.empty()) << rec;
  }
}

// ---- scan ---------------------------------------------------------------------------

TEST(ReplicaTest, ScanIsInIdOrderAndHonoursAfter) {
  Node a(1);
  for (const char* id : {"b", "a", "c", "aa", "a\x01", "B"})
    ASSERT_TRUE(a.replica.Put("col", id, {{"f", S(id)}, {"g", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Put("col2", "a0", {{"f", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Put("co", "a1", {{"f", I(1)}}).ok());
  using V = std::vector<std::string>;
  EXPECT_EQ(a.ScanIds("col"), (V{"B", "a", "a\x01", "aa", "b", "c"}));
  EXPECT_EQ(a.ScanIds("col", "a"), (V{"a\x01", "aa", "b", "c"}));
  EXPECT_EQ(a.ScanIds("col", "a\x01"), (V{"aa", "b", "c"}));
  EXPECT_EQ(a.ScanIds("col", "aa"), (V{"b", "c"}));
  EXPECT_EQ(a.ScanIds("col", "ab"), (V{"b", "c"}));  // `after` need not exist
  EXPECT_EQ(a.ScanIds("col", "c"), V{});
  EXPECT_EQ(a.ScanIds("col", "zzz"), V{});
  EXPECT_EQ(a.ScanIds("col2"), (V{"a0"}));
  EXPECT_EQ(a.ScanIds("co"), (V{"a1"}));
  EXPECT_EQ(a.ScanIds("missing"), V{});
}

TEST(ReplicaTest, ScanDeliversWholeRecordsAndSkipsDeletedOnes) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(1)}, {"y", I(2)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "r2", {{"x", I(3)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "r3", {{"x", I(4)}, {"z", I(5)}}).ok());
  ASSERT_TRUE(a.replica.Delete("c", "r2").ok());
  std::vector<Record> got;
  ASSERT_TRUE(a.replica
                  .Scan("c", "",
                        [&](const Record& r) {
                          got.push_back(r);
                          return true;
                        })
                  .ok());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], a.Get("c", "r1"));
  EXPECT_EQ(got[1], a.Get("c", "r3"));
  EXPECT_EQ(got[0].fields.size(), 2u);
  EXPECT_EQ(got[1].fields.size(), 2u);
}

TEST(ReplicaTest, ScanStopsWhenCallbackReturnsFalse) {
  Node a(1);
  for (const char* id : {"a", "b", "c", "d"})
    ASSERT_TRUE(a.replica.Put("c", id, {{"f", I(1)}}).ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(a.replica
                  .Scan("c", "",
                        [&](const Record& r) {
                          seen.push_back(r.id);
                          return seen.size() < 2;
                        })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
}

TEST(ReplicaTest, CollectionsAreSortedAndDistinct) {
  Node a(1);
  for (const char* c : {"zeta", "alpha", "mid", "alpha"})
    ASSERT_TRUE(a.replica.Put(c, "r", {{"f", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Put("alpha", "r2", {{"f", I(1)}}).ok());
  auto cols = a.replica.Collections();
  ASSERT_TRUE(cols.ok());
  EXPECT_EQ(*cols, (std::vector<std::string>{"alpha", "mid", "zeta"}));
}

// ---- conflicts ----------------------------------------------------------------------

TEST(ReplicaTest, ConcurrentPutsShowAsConflictsUntilResolved) {
  Node a(1, 1000), b(2, 2000);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", S("from a")}, {"y", I(1)}}).ok());
  Sync(a, b);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", S("a2")}}).ok());
  ASSERT_TRUE(b.replica.Put("c", "r", {{"x", S("b2")}}).ok());
  Sync(a, b);
  Sync(b, a);
  for (Node* n : {&a, &b}) {
    auto conflicts = n->replica.Conflicts("c", "r");
    ASSERT_TRUE(conflicts.ok()) << conflicts.status().ToString();
    ASSERT_EQ(conflicts->size(), 1u);  // y has no conflict
    EXPECT_EQ((*conflicts)[0].first, "x");
    const auto& sibs = (*conflicts)[0].second;
    ASSERT_EQ(sibs.size(), 2u);
    EXPECT_TRUE(sibs[0].winner);
    EXPECT_FALSE(sibs[1].winner);
    EXPECT_EQ(sibs[0].dot.replica, b.id);  // b's clock is ahead
    EXPECT_TRUE(SameValue(sibs[0].value, S("b2")));
    EXPECT_TRUE(SameValue(sibs[1].value, S("a2")));
    EXPECT_TRUE(SameValue(Scalar(n->Get("c", "r"), "x"), S("b2")));
  }
  // A put that has seen both resolves the conflict everywhere.
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", S("merged")}}).ok());
  Sync(a, b);
  for (Node* n : {&a, &b}) {
    auto conflicts = n->replica.Conflicts("c", "r");
    ASSERT_TRUE(conflicts.ok());
    EXPECT_TRUE(conflicts->empty());
    EXPECT_TRUE(SameValue(Scalar(n->Get("c", "r"), "x"), S("merged")));
  }
}

TEST(ReplicaTest, ConcurrentIncrementsAndSetOperationsAreNotConflicts) {
  Node a(1), b(2);
  ASSERT_TRUE(a.replica.Put("c", "r", {{"x", I(0)}}).ok());
  Sync(a, b);
  ASSERT_TRUE(a.replica.Incr("c", "r", "n", 1).ok());
  ASSERT_TRUE(b.replica.Incr("c", "r", "n", 2).ok());
  ASSERT_TRUE(a.replica.Add("c", "r", "s", S("p")).ok());
  ASSERT_TRUE(b.replica.Remove("c", "r", "s", S("q")).ok());
  ASSERT_TRUE(a.replica.Put("c", "r", {{"t", S("text")}}).ok());
  ASSERT_TRUE(b.replica.Incr("c", "r", "t", 1).ok());  // different kinds: a conflict
  Sync(a, b);
  Sync(b, a);
  for (Node* n : {&a, &b}) {
    auto conflicts = n->replica.Conflicts("c", "r");
    ASSERT_TRUE(conflicts.ok());
    ASSERT_EQ(conflicts->size(), 1u);
    EXPECT_EQ((*conflicts)[0].first, "t");
    EXPECT_EQ((*conflicts)[0].second.size(), 2u);
    Record r = n->Get("c", "r");
    EXPECT_EQ(r.fields.at("n").count, 3);
    ASSERT_EQ(r.fields.at("s").set.size(), 1u);
  }
}

TEST(ReplicaTest, ConflictsOfMissingRecordIsNotFound) {
  Node a(1);
  EXPECT_EQ(a.replica.Conflicts("c", "r").status().code(), Code::kNotFound);
}

// ---- change feed --------------------------------------------------------------------

TEST(ReplicaTest, ChangesListEachRecordOnceInCursorOrder) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(1)}, {"y", I(1)}}).ok());  // log 1, 2
  ASSERT_TRUE(a.replica.Put("c", "r2", {{"x", I(2)}}).ok());               // log 3
  ASSERT_TRUE(a.replica.Put("d", "r3", {{"x", I(3)}}).ok());               // log 4
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(9)}}).ok());               // log 5
  auto page = a.replica.Changes(0, 100);
  ASSERT_TRUE(page.ok());
  const auto& ch = page->changes;
  ASSERT_EQ(ch.size(), 3u);
  EXPECT_EQ(ch[0].id, "r2");
  EXPECT_EQ(ch[1].id, "r3");
  EXPECT_EQ(ch[1].collection, "d");
  EXPECT_EQ(ch[2].id, "r1");
  for (size_t i = 1; i < ch.size(); ++i) EXPECT_LT(ch[i - 1].cursor, ch[i].cursor);
  EXPECT_EQ(page->next_cursor, ch.back().cursor);
  // Each change carries the record's current state.
  ASSERT_TRUE(ch[2].record.has_value());
  EXPECT_EQ(*ch[2].record, a.Get("c", "r1"));
  EXPECT_TRUE(SameValue(Scalar(*ch[2].record, "x"), I(9)));
}

TEST(ReplicaTest, ChangesShowDeletedRecordsWithoutARecord) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "r2", {{"x", I(2)}}).ok());
  ASSERT_TRUE(a.replica.Delete("c", "r1").ok());
  auto page = a.replica.Changes(0, 100);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->changes.size(), 2u);
  EXPECT_EQ(page->changes[0].id, "r2");
  EXPECT_TRUE(page->changes[0].record.has_value());
  EXPECT_EQ(page->changes[1].id, "r1");
  EXPECT_EQ(page->changes[1].collection, "c");
  EXPECT_FALSE(page->changes[1].record.has_value());
}

TEST(ReplicaTest, ChangesResumeFromACursor) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "r2", {{"x", I(2)}}).ok());
  auto first = a.replica.Changes(0, 100);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->changes.size(), 2u);
  uint64_t cursor = first->next_cursor;
  // Nothing new yet.
  auto none = a.replica.Changes(cursor, 100);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->changes.empty());
  EXPECT_EQ(none->next_cursor, cursor);
  // Resuming after the first change sees only the second.
  auto after_first = a.replica.Changes(first->changes[0].cursor, 100);
  ASSERT_TRUE(after_first.ok());
  ASSERT_EQ(after_first->changes.size(), 1u);
  EXPECT_EQ(after_first->changes[0].id, "r2");
  // New changes after the cursor, including one to an already seen record.
  ASSERT_TRUE(a.replica.Incr("c", "r1", "n", 1).ok());
  ASSERT_TRUE(a.replica.Put("c", "r3", {{"x", I(3)}}).ok());
  auto next = a.replica.Changes(cursor, 100);
  ASSERT_TRUE(next.ok());
  ASSERT_EQ(next->changes.size(), 2u);
  EXPECT_EQ(next->changes[0].id, "r1");
  EXPECT_EQ(next->changes[1].id, "r3");
  EXPECT_GT(next->changes[0].cursor, cursor);
}

TEST(ReplicaTest, ChangesPagingReadsAtMostLimitEntriesAndMissesNothing) {
  Node a(1);
  for (const char* id : {"r1", "r2", "r3", "r4", "r5"})
    ASSERT_TRUE(a.replica.Put("c", id, {{"x", I(1)}, {"y", I(2)}}).ok());  // 10 log entries
  std::vector<std::string> seen;
  uint64_t cursor = 0;
  for (int pages = 0; pages < 100; ++pages) {
    auto page = a.replica.Changes(cursor, 3);
    ASSERT_TRUE(page.ok());
    if (page->next_cursor == cursor) {
      EXPECT_TRUE(page->changes.empty());
      break;
    }
    EXPECT_LE(page->next_cursor - cursor, 3u);  // log seqs are dense here
    for (const auto& c : page->changes) {
      EXPECT_GT(c.cursor, cursor);
      EXPECT_LE(c.cursor, page->next_cursor);
      seen.push_back(c.id);
    }
    cursor = page->next_cursor;
  }
  // Each record once, though each spans two log entries and some span two pages.
  EXPECT_EQ(seen, (std::vector<std::string>{"r1", "r2", "r3", "r4", "r5"}));
}

// A record changed early and again 1,200 changes later used to appear in the first page
// too, contrary to "each record once, at its latest change".
TEST(ReplicaTest, ChangesListARecordOnceAcrossPagesAtItsLatestChange) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "early", {{"x", I(1)}}).ok());
  for (int i = 0; i < 1200; ++i)
    ASSERT_TRUE(a.replica.Put("c", "other" + std::to_string(i), {{"x", I(i)}}).ok());
  ASSERT_TRUE(a.replica.Put("c", "early", {{"x", I(2)}}).ok());
  std::map<std::string, int> times;
  uint64_t cursor = 0, early_cursor = 0;
  for (;;) {
    auto page = a.replica.Changes(cursor, 1000);
    ASSERT_TRUE(page.ok());
    if (page->next_cursor == cursor) break;
    for (const auto& c : page->changes) {
      ++times[c.id];
      if (c.id == "early") {
        early_cursor = c.cursor;
        EXPECT_EQ(c.record->fields.at("x").scalar, I(2));
      }
    }
    cursor = page->next_cursor;
  }
  EXPECT_EQ(times.size(), 1201u);
  for (const auto& [id, n] : times) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(early_cursor, cursor) << "at its latest change, the last one";
}

TEST(ReplicaTest, ChangesWithZeroLimitReadsNothing) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "r1", {{"x", I(1)}}).ok());
  auto page = a.replica.Changes(0, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->changes.empty()) << "read " << page->changes.size() << " with limit 0";
  EXPECT_EQ(page->next_cursor, 0u);
}

// ---- batches ------------------------------------------------------------------------

TEST(ReplicaTest, WriteBatchCommitsEverythingTogether) {
  Node a(1);
  Status st = a.replica.Write([](Batch& b) {
    TANDEM_RETURN_IF_ERROR(b.Put("c", "r1", "x", I(1)));
    TANDEM_RETURN_IF_ERROR(b.Incr("c", "r1", "n", 2));
    TANDEM_RETURN_IF_ERROR(b.Incr("c", "r1", "n", 3));  // sees its own earlier write
    TANDEM_RETURN_IF_ERROR(b.Add("c", "r2", "s", S("t")));
    TANDEM_RETURN_IF_ERROR(b.Put("c", "r3", "x", I(1)));
    return b.Delete("c", "r3");  // deletes a record created in this batch
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  Record r1 = a.Get("c", "r1");
  EXPECT_EQ(r1.fields.at("n").count, 5);
  EXPECT_EQ(a.Get("c", "r2").fields.at("s").set.size(), 1u);
  EXPECT_EQ(a.replica.Get("c", "r3").status().code(), Code::kNotFound);
  EXPECT_EQ(a.Meta().vv.Get(a.id), 6u);
}

TEST(ReplicaTest, WriteBatchAbortsEverythingWhenCallbackFails) {
  Node a(1);
  ASSERT_TRUE(a.replica.Put("c", "keep", {{"x", I(1)}}).ok());
  ReplicaMeta before = a.Meta();
  auto changes_before = a.replica.Changes(0, 100);
  ASSERT_TRUE(changes_before.ok());
  *a.now = 99999;
  Status st = a.replica.Write([](Batch& b) {
    EXPECT_TRUE(b.Put("c", "new", "x", I(1)).ok());
    EXPECT_TRUE(b.Incr("c", "keep", "n", 7).ok());
    EXPECT_TRUE(b.Delete("c", "keep").ok());
    return Status::Invalid("changed my mind");
  });
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "changed my mind");
  EXPECT_EQ(a.replica.Get("c", "new").status().code(), Code::kNotFound);
  Record keep = a.Get("c", "keep");
  EXPECT_EQ(keep.fields.size(), 1u);
  EXPECT_EQ(a.Meta(), before);  // no dots or clock spent
  auto changes_after = a.replica.Changes(0, 100);
  ASSERT_TRUE(changes_after.ok());
  EXPECT_EQ(changes_after->next_cursor, changes_before->next_cursor);
  // The store is usable afterwards (the aborted writer released it).
  ASSERT_TRUE(a.replica.Put("c", "after", {{"x", I(1)}}).ok());
  EXPECT_EQ(a.Meta().vv.Get(a.id), before.vv.Get(a.id) + 1);
}

TEST(ReplicaTest, WriteBatchAbortsWhenAnOperationFailsAndTheErrorIsReturned) {
  Node a(1);
  Status st = a.replica.Write([](Batch& b) {
    TANDEM_RETURN_IF_ERROR(b.Put("c", "r", "x", I(1)));
    TANDEM_RETURN_IF_ERROR(b.Delete("c", "missing"));
    return b.Put("c", "r", "y", I(2));
  });
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(a.replica.Get("c", "r").status().code(), Code::kNotFound);
  EXPECT_TRUE(a.Meta().vv.empty());
}

TEST(ReplicaTest, WriteCallbackMayRunAgainButCommitsOnce) {
  // Write may retry its callback on a transient kBusy; a callback that gives up with
  // kBusy every time is reported as busy and leaves nothing behind.
  Node a(1);
  int calls = 0;
  Status st = a.replica.Write([&](Batch& b) {
    ++calls;
    EXPECT_TRUE(b.Put("c", "r", "x", I(calls)).ok());
    return Status::Busy("store is busy");
  });
  EXPECT_EQ(st.code(), Code::kBusy);
  EXPECT_GE(calls, 1);
  EXPECT_EQ(a.replica.Get("c", "r").status().code(), Code::kNotFound);
  EXPECT_TRUE(a.Meta().vv.empty());
  // Busy once, then fine: whether or not Write retries, the outcome is atomic and at
  // most one attempt's writes are committed.
  calls = 0;
  st = a.replica.Write([&](Batch& b) {
    ++calls;
    EXPECT_TRUE(b.Incr("c", "r", "n", 1).ok());
    return calls < 2 ? Status::Busy("retry me") : Status::Ok();
  });
  if (st.ok()) {
    EXPECT_EQ(a.Get("c", "r").fields.at("n").count, 1);
    EXPECT_EQ(a.Meta().vv.Get(a.id), 1u);
  } else {
    EXPECT_EQ(st.code(), Code::kBusy);
    EXPECT_EQ(a.replica.Get("c", "r").status().code(), Code::kNotFound);
    EXPECT_TRUE(a.Meta().vv.empty());
  }
}

}  // namespace
}  // namespace tandem::engine
