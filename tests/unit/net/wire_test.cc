// Sync messages on the wire: round trips, and hostile bytes never crash or pass.
#include "tandem/net/wire.h"

#include <gtest/gtest.h>

#include <random>

namespace tandem::net {
namespace {

using namespace tandem::engine;

ReplicaId Rid(uint8_t b) {
  ReplicaId id;
  id.bytes.fill(b);
  return id;
}

DeltaBatch SampleBatch() {
  DeltaBatch b;
  b.from = 7;
  b.cursor = 42;
  FieldState reg, cnt, set;
  ApplyPut(reg, Dot{Rid(1), 3}, MakeHlc(1700000000000, 2), Value{std::string("Ann")});
  FieldState other;
  ApplyPut(other, Dot{Rid(2), 1}, MakeHlc(1700000000001, 0), Value{2.5});
  Join(reg, other);  // siblings from two replicas
  ApplyIncr(cnt, Dot{Rid(1), 4}, MakeHlc(1700000000002, 0), -5);
  ApplyAdd(set, Dot{Rid(2), 2}, MakeHlc(1700000000003, 0), Value{Bytes{std::string("\0\1", 2)}});
  b.deltas = {FieldDelta{{"products", "p1", "name"}, reg},
              FieldDelta{{"products", "p1", "stock"}, cnt},
              FieldDelta{{"orders", "o\xc3\xa9", "tags"}, set}};
  return b;
}

TEST(Wire, EveryMessageRoundTrips) {
  VersionVector vv;
  vv.Raise(Rid(1), 5);
  vv.Raise(Rid(9), 1);
  std::vector<Message> msgs = {
      Hello{kProtocolVersion, Rid(3), CollectionFilter::Only({"orders", "products"}), {}},
      SyncRequest{vv, 12},
      SampleBatch(),
      DeltaBatch{{}, 3, 3},
      CaughtUp{42, vv},
      Ack{42}};
  for (const auto& m : msgs) {
    auto d = DecodeMessage(EncodeMessage(m).value());
    ASSERT_TRUE(d.ok()) << MessageName(m) << ": " << d.status().ToString();
    ASSERT_EQ(d->index(), m.index());
    if (auto* h = std::get_if<Hello>(&m)) {
      auto& g = std::get<Hello>(*d);
      EXPECT_EQ(g.replica, h->replica);
      EXPECT_EQ(g.send, h->send);
      EXPECT_EQ(g.accept, h->accept);
      EXPECT_EQ(g.protocol, h->protocol);
    } else if (auto* r = std::get_if<SyncRequest>(&m)) {
      EXPECT_EQ(std::get<SyncRequest>(*d).vv, r->vv);
      EXPECT_EQ(std::get<SyncRequest>(*d).cursor, r->cursor);
    } else if (auto* b = std::get_if<DeltaBatch>(&m)) {
      auto& g = std::get<DeltaBatch>(*d);
      EXPECT_EQ(g.from, b->from);
      EXPECT_EQ(g.cursor, b->cursor);
      ASSERT_EQ(g.deltas.size(), b->deltas.size());
      for (size_t i = 0; i < g.deltas.size(); ++i) {
        EXPECT_EQ(g.deltas[i].key, b->deltas[i].key);
        EXPECT_EQ(g.deltas[i].state, b->deltas[i].state);
      }
    } else if (auto* c = std::get_if<CaughtUp>(&m)) {
      EXPECT_EQ(std::get<CaughtUp>(*d).vv, c->vv);
      EXPECT_EQ(std::get<CaughtUp>(*d).cursor, c->cursor);
    } else {
      EXPECT_EQ(std::get<Ack>(*d).cursor, std::get<Ack>(m).cursor);
    }
  }
}

TEST(Wire, SizeLimitsAndAlignmentAreEnforced) {
  EXPECT_FALSE(DecodeMessage("").ok());
  EXPECT_FALSE(DecodeMessage(std::string(12, '\0')).ok());                  // not whole words
  EXPECT_FALSE(DecodeMessage(std::string(kMaxFrameBytes + 8, '\0')).ok());  // too large
  std::string ok = EncodeMessage(Ack{1}).value();
  EXPECT_FALSE(DecodeMessage(ok + std::string(8, '\0')).ok());  // trailing words
}

TEST(Wire, EveryTruncationIsRejected) {
  std::string bytes = EncodeMessage(SampleBatch()).value();
  for (size_t n = 0; n < bytes.size(); n += 8)
    EXPECT_FALSE(DecodeMessage(bytes.substr(0, n)).ok()) << n;
}

TEST(Wire, CorruptedBytesNeverCrashAndWhatPassesIsValid) {
  const std::string bytes = EncodeMessage(SampleBatch()).value();
  std::mt19937 rng(1);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string b = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<char>(rng());
    auto d = DecodeMessage(b);
    if (!d.ok()) continue;
    ++accepted;
    // Whatever passes is a well-formed message: it re-encodes and decodes the same.
    auto again = DecodeMessage(EncodeMessage(*d).value());
    ASSERT_TRUE(again.ok());
    if (auto* db = std::get_if<DeltaBatch>(&*d)) {
      for (const auto& fd : db->deltas) EXPECT_TRUE(ValidateKey(fd.key).ok());
    }
  }
  EXPECT_LT(accepted, 20000);
}

TEST(Wire, InvalidFieldsAreRejected) {
  // The encoder trusts its caller; the decoder checks everything a peer could forge.
  DeltaBatch bad = SampleBatch();
  bad.deltas[0].key.record = "";
  EXPECT_FALSE(DecodeMessage(EncodeMessage(bad).value()).ok());
  bad = SampleBatch();
  bad.deltas[0].key.field = "id";
  EXPECT_FALSE(DecodeMessage(EncodeMessage(bad).value()).ok());
  bad = SampleBatch();
  bad.deltas[1].key.collection = std::string("bad\xff", 4);
  EXPECT_FALSE(DecodeMessage(EncodeMessage(bad).value()).ok());
  DeltaBatch backwards{{}, 9, 3};
  EXPECT_FALSE(DecodeMessage(EncodeMessage(backwards).value()).ok());
  EXPECT_FALSE(
      DecodeMessage(
          EncodeMessage(Hello{kProtocolVersion, Rid(1), CollectionFilter::Only({""}), {}}).value())
          .ok());
}

// Found in review: a small, highly compressible frame could expand into a million
// entries. Batches are capped.
TEST(Wire, BatchesWithTooManyEntriesAreRejected) {
  DeltaBatch big;
  big.cursor = 1;
  for (size_t i = 0; i <= kMaxBatchEntries; ++i)
    big.deltas.push_back(FieldDelta{{"c", "r" + std::to_string(i), "f"}, FieldState{}});
  std::string bytes = EncodeMessage(big).value();
  EXPECT_LT(bytes.size(), kMaxFrameBytes);  // it compresses well: that is the point
  auto d = DecodeMessage(bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("entries"), std::string::npos);
  big.deltas.pop_back();
  EXPECT_TRUE(DecodeMessage(EncodeMessage(big).value()).ok());
}

}  // namespace
}  // namespace tandem::net
