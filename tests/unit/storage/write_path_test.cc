// The local write path on an LMDB replica: what a batch remembers between operations
// (names it checked, the stored key's collection, replica indexes) never changes what
// it accepts or what it writes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../../integration/process.h"
#include "tandem/engine/memory_store.h"
#include "tandem/engine/replica.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Batch;
using engine::Value;

Value I(int64_t i) { return Value{i}; }

// Each bad name, written after 40 good fields of one record (more names than a batch
// remembers), fails the batch, whatever came before.
TEST(WritePath, EveryNameIsCheckedWhateverTheBatchWroteBefore) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  struct Bad {
    std::string collection, record, field;
  };
  const std::vector<Bad> bad = {{"", "r", "f0"},
                                {"c", "", "f0"},
                                {"c", std::string("r\0x", 3), "f0"},
                                {"c", "r", "id"},
                                {"c", "r", ""},
                                {"c", "r", "\xff"},
                                {"c", "r", std::string("f\0", 2)},
                                {std::string(engine::kMaxCollectionName + 1, 'c'), "r", "f0"},
                                {"c", std::string(engine::kMaxRecordId + 1, 'r'), "f0"},
                                {"c", "r", std::string(engine::kMaxFieldName + 1, 'f')},
                                {"c\xc0\x80", "r", "f0"},
                                {"c", "r\xed\xa0\x80", "f0"}};
  for (const Bad& b : bad) {
    Status inner;
    Status st = (*r)->Write([&](Batch& batch) {
      for (int i = 0; i < 40; ++i)
        TANDEM_RETURN_IF_ERROR(batch.Put("c", "r", "f" + std::to_string(i), I(i)));
      inner = batch.Put(b.collection, b.record, b.field, I(-1));
      return inner;
    });
    EXPECT_EQ(inner.code(), Code::kInvalidArgument) << b.collection << "/" << b.field;
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
  }
  EXPECT_EQ((*r)->Get("c", "r").status().code(), Code::kNotFound);
  // The same batch with good names only goes through.
  ASSERT_TRUE((*r)->Write([&](Batch& batch) {
                    for (int i = 0; i < 40; ++i)
                      TANDEM_RETURN_IF_ERROR(batch.Put("c", "r", "f" + std::to_string(i), I(i)));
                    return Status::Ok();
                  })
                  .ok());
  auto rec = (*r)->Get("c", "r");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->fields.size(), 40u);
}

// One transaction going back and forth between collections, records and fields, over
// field states whose contexts name more replicas than a transaction keeps indexes for:
// what it wrote reads back the same after the replica is reopened.
TEST(WritePath, ATransactionAcrossCollectionsAndManyReplicasReadsBack) {
  testing::TempDir tmp;
  {
    auto r = CreateReplica(tmp / "db");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    // Twelve other replicas write field "shared" of c/x; the LMDB replica receives them.
    for (uint8_t n = 1; n <= 12; ++n) {
      engine::ReplicaId id;
      id.bytes[0] = 0x51;
      id.bytes[15] = n;
      engine::Replica other(
          std::make_unique<engine::MemoryStore>(id), [] { return uint64_t{5000}; },
          Blake2b256Parts);
      ASSERT_TRUE(other.Put("c", "x", {{"shared", I(n)}}).ok());
      auto page = other.CollectDeltas(0, 1 << 20, nullptr);
      ASSERT_TRUE(page.ok());
      ASSERT_TRUE((*r)->ApplyDeltas(page->deltas).ok());
    }
    ASSERT_TRUE((*r)->Write([&](Batch& b) {
                      for (int i = 0; i < 30; ++i) {
                        const std::string coll = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
                        TANDEM_RETURN_IF_ERROR(b.Put(coll, "y" + std::to_string(i % 4),
                                                     "f" + std::to_string(i % 5), I(i)));
                        TANDEM_RETURN_IF_ERROR(b.Incr("c", "x", "shared", 1));
                        TANDEM_RETURN_IF_ERROR(b.Put("c", "x", "shared", I(100 + i)));
                      }
                      return Status::Ok();
                    })
                    .ok());
  }
  auto r = OpenReplica(tmp / "db");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int i = 0; i < 30; ++i) {  // each i its own (collection, record, field)
    const std::string coll = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
    auto rec = (*r)->Get(coll, "y" + std::to_string(i % 4));
    ASSERT_TRUE(rec.ok()) << coll;
    const auto& f = rec->fields.at("f" + std::to_string(i % 5));
    EXPECT_TRUE(engine::SameValue(f.scalar, I(i))) << coll << " " << i;
  }
  auto state = (*r)->GetState("c", "x");
  ASSERT_TRUE(state.ok());
  const engine::FieldState& shared = state->fields.at("shared");
  EXPECT_EQ(shared.ctx.size(), 13u);  // the twelve others and this replica
  ASSERT_EQ(shared.markers.size(), 1u);
  EXPECT_TRUE(engine::SameValue(shared.markers.begin()->second.value, I(129)));
  CheckReport report;
  ASSERT_TRUE(Check(StoreOf(**r), &report).ok());
}

