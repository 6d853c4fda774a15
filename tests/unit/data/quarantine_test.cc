// Changes from peers that break a collection's schema: held in quarantine, judged by the
// schema version in force when they were made, released or dropped by the operator.
#include <gtest/gtest.h>

#include "tandem/data/schema.h"
#include "tandem/engine/memory_store.h"
#include "tandem/storage/replica.h"

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
        replica(
            std::make_unique<engine::MemoryStore>(Id(n)), [c = clock] { return *c; },
            storage::Blake2b256Parts) {
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
      [](const FieldDelta&, const engine::FieldState*) { return engine::Admission::kAccept; },
      &applied, &refused, nullptr, nullptr, nullptr, &quarantined);
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

// Releasing every held change goes a batch of transactions at a time, every one applied.
TEST(Quarantine, ReleaseAllAppliesEveryHeldChangeInBatches) {
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());
  ASSERT_TRUE(till.replica
                  .Write([&](engine::Batch& b) {
                    for (int i = 0; i < 250; ++i)
                      TANDEM_RETURN_IF_ERROR(
                          b.Put("customers", "c" + std::to_string(i), "tier", S("gold")));
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(Send(till, shop).second, 250u);
  ASSERT_EQ(shop.replica.Quarantined()->size(), 250u);
  auto n = shop.replica.ReleaseAllQuarantined(64);  // four transactions
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 250u);
  EXPECT_TRUE(shop.replica.Quarantined()->empty());
  for (int i : {0, 63, 64, 249})
    EXPECT_EQ(Field(shop, "customers", ("c" + std::to_string(i)).c_str(), "tier"), S("gold")) << i;
  EXPECT_EQ(shop.replica.ReleaseAllQuarantined().value(), 0u);
}

TEST(Quarantine, ReleasedEntriesLeaveAndIdsAreNeverReused) {
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
  for (const auto& e : q) ASSERT_TRUE(shop.replica.ReleaseQuarantined(e.id).ok());
  EXPECT_TRUE(shop.replica.Quarantined()->empty());
  EXPECT_EQ(shop.replica.ReleaseQuarantined(q[0].id).code(), Code::kNotFound);
  EXPECT_EQ(Field(shop, "customers", "c1", "tier"), S("gold"));
  // A new entry takes a fresh id.
  ASSERT_TRUE(till.replica.Put("customers", "c3", {{"tier", S("vip")}}).ok());
  EXPECT_EQ(Send(till, shop).second, 1u);
  auto again = shop.replica.Quarantined().value();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_GT(again[0].id, q[1].id);
  EXPECT_EQ(again[0].key.record, "c3");
  // The same field state again is not held twice.
  EXPECT_EQ(Send(till, shop).second, 1u);
  EXPECT_EQ(shop.replica.Quarantined()->size(), 1u);
}

TEST(Quarantine, TheWatermarkNeverClaimsAHeldChange) {
  // A held change must not be covered by this replica's version vector, or a later
  // session's merge would make every device that syncs through it skip the change.
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"name", S("Ann")}}).ok());   // till:1
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"tier", S("gold")}}).ok());  // till:2
  ASSERT_TRUE(till.replica.Put("customers", "c2", {{"name", S("Bo")}}).ok());    // till:3
  EXPECT_EQ(Send(till, shop).second, 1u);
  const auto till_vv = till.replica.Meta()->vv;
  ASSERT_EQ(till_vv.Get(till.id), 3u);
  // A later session: nothing refused, so it merges the peer's vector, capped.
  ASSERT_TRUE(shop.replica.CompletePeerSync(till.id, till_vv, /*merge=*/true).ok());
  EXPECT_EQ(shop.replica.Meta()->vv.Get(till.id), 1u);
  ASSERT_TRUE(shop.replica.MergeVersionVector(till_vv).ok());
  EXPECT_EQ(shop.replica.Meta()->vv.Get(till.id), 1u);
  // Released, the next merge covers it.
  ASSERT_TRUE(shop.replica.ReleaseQuarantined(shop.replica.Quarantined()->front().id).ok());
  ASSERT_TRUE(shop.replica.CompletePeerSync(till.id, till_vv, true).ok());
  EXPECT_EQ(shop.replica.Meta()->vv.Get(till.id), 3u);
}

