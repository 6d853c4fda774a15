// Changes from peers that break a collection's schema: held in quarantine, judged by the
// schema version in force when they were made, released or dropped by the operator.
#include <gtest/gtest.h>

#include "tandem/data/schema.h"
#include "tandem/engine/memory_store.h"

namespace tandem::data {
namespace {

using engine::FieldDelta;
using engine::Replica;
using engine::ReplicaId;
using engine::Value;

ReplicaId Id(uint8_t b) {
  ReplicaId id;
  id.bytes.fill(b);
  return id;
}

struct Dev {
  explicit Dev(uint8_t n, uint64_t start_ms)
      : id(Id(n)),
        clock(std::make_shared<uint64_t>(start_ms)),
        replica(std::make_unique<engine::MemoryStore>(Id(n)), [c = clock] { return *c; }) {
    replica.SetWritePolicy(std::make_shared<SchemaPolicy>());
  }
  ReplicaId id;
  std::shared_ptr<uint64_t> clock;
  Replica replica;
};

Value S(const char* s) { return Value{std::string(s)}; }

// Everything `from` has, as one batch into `to`. Returns (applied, quarantined).
std::pair<size_t, size_t> Send(Dev& from, Dev& to) {
  auto page = from.replica.CollectDeltas(0, 100000, nullptr);
  EXPECT_TRUE(page.ok());
  size_t applied = 0, refused = 0, quarantined = 0;
  Status st = to.replica.ApplyBatch(
      from.id, page->deltas, page->next_cursor,
      [](const FieldDelta&) { return engine::Admission::kAccept; }, &applied, &refused, false,
      nullptr, nullptr, &quarantined);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_GE(refused, quarantined);
  return {applied, quarantined};
}

std::optional<Value> Field(Dev& d, const char* c, const char* id, const char* f) {
  auto rec = d.replica.Get(c, id);
  if (!rec.ok()) return std::nullopt;
  auto it = rec->fields.find(f);
  if (it == rec->fields.end()) return std::nullopt;
  return it->second.scalar;
}

constexpr char kStrict[] =
    R"({"fields": {"phone": {"type": "string", "normalize": ["phone"], "region": "US"},
                   "tier": {"type": "string", "enum": ["retail", "wholesale"]}}})";
constexpr char kLax[] = R"({"fields": {"phone": {"type": "string"}}})";

TEST(Quarantine, APeersChangeThatBreaksTheSchemaIsHeldNotApplied) {
  Dev shop(1, 1000), till(2, 2000);  // the till never got the schema
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"name", S("Ann")}, {"phone", S("555")}}).ok());
  auto [applied, held] = Send(till, shop);
  EXPECT_EQ(held, 1u);
  EXPECT_EQ(applied, 1u);  // the name, which breaks nothing
  EXPECT_EQ(Field(shop, "customers", "c1", "name"), S("Ann"));
  EXPECT_FALSE(Field(shop, "customers", "c1", "phone"));
  auto q = shop.replica.Quarantined();
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->size(), 1u);
  const auto& e = q->front();
  EXPECT_EQ(e.key.collection, "customers");
  EXPECT_EQ(e.key.record, "c1");
  EXPECT_EQ(e.key.field, "phone");
  EXPECT_EQ(e.from, till.id);
  EXPECT_NE(e.reason.find("not a valid phone number"), std::string::npos) << e.reason;
  EXPECT_NE(e.reason.find("schema version 1"), std::string::npos) << e.reason;

  // Released: applied as it is.
  ASSERT_TRUE(shop.replica.ReleaseQuarantined(e.id).ok());
  EXPECT_EQ(Field(shop, "customers", "c1", "phone"), S("555"));
  EXPECT_TRUE(shop.replica.Quarantined()->empty());
  EXPECT_EQ(shop.replica.ReleaseQuarantined(e.id).code(), Code::kNotFound);
  // Sending the same again judges nothing: those operations are already here.
  EXPECT_EQ(Send(till, shop).second, 0u);
}