// A state built in memory and handed to ApplyDeltas need not be normal (an element
// without dots, a counter total of zero): a replica holding nothing of the field joins
// it rather than storing it as it came, so the field reads back.
TEST(WritePath, AStateThatIsNotNormalIsJoinedNotStoredAsItCame) {
  testing::TempDir tmp;
  auto r = CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  engine::ReplicaId a;
  a.bytes[0] = 0x61;
  engine::FieldState set;
  set.ctx.Raise(a, 1);
  set.markers.emplace(engine::Dot{a, 1},
                      engine::Marker{engine::MakeHlc(1000, 0), engine::Kind::kSet, Value{}});
  set.elements[I(1)] = {engine::Dot{a, 1}};
  set.elements[I(2)] = {};  // no dots
  engine::FieldState counter;
  counter.ctx.Raise(a, 2);
  counter.markers.emplace(
      engine::Dot{a, 2}, engine::Marker{engine::MakeHlc(1000, 1), engine::Kind::kCounter, Value{}});
  counter.counter[a] = {0, 0};  // a total of zero
  ASSERT_FALSE(engine::IsNormal(set));
  ASSERT_FALSE(engine::IsNormal(counter));
  size_t changed = 0;
  ASSERT_TRUE(
      (*r)->ApplyDeltas({{{"c", "r", "s"}, set}, {{"c", "r", "n"}, counter}}, &changed).ok());
  EXPECT_EQ(changed, 2u);
  auto rec = (*r)->Get("c", "r");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  ASSERT_EQ(rec->fields.at("s").set.size(), 1u);
  EXPECT_TRUE(engine::SameValue(rec->fields.at("s").set[0], I(1)));
  EXPECT_EQ(rec->fields.at("n").count, 0);
  CheckReport report;
  EXPECT_TRUE(Check(StoreOf(**r), &report).ok());
}

// A state that is not small is encoded straight into the space LMDB reserves for it:
// rewritten within one transaction at other sizes (in overflow pages and out of them,
// appended past the table's end and in place), each reads back as written, in the
// transaction, after the commit and after reopening, and `check` finds nothing wrong.
TEST(WritePath, StatesWrittenIntoReservedSpaceReadBackAtEverySize) {
  testing::TempDir tmp;
  auto set_of = [](size_t elements, size_t bytes) {
    engine::ReplicaId r;
    r.bytes[0] = 0x42;
    engine::FieldState s;
    for (size_t i = 0; i < elements; ++i)
      engine::ApplyAdd(s, engine::Dot{r, i + 1}, engine::MakeHlc(1000 + i, 0),
                       Value{engine::Bytes{std::string(bytes, char('a' + i % 26))}});
    return s;
  };
  const std::vector<engine::FieldState> sizes = {set_of(3, 10), set_of(40, 5000), set_of(100, 5000),
                                                 set_of(5, 100), set_of(60, 3000)};
  const engine::FieldKey in_place{"c", "m", "s"}, appended{"c", "z", "s"};
  {
    auto r = CreateReplica(tmp / "db");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE((*r)->Put("c", "m", {{"x", I(1)}}).ok());
    auto txn = StoreOf(**r).BeginWrite();
    ASSERT_TRUE(txn.ok());
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (const auto& key : {in_place, appended}) {
        ASSERT_TRUE((*txn)->PutField(key, sizes[i]).ok()) << i;
        std::optional<engine::FieldState> back;
        ASSERT_TRUE((*txn)->GetField(key, &back).ok()) << i;
        ASSERT_TRUE(back.has_value()) << i;
        EXPECT_TRUE(*back == sizes[i]) << i;
      }
    }
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  auto r = OpenReplica(tmp / "db");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto read = StoreOf(**r).BeginRead();
  ASSERT_TRUE(read.ok());
  for (const auto& key : {in_place, appended}) {
    std::optional<engine::FieldState> back;
    ASSERT_TRUE((*read)->GetField(key, &back).ok());
    ASSERT_TRUE(back.has_value());
    EXPECT_TRUE(*back == sizes.back());
  }
  read->reset();
  CheckReport report;
  EXPECT_TRUE(Check(StoreOf(**r), &report).ok());
}

}  // namespace
}  // namespace tandem::storage