// A correction written over a held change, once here, leaves nothing for the held entry to
// change: it goes, and stops holding the watermark (and so collection) back.
TEST(Quarantine, AHeldChangeACorrectionSupersededLeaves) {
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"tier", S("gold")}}).ok());  // till:1
  ASSERT_TRUE(till.replica.Put("customers", "c2", {{"tier", S("gold")}}).ok());  // till:2
  EXPECT_EQ(Send(till, shop).second, 2u);
  ASSERT_TRUE(shop.replica.CompletePeerSync(till.id, till.replica.Meta()->vv, true).ok());
  EXPECT_EQ(shop.replica.Meta()->vv.Get(till.id), 0u);
  // The till corrects c1 (it learned the schema, say): the correction passes and covers
  // the held change; c2 stays held.
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"tier", S("retail")}}).ok());  // till:3
  EXPECT_EQ(Send(till, shop).second, 1u);  // c2's again, held once
  EXPECT_EQ(Field(shop, "customers", "c1", "tier"), S("retail"));
  ASSERT_EQ(shop.replica.Quarantined()->size(), 2u);  // until the session's end
  ASSERT_TRUE(shop.replica.CompletePeerSync(till.id, till.replica.Meta()->vv, true).ok());
  auto q = shop.replica.Quarantined().value();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].key.record, "c2");
  EXPECT_EQ(shop.replica.Meta()->vv.Get(till.id), 1u);       // below c2's held change alone
  ASSERT_TRUE(till.replica.Delete("customers", "c2").ok());  // till:4
  Send(till, shop);
  ASSERT_TRUE(shop.replica.CompletePeerSync(till.id, till.replica.Meta()->vv, true).ok());
  EXPECT_TRUE(shop.replica.Quarantined()->empty());
  EXPECT_EQ(shop.replica.Meta()->vv.Get(till.id), 4u);
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

// Two devices set the collection's next version at once: both are version 1, neither is
// lost, and a change made under either is taken everywhere. A version set after both
// judges alone again.
TEST(Quarantine, SchemasSetAtOnceOnTwoDevicesAreBothVersionsInForce) {
  Dev a(1, 1000), b(2, 2000), c(3, 2500);
  ASSERT_EQ(SaveSchema(a.replica, "customers", kLax).value(), 1);
  ASSERT_EQ(SaveSchema(b.replica, "customers", kStrict).value(), 1);
  *a.clock = 3000;
  ASSERT_TRUE(a.replica.Put("customers", "c1", {{"phone", S("555")}}).ok());  // under a's
  *b.clock = 3000;
  ASSERT_TRUE(b.replica.Put("customers", "c2", {{"tier", S("retail")}}).ok());  // under b's
  for (Dev* to : {&c, &b}) EXPECT_EQ(Send(a, *to).second, 0u);
  for (Dev* to : {&c, &a}) EXPECT_EQ(Send(b, *to).second, 0u);
  for (Dev* d : {&a, &b, &c}) {
    EXPECT_EQ(Field(*d, "customers", "c1", "phone"), S("555"));
    EXPECT_EQ(Field(*d, "customers", "c2", "tier"), S("retail"));
    auto loaded = LoadSchema(d->replica, "customers");
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    auto stored = loaded.value();
    ASSERT_TRUE(stored) << d->id.Hex();
    EXPECT_EQ(stored->version, 1);
    EXPECT_EQ(stored->concurrent, 1u);
    EXPECT_EQ(stored->text, kStrict) << "the same winner everywhere";
  }
  // Settled: version 2 judges alone what is made after it.
  *a.clock = 6000;
  ASSERT_EQ(SaveSchema(a.replica, "customers", kStrict).value(), 2);
  EXPECT_EQ(LoadSchema(a.replica, "customers").value()->concurrent, 0u);
  EXPECT_EQ(Send(a, c).second, 0u);
  Dev late(4, 7000);  // never got a schema: judged by version 2 alone, not a's version 1
  ASSERT_TRUE(late.replica.Put("customers", "c3", {{"phone", S("556")}}).ok());
  EXPECT_EQ(Send(late, c).second, 1u);
  EXPECT_FALSE(Field(c, "customers", "c3", "phone"));
}