TEST(Quarantine, DroppedChangesAreForgottenAndIdsKeepGrowing) {
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"tier", S("gold")}}).ok());
  ASSERT_TRUE(till.replica.Put("customers", "c2", {{"phone", S("+1 415-555-2671")}}).ok());
  EXPECT_EQ(Send(till, shop).second, 2u);
  auto q = shop.replica.Quarantined().value();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_LT(q[0].id, q[1].id);
  // A valid number not in normal form is a change the sender's schema would have made
  // otherwise.
  const auto& phone = q[0].key.field == "phone" ? q[0] : q[1];
  EXPECT_NE(phone.reason.find("not in normal form (\"+14155552671\")"), std::string::npos)
      << phone.reason;
  for (const auto& e : q) ASSERT_TRUE(shop.replica.DropQuarantined(e.id).ok());
  EXPECT_TRUE(shop.replica.Quarantined()->empty());
  EXPECT_EQ(shop.replica.DropQuarantined(q[0].id).code(), Code::kNotFound);
  EXPECT_FALSE(shop.replica.Get("customers", "c1").ok());
  // New entries take fresh ids. (Sending everything again holds c1 and c2 again: a real
  // session's cursor is past them and never sends them twice.)
  ASSERT_TRUE(till.replica.Put("customers", "c3", {{"tier", S("vip")}}).ok());
  EXPECT_EQ(Send(till, shop).second, 3u);
  auto again = shop.replica.Quarantined().value();
  ASSERT_EQ(again.size(), 3u);
  for (const auto& e : again) EXPECT_GT(e.id, q[1].id);
  EXPECT_EQ(again.back().key.record, "c3");
}

TEST(Quarantine, AChangeIsJudgedByTheSchemaVersionInForceWhenItWasMade) {
  Dev shop(1, 1000), till(2, 5000);
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kLax).ok());                 // v1 at 1,000 ms
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"phone", S("555")}}).ok());  // at 5,000
  *shop.clock = 9000;
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());  // v2 at 9,000 ms
  EXPECT_EQ(Send(till, shop).second, 0u);                            // made under v1: fine
  EXPECT_EQ(Field(shop, "customers", "c1", "phone"), S("555"));
  *till.clock = 10000;
  ASSERT_TRUE(till.replica.Put("customers", "c2", {{"phone", S("556")}}).ok());  // under v2
  EXPECT_EQ(Send(till, shop).second, 1u);
  auto q = shop.replica.Quarantined().value();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].key.record, "c2");
  EXPECT_NE(q[0].reason.find("schema version 2"), std::string::npos) << q[0].reason;
}

TEST(Quarantine, AKindTheSchemaDoesNotAllowIsHeld) {
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(
      SaveSchema(shop.replica, "products", R"({"fields": {"stock": {"type": "counter"}}})").ok());
  ASSERT_TRUE(till.replica.Put("products", "p1", {{"stock", Value{int64_t{5}}}}).ok());
  EXPECT_EQ(Send(till, shop).second, 1u);
  EXPECT_NE(shop.replica.Quarantined()->front().reason.find("a counter field, written as a"),
            std::string::npos);
  // Increments are never judged by value: concurrent sales may take a count below a
  // minimum, and that is the truth.
  Dev shop2(3, 1000), till2(4, 2000);
  ASSERT_TRUE(SaveSchema(shop2.replica, "products",
                         R"({"fields": {"stock": {"type": "counter", "min": 0}}})")
                  .ok());
  ASSERT_TRUE(till2.replica.Incr("products", "p1", "stock", -3).ok());
  EXPECT_EQ(Send(till2, shop2).second, 0u);
}

TEST(Quarantine, TheSchemaItselfAndTheTrustSetAreNeverJudged) {
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(SaveSchema(till.replica, "customers", kStrict).ok());
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", R"({"fields": {}, "additional": false})").ok());
  EXPECT_EQ(Send(till, shop).second, 0u);
}

}  // namespace
}  // namespace tandem::data