// A device that set several versions while another set one keeps them all: the next
// version is numbered after the newest stored, and only versions of the same number
// stand in for each other.
TEST(Quarantine, VersionsSetOfflineAreKeptAndTheNextIsNumberedAfterThem) {
  Dev a(1, 1000), b(2, 5000), c(3, 9000);
  for (int i = 0; i < 3; ++i) {
    *a.clock += 1000;
    ASSERT_TRUE(SaveSchema(a.replica, "customers", i == 2 ? kLax : kStrict).ok());
  }
  ASSERT_EQ(SaveSchema(b.replica, "customers", kStrict).value(), 1);
  EXPECT_EQ(Send(a, b).second, 0u);
  *b.clock = 6000;
  EXPECT_EQ(SaveSchema(b.replica, "customers", kStrict).value(), 4);
  EXPECT_EQ(Send(b, c).second, 0u);
  auto stored = LoadSchema(c.replica, "customers").value();
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->version, 4);
  // A lax v3 set earlier does not excuse a change made after v4.
  Dev late(4, 9000);
  ASSERT_TRUE(late.replica.Put("customers", "c1", {{"phone", S("556")}}).ok());
  EXPECT_EQ(Send(late, c).second, 1u);
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

TEST(Quarantine, AHugeValueKeepsTheListReadable) {
  Dev shop(1, 1000), till(2, 2000);
  ASSERT_TRUE(SaveSchema(shop.replica, "customers", kStrict).ok());
  ASSERT_TRUE(
      till.replica.Put("customers", "c1", {{"tier", Value{std::string(300000, 'g')}}}).ok());
  EXPECT_EQ(Send(till, shop).second, 1u);
  auto q = shop.replica.Quarantined();
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_EQ(q->size(), 1u);
  EXPECT_LT(q->front().reason.size(), 1100u);
  ASSERT_TRUE(shop.replica.ReleaseQuarantined(q->front().id).ok());
}

TEST(Quarantine, ASchemaChangeInTheSameBatchAppliesToTheRestOfIt) {
  // The till has schema v2 (it allows "vip") and a record written under it; the shop has
  // only v1. One batch carries both: the record is judged by v2.
  Dev shop(1, 1000), till(2, 1000);
  ASSERT_TRUE(SaveSchema(till.replica, "customers", kStrict).ok());
  ASSERT_TRUE(Send(till, shop).first > 0);  // both have v1 now
  ASSERT_TRUE(till.replica.Put("customers", "c0", {{"tier", S("retail")}}).ok());
  *till.clock = 5000;
  ASSERT_TRUE(SaveSchema(till.replica, "customers",
                         R"({"fields": {"tier": {"type": "string",
                                                 "enum": ["retail", "wholesale", "vip"]}}})")
                  .ok());
  *till.clock = 6000;
  ASSERT_TRUE(till.replica.Put("customers", "c1", {{"tier", S("vip")}}).ok());
  // In log order: c0 (fills the shop's cache with v1), the schema, then c1.
  EXPECT_EQ(Send(till, shop).second, 0u);
  EXPECT_EQ(Field(shop, "customers", "c1", "tier"), S("vip"));
}

TEST(Quarantine, ASetElementWhoseOwnMarkerIsGoneIsJudgedByAnyVersionUpToThen) {
  Dev shop(1, 1000), till(2, 2000);
  constexpr char kV1[] = R"({"fields": {"tags": {"type": "set", "items": "string"}}})";
  constexpr char kV2[] =
      R"({"fields": {"tags": {"type": "set", "items": "string", "enum": ["new"]}}})";
  ASSERT_TRUE(SaveSchema(shop.replica, "items", kV1).ok());             // at 1,000
  ASSERT_TRUE(till.replica.Add("items", "i1", "tags", S("old")).ok());  // at 2,000: fine
  *shop.clock = 5000;
  ASSERT_TRUE(SaveSchema(shop.replica, "items", kV2).ok());  // at 5,000
  *till.clock = 6000;
  ASSERT_TRUE(till.replica.Add("items", "i1", "tags", S("new")).ok());  // at 6,000
  EXPECT_EQ(Send(till, shop).second, 0u);
  auto rec = shop.replica.Get("items", "i1");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->fields.at("tags").set.size(), 2u);
  // An element no version allows is held.
  *till.clock = 7000;
  ASSERT_TRUE(till.replica.Add("items", "i2", "tags", Value{int64_t{5}}).ok());
  EXPECT_EQ(Send(till, shop).second, 1u);
}

}  // namespace
}  // namespace tandem::data
