// Sync messages on the wire: round trips, and hostile bytes never crash or pass.
#include "tandem/net/wire.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <random>

#include "columns.h"
#include "sync.capnp.h"

namespace tandem::net {
namespace {

using namespace tandem::engine;

ReplicaId Rid(uint8_t b) {
  ReplicaId id;
  id.bytes.fill(b);
  return id;
}

Hello HelloOf(CollectionFilter send, CollectionFilter accept, bool pieces,
              VersionVector collected) {
  Hello h;
  h.replica = Rid(3);
  h.send = std::move(send);
  h.accept = std::move(accept);
  h.pieces = pieces;
  h.collected = std::move(collected);
  return h;
}

Hello BlobsHello(bool later = false) {
  Hello h = HelloOf({}, {}, true, {});
  h.blobs = true;
  h.blob_later = later;
  if (later) h.idle_timeout_ms = 4000;
  return h;
}

// A Hello that takes early requests and carries its own, made for `expect`.
Hello EarlyHello(VersionVector vv, ReplicaId expect) {
  Hello h = HelloOf({}, {}, true, {});
  h.takes_early = true;
  h.early = SyncRequest{std::move(vv), 17, 4, 21};
  h.expect = expect;
  return h;
}

// A Hello of this build: its whole send policy beside what older builds read.
Hello FullHello(CollectionFilter full) {
  Hello h = HelloOf(CollectionFilter::Only({"orders"}), {}, true, {});
  h.send_full = std::move(full);
  return h;
}

BlobHash Hash(uint8_t b) {
  BlobHash h;
  h.fill(b);
  return h;
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
  // Fields written once by one replica, of every value type, with sequence numbers and
  // clocks going up and down, and record ids sharing prefixes or not.
  const std::vector<Value> values = {Value{std::string("tea")},
                                     Value{int64_t{-7}},
                                     Value{},
                                     Value{true},
                                     Value{2.25},
                                     Value{Bytes{std::string("\0x", 2)}},
                                     Value{std::string("")},
                                     Value{std::string("\xc3\xa9t\xc3\xa9")},
                                     Value{int64_t{INT64_MIN}}};
  const uint64_t seqs[] = {9, 10, 2, UINT64_MAX >> 1, 1, 11, 12, 5, 6};
  const uint64_t clocks[] = {1700000000005, 1700000000005, 1, 0xffffffffffff, 1700000000000, 3,
                             1700000000009, 1700000000001, 42};
  const char* records[] = {"p1", "p10", "p10", "p2", "q", "q", "p100", "a", "p1"};
  for (size_t i = 0; i < values.size(); ++i) {
    FieldState own;
    ApplyPut(own, Dot{Rid(static_cast<uint8_t>(1 + i % 3)), seqs[i]},
             MakeHlc(clocks[i], static_cast<uint16_t>(i * 7000)), values[i]);
    b.deltas.push_back(
        FieldDelta{{i % 2 ? "orders" : "products", records[i], "f" + std::to_string(i)}, own});
  }
  return b;
}

// Every test runs on every batch layout: rows, columns, columns with logical clocks as
// differences (kColumns, what a current peer gets).
const EncodeOptions kRows{0}, kColumns1{kWireFeatures & ~kFeatureColumns2}, kColumns{kWireFeatures};
const EncodeOptions* const kLayouts[] = {&kRows, &kColumns1, &kColumns};

TEST(Wire, EveryMessageRoundTrips) {
  VersionVector vv;
  vv.Raise(Rid(1), 5);
  vv.Raise(Rid(9), 1);
  std::vector<Message> msgs = {
      HelloOf(CollectionFilter::Only({"orders", "products"}), {}, false, {}),
      HelloOf({}, CollectionFilter::None(), true, vv),
      BlobsHello(),
      BlobsHello(true),
      EarlyHello(vv, {}),
      EarlyHello(vv, Rid(7)),
      FullHello(CollectionFilter::AllBut({"secrets"})),
      FullHello(CollectionFilter::Only({"orders"})),
      FullHello({}),
      SyncRequest{vv, 12, 7, 1u << 20},
      SyncRequest{vv, 0, 7, 9, true},
      SyncRequest{vv, 5, 7, 9, false, 1 << 19, Hash(4)},
      SampleBatch(),
      DeltaBatch{{}, 3, 3},
      DeltaBatch{{}, 3, 3, 1u << 20, StatePiece{100, 0, "abc"}},
      DeltaBatch{{}, 3, 9, 12, StatePiece{100, 97, "xyz"}},
      DeltaBatch{{}, 3, 3, 12, StatePiece{100, 0, "abc", Hash(8)}},
      CaughtUp{42, vv, {}},
      CaughtUp{42, vv, vv},
      Ack{42},
      BlobWant{Hash(1), {"photos", "p1", "img"}, 3, true, false},
      BlobWant{{}, {}, 0, false, true},
      BlobHead{Hash(2), false, 1000, {Hash(3), Hash(4)}},
      BlobHead{Hash(2), true, 0, {}},
      BlobHead{Hash(2), true, 0, {}, true},
      BlobHead{Hash(2), false, 0, {}, false, true},
      BlobChunk{Hash(5), 7, std::string(1000, 'x')},
      BlobAck{Hash(6), 9}};
  for (const EncodeOptions* layout : kLayouts)
    for (const auto& m : msgs) {
      if (m.index() >= 5 && !(layout->peer_features & kFeatureBlobs)) {
        EXPECT_EQ(EncodeMessage(m, *layout).status().code(), Code::kUnsupported)
            << "a blob message to a peer that did not announce blobs";
        continue;
      }
      if (auto* b = std::get_if<DeltaBatch>(&m);
          b && b->piece && !(layout->peer_features & kFeaturePieces)) {
        EXPECT_EQ(EncodeMessage(m, *layout).status().code(), Code::kUnsupported)
            << "a piece to a peer that did not announce pieces";
        continue;
      }
      uint32_t features = 0;
      auto d = DecodeMessage(EncodeMessage(m, *layout).value(), &features);
      ASSERT_TRUE(d.ok()) << MessageName(m) << ": " << d.status().ToString();
      ASSERT_EQ(d->index(), m.index());
      if (auto* h = std::get_if<Hello>(&m)) {
        auto& g = std::get<Hello>(*d);
        EXPECT_EQ(g.replica, h->replica);
        EXPECT_EQ(g.send, h->send);
        EXPECT_EQ(g.accept, h->accept);
        EXPECT_EQ(g.protocol, h->protocol);
        EXPECT_EQ(g.pieces, h->pieces);
        EXPECT_EQ(g.collected, h->collected);
        EXPECT_EQ(g.collected_in, h->collected_in);
        EXPECT_EQ(g.blobs, h->blobs);
        EXPECT_EQ(g.takes_early, h->takes_early);
        EXPECT_EQ(g.blob_later, h->blob_later);
        EXPECT_EQ(g.idle_timeout_ms, h->idle_timeout_ms);
        EXPECT_EQ(g.expect, h->expect);
        EXPECT_EQ(g.send_full, h->send_full);
        ASSERT_EQ(g.early.has_value(), h->early.has_value());
        if (h->early) {
          EXPECT_EQ(g.early->vv, h->early->vv);
          EXPECT_EQ(g.early->cursor, h->early->cursor);
          EXPECT_EQ(g.early->holds_of_yours, h->early->holds_of_yours);
          EXPECT_EQ(g.early->mark, h->early->mark);
        }
        EXPECT_EQ(features, kFeatureColumns | kFeatureColumns2 | (h->pieces ? kFeaturePieces : 0) |
                                (h->blobs ? kFeatureBlobs : 0) |
                                (h->takes_early ? kFeatureEarly : 0) |
                                (h->send_full ? kFeatureExclusions : 0) |
                                (h->reads_collected_in ? kFeatureCollectedIn : 0) |
                                (h->blob_later ? kFeatureBlobLater : 0));
      } else if (auto* r = std::get_if<SyncRequest>(&m)) {
        EXPECT_EQ(std::get<SyncRequest>(*d).vv, r->vv);
        EXPECT_EQ(std::get<SyncRequest>(*d).cursor, r->cursor);
        EXPECT_EQ(std::get<SyncRequest>(*d).holds_of_yours, r->holds_of_yours);
        EXPECT_EQ(std::get<SyncRequest>(*d).mark, r->mark);
        EXPECT_EQ(std::get<SyncRequest>(*d).whole, r->whole);
        EXPECT_EQ(std::get<SyncRequest>(*d).piece_offset, r->piece_offset);
        EXPECT_EQ(std::get<SyncRequest>(*d).piece_digest, r->piece_digest);
      } else if (auto* b = std::get_if<DeltaBatch>(&m)) {
        auto& g = std::get<DeltaBatch>(*d);
        EXPECT_EQ(g.from, b->from);
        EXPECT_EQ(g.cursor, b->cursor);
        EXPECT_EQ(g.piece, b->piece);
        EXPECT_EQ(g.mark, b->mark);
        ASSERT_EQ(g.deltas.size(), b->deltas.size());
        for (size_t i = 0; i < g.deltas.size(); ++i) {
          EXPECT_EQ(g.deltas[i].key, b->deltas[i].key);
          EXPECT_EQ(g.deltas[i].state, b->deltas[i].state);
        }
      } else if (auto* c = std::get_if<CaughtUp>(&m)) {
        EXPECT_EQ(std::get<CaughtUp>(*d).vv, c->vv);
        EXPECT_EQ(std::get<CaughtUp>(*d).cursor, c->cursor);
        EXPECT_EQ(std::get<CaughtUp>(*d).collected, c->collected);
      } else if (auto* w = std::get_if<BlobWant>(&m)) {
        const auto& g = std::get<BlobWant>(*d);
        EXPECT_EQ(g.idle, w->idle);
        if (!w->idle) {
          EXPECT_EQ(g.hash, w->hash);
          EXPECT_EQ(g.ref, w->ref);
          EXPECT_EQ(g.from, w->from);
          EXPECT_EQ(g.list, w->list);
        }
      } else if (auto* bh = std::get_if<BlobHead>(&m)) {
        const auto& g = std::get<BlobHead>(*d);
        EXPECT_EQ(g.hash, bh->hash);
        EXPECT_EQ(g.missing, bh->missing);
        EXPECT_EQ(g.size, bh->size);
        EXPECT_EQ(g.chunks, bh->chunks);
        EXPECT_EQ(g.later, bh->later);
        EXPECT_EQ(g.ready, bh->ready);
      } else if (auto* bc = std::get_if<BlobChunk>(&m)) {
        const auto& g = std::get<BlobChunk>(*d);
        EXPECT_EQ(g.hash, bc->hash);
        EXPECT_EQ(g.index, bc->index);
        EXPECT_EQ(g.bytes, bc->bytes);
      } else if (auto* ba = std::get_if<BlobAck>(&m)) {
        EXPECT_EQ(std::get<BlobAck>(*d).hash, ba->hash);
        EXPECT_EQ(std::get<BlobAck>(*d).index, ba->index);
      } else {
        EXPECT_EQ(std::get<Ack>(*d).cursor, std::get<Ack>(m).cursor);
      }
    }
}

TEST(Wire, BlobReferencesGoOnlyToPeersThatTakeThem) {
  DeltaBatch b;
  b.cursor = 1;
  FieldState s;
  BlobRef ref{Hash(7), 123, "image/png"};
  ApplyPut(s, Dot{Rid(1), 1}, MakeHlc(1700000000000, 0), Value{ref});
  b.deltas.push_back(FieldDelta{{"photos", "p", "img"}, s});
  EXPECT_EQ(EncodeMessage(b, EncodeOptions{kFeatureColumns | kFeaturePieces}).status().code(),
            Code::kUnsupported);
  for (uint32_t layout : {kFeatureBlobs, kWireFeatures}) {
    auto d = DecodeMessage(EncodeMessage(b, EncodeOptions{layout}).value());
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(std::get<DeltaBatch>(*d).deltas[0].state, s);
  }
  // A chunk list or a chunk out of bounds is refused before anything reads it.
  BlobHead big{Hash(2), false, kMaxBlobBytes + 1, {}};
  EXPECT_FALSE(DecodeMessage(EncodeMessage(big, EncodeOptions{kWireFeatures}).value()).ok());
  BlobChunk huge{Hash(2), 0, std::string(kBlobChunkBytes + 1, 'x')};
  EXPECT_FALSE(DecodeMessage(EncodeMessage(huge, EncodeOptions{kWireFeatures}).value()).ok());
  BlobWant bad_key{Hash(2), {"photos", "", "img"}, 0, false, false};
  EXPECT_FALSE(DecodeMessage(EncodeMessage(bad_key, EncodeOptions{kWireFeatures}).value()).ok());
  // `later` and `ready` go only to a peer that reads them, and only as they are meant.
  BlobHead later{Hash(2), true, 0, {}, true};
  EXPECT_EQ(EncodeMessage(later, EncodeOptions{kFeatureBlobs}).status().code(), Code::kUnsupported);
  for (const BlobHead& bad :
       {BlobHead{Hash(2), false, 0, {}, true}, BlobHead{Hash(2), true, 0, {}, false, true},
        BlobHead{Hash(2), false, 10, {}, false, true},
        BlobHead{Hash(2), false, 0, {Hash(3)}, false, true}})
    EXPECT_EQ(
        DecodeMessage(EncodeMessage(bad, EncodeOptions{kWireFeatures}).value()).status().code(),
        Code::kCorrupt);
}

TEST(Wire, SizeLimitsAndAlignmentAreEnforced) {
  EXPECT_FALSE(DecodeMessage("").ok());
  EXPECT_FALSE(DecodeMessage(std::string(12, '\0')).ok());                  // not whole words
  EXPECT_FALSE(DecodeMessage(std::string(kMaxFrameBytes + 8, '\0')).ok());  // too large
  std::string ok = EncodeMessage(Ack{1}).value();
  EXPECT_FALSE(DecodeMessage(ok + std::string(8, '\0')).ok());  // trailing words
}

TEST(Wire, EveryTruncationIsRejected) {
  for (const EncodeOptions* layout : kLayouts) {
    std::string bytes = EncodeMessage(SampleBatch(), *layout).value();
    for (size_t n = 0; n < bytes.size(); n += 8)
      EXPECT_FALSE(DecodeMessage(bytes.substr(0, n)).ok()) << n;
  }
}

TEST(Wire, ColumnsAreSmallerThanRowsForFieldsWrittenOnce) {
  DeltaBatch b;
  b.cursor = 1000;
  std::mt19937 rng(3);
  for (int i = 0; i < 1000; ++i) {
    FieldState s;
    std::string text(16, 'a');
    for (auto& c : text) c = static_cast<char>('a' + rng() % 26);
    ApplyPut(
        s, Dot{Rid(1), static_cast<uint64_t>(i + 1)},
        MakeHlc(1700000000000 + static_cast<uint64_t>(i / 100), static_cast<uint16_t>(i % 100)),
        i % 2 ? Value{text} : Value{static_cast<int64_t>(rng() % 1000000)});
    b.deltas.push_back(FieldDelta{
        {"bench", "r" + std::to_string(100000 + i / 10), "f" + std::to_string(i % 10)}, s});
  }
  // A sequence number beyond the seqs column's range travels whole, in either layout.
  FieldState far;
  ApplyPut(far, Dot{Rid(2), (uint64_t{1} << 63) + 1}, MakeHlc(1700000000000, 0), Value{int64_t{1}});
  b.deltas.push_back(FieldDelta{{"bench", "r999999", "f0"}, far});
  const size_t rows = EncodeMessage(b, kRows).value().size();
  const size_t columns = EncodeMessage(b, kColumns).value().size();
  EXPECT_LT(columns * 10, rows * 7) << rows << " bytes as rows, " << columns << " as columns";
  auto d = DecodeMessage(EncodeMessage(b, kColumns).value());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const auto& got = std::get<DeltaBatch>(*d).deltas;
  ASSERT_EQ(got.size(), b.deltas.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].key, b.deltas[i].key);
    EXPECT_EQ(got[i].state, b.deltas[i].state);
  }
}

TEST(Wire, CorruptedBytesNeverCrashAndWhatPassesIsValid) {
  for (const EncodeOptions* layout : kLayouts) {
    const std::string bytes = EncodeMessage(SampleBatch(), *layout).value();
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
      for (const EncodeOptions* again_layout : kLayouts) {
        auto again = DecodeMessage(EncodeMessage(*d, *again_layout).value());
        ASSERT_TRUE(again.ok());
      }
      if (auto* db = std::get_if<DeltaBatch>(&*d)) {
        for (const auto& fd : db->deltas) EXPECT_TRUE(ValidateKey(fd.key).ok());
      }
    }
    EXPECT_LT(accepted, 20000);
  }
}

TEST(Wire, InvalidFieldsAreRejected) {
  // The encoder trusts its caller; the decoder checks everything a peer could forge.
  for (const EncodeOptions* layout : kLayouts) {
    for (size_t i : {size_t{0}, size_t{4}}) {  // a whole state, and a register of its own
      DeltaBatch bad = SampleBatch();
      bad.deltas[i].key.record = "";
      EXPECT_FALSE(DecodeMessage(EncodeMessage(bad, *layout).value()).ok());
      bad = SampleBatch();
      bad.deltas[i].key.field = "id";
      EXPECT_FALSE(DecodeMessage(EncodeMessage(bad, *layout).value()).ok());
      bad = SampleBatch();
      bad.deltas[i].key.collection = std::string("bad\xff", 4);
      EXPECT_FALSE(DecodeMessage(EncodeMessage(bad, *layout).value()).ok());
      bad = SampleBatch();
      bad.deltas[i].key.record = std::string(kMaxRecordId + 1, 'r');
      EXPECT_FALSE(DecodeMessage(EncodeMessage(bad, *layout).value()).ok());
    }
  }
  DeltaBatch backwards{{}, 9, 3};
  EXPECT_FALSE(DecodeMessage(EncodeMessage(backwards).value()).ok());
  EXPECT_FALSE(
      DecodeMessage(EncodeMessage(HelloOf(CollectionFilter::Only({""}), {}, false, {})).value())
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
  big.deltas.emplace_back(FieldDelta{{"c", "x", "f"}, FieldState{}});
  d = DecodeMessage(EncodeMessage(big, kColumns).value());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("entries"), std::string::npos);
}

// Forged column bodies: every way a peer could make the columns disagree is refused.
TEST(Columns, ForgedBodiesAreRefused) {
  VectorReplicaTable table;
  table.IndexOf(Rid(1));
  const std::vector<std::string> names = {"c", "f"};
  auto body = [](std::vector<std::string> cols, uint64_t n) {
    std::string out;
    Writer w(&out);
    w.Varint(n);
    cols.resize(8);
    for (const auto& c : cols) w.LengthPrefixed(c);
    return out;
  };
  auto bytes = [](std::initializer_list<int> v) {
    std::string s;
    for (int c : v) s.push_back(static_cast<char>(c));
    return s;
  };
  // keys: collection 0, shared 0, "r", field 1; an own register by replica 0, seq +1,
  // clock +1 logical 0, the int 5.
  const std::string key = bytes({0, 0, 1, 'r', 1});
  const std::string value = bytes({3, 10});  // kTagInt, zigzag 5
  auto decode = [&](const std::string& b) {
    std::vector<FieldDelta> out;
    return DecodeColumns(b, names, table, 16, false, &out);
  };
  std::vector<std::string> good = {key, bytes({1}), bytes({0}), bytes({2}), bytes({2, 0}), value};
  ASSERT_TRUE(decode(body(good, 1)).ok()) << decode(body(good, 1)).ToString();
  {
    std::vector<FieldDelta> out;
    ASSERT_TRUE(DecodeColumns(body(good, 1), names, table, 16, false, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].key, (FieldKey{"c", "r", "f"}));
    EXPECT_EQ(out[0].state.ctx.Get(Rid(1)), 1u);
    EXPECT_EQ(out[0].state.markers.begin()->second.value, Value{int64_t{5}});
  }
  struct Case {
    const char* what;
    std::vector<std::string> cols;
    uint64_t n;
  };
  std::vector<Case> cases = {
      {"more entries than the columns hold", good, 2},
      {"fewer entries than the columns hold", good, 0},
      {"a column with bytes left over",
       {key, bytes({1}), bytes({0}), bytes({2}), bytes({2, 0}), value + bytes({0})},
       1},
      {"unknown name",
       {bytes({5, 0, 1, 'r', 1}), bytes({1}), bytes({0}), bytes({2}), bytes({2, 0}), value},
       1},
      {"shares more than the previous record id",
       {bytes({0, 1, 1, 'r', 1}), bytes({1}), bytes({0}), bytes({2}), bytes({2, 0}), value},
       1},
      {"unknown shape", {key, bytes({9}), bytes({0}), bytes({2}), bytes({2, 0}), value}, 1},
      {"unknown replica", {key, bytes({1}), bytes({4}), bytes({2}), bytes({2, 0}), value}, 1},
      {"sequence number 0", {key, bytes({1}), bytes({0}), bytes({0}), bytes({2, 0}), value}, 1},
      {"sequence number below 0",
       {key, bytes({1}), bytes({0}), bytes({1}), bytes({2, 0}), value},
       1},
      {"clock below 0", {key, bytes({1}), bytes({0}), bytes({2}), bytes({1, 0}), value}, 1},
      {"logical clock too large",
       {key, bytes({1}), bytes({0}), bytes({2}), bytes({2, 0x80, 0x80, 0x04}), value},
       1},
      {"text in the values column",
       {key, bytes({1}), bytes({0}), bytes({2}), bytes({2, 0}), bytes({5, 1, 'x'})},
       1},
      {"text past its column",
       {key, bytes({2}), bytes({0}), bytes({2}), bytes({2, 0}), bytes({5}), "ab"},
       1},
      {"text not UTF-8",
       {key, bytes({2}), bytes({0}), bytes({2}), bytes({2, 0}), bytes({1}), bytes({0xff})},
       1},
      {"a whole state that does not decode",
       {key, bytes({0}), "", "", "", "", "", bytes({0x10, 1})},
       1},
  };
  for (const auto& c : cases) EXPECT_FALSE(decode(body(c.cols, c.n)).ok()) << c.what;
  EXPECT_FALSE(decode(body(good, 1) + "x").ok()) << "trailing bytes after the columns";
  EXPECT_FALSE(decode(body(good, 1).substr(0, 10)).ok()) << "truncated";
  // Logical clocks as differences (columns2): from 0 at a new millisecond, from the last
  // within one; never below 0 nor above 0xffff.
  auto decode2 = [&](const std::string& b, std::vector<FieldDelta>* out) {
    return DecodeColumns(b, names, table, 16, true, out);
  };
  const std::string two_keys = key + bytes({0, 1, 1, 's', 1});
  auto clocks = [&](std::initializer_list<int> c) {
    return body({two_keys, bytes({1, 1}), bytes({0, 0}), bytes({2, 2}), bytes(c), value + value},
                2);
  };
  {
    std::vector<FieldDelta> out;
    // +1 ms, logical 0 + 5; same ms, logical 5 + 3 = 8.
    ASSERT_TRUE(decode2(clocks({2, 10, 0, 6}), &out).ok());
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(HlcLogical(out[0].state.markers.begin()->second.hlc), 5);
    EXPECT_EQ(HlcLogical(out[1].state.markers.begin()->second.hlc), 8);
    out.clear();
    // A new millisecond starts from 0 again: +1 ms, logical 0 + 3.
    ASSERT_TRUE(decode2(clocks({2, 10, 2, 6}), &out).ok());
    EXPECT_EQ(HlcLogical(out[1].state.markers.begin()->second.hlc), 3);
  }
  const std::vector<std::pair<const char*, std::string>> bad_clocks = {
      {"a logical clock below 0 at a new millisecond", clocks({2, 1, 0, 0})},
      {"a logical clock below 0 within one", clocks({2, 10, 0, 11})},
      {"a logical clock above 0xffff", clocks({2, 0xfe, 0xff, 0x07, 0, 4})},
      {"a difference past any clock",
       clocks({2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0})},
  };
  for (const auto& [what, b] : bad_clocks) {
    std::vector<FieldDelta> out;
    EXPECT_FALSE(decode2(b, &out).ok()) << what;
  }
}

// Writes within one millisecond count their logical clocks up: the layout a current
// peer gets carries each as a difference of one, not as a counter past 127 that takes
// two bytes, and decodes to the same states.
TEST(Wire, LogicalClocksWithinAMillisecondTravelAsDifferences) {
  DeltaBatch b;
  b.cursor = 1;
  for (int i = 0; i < 2000; ++i) {
    FieldState s;
    ApplyPut(
        s, Dot{Rid(1), static_cast<uint64_t>(i + 1)},
        MakeHlc(1700000000000 + static_cast<uint64_t>(i / 1000), static_cast<uint16_t>(i % 1000)),
        Value{static_cast<int64_t>(i)});
    b.deltas.push_back(FieldDelta{{"c", "r" + std::to_string(100000 + i), "f"}, s});
    if (i == 500) {  // a whole state between two registers of one millisecond
      FieldState set;
      ApplyAdd(set, Dot{Rid(2), 7}, MakeHlc(1700000000000, 900), Value{int64_t{1}});
      b.deltas.push_back(FieldDelta{{"c", "r100500", "tags"}, set});
    }
  }
  const size_t columns1 = EncodeMessage(b, kColumns1).value().size();
  const size_t columns2 = EncodeMessage(b, kColumns).value().size();
  EXPECT_LT(columns2 * 10, columns1 * 9)
      << columns1 << " bytes with counters, " << columns2 << " with differences";
  auto d = DecodeMessage(EncodeMessage(b, kColumns).value());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const auto& got = std::get<DeltaBatch>(*d).deltas;
  ASSERT_EQ(got.size(), b.deltas.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].state, b.deltas[i].state) << i;
}

// Pieces of a field state forged by a peer: each disagreement is refused at decoding.
TEST(Wire, ForgedPiecesAreRefused) {
  struct Case {
    const char* what;
    uint64_t total, offset;
    std::string piece, entries;
  };
  const std::vector<Case> cases = {
      {"entries beside a piece", 10, 0, "abc", "x"},  {"an empty piece", 10, 0, "", ""},
      {"a piece past its total", 10, 8, "abc", ""},   {"an offset past the total", 10, 11, "a", ""},
      {"a piece without its total", 0, 0, "abc", ""}, {"an offset without a total", 0, 3, "", ""},
  };
  for (const auto& c : cases) {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<wire::Envelope>();
    env.setVersion(kWireVersion);
    auto w = env.initBody().initDeltaBatch();
    w.setFrom(1);
    w.setCursor(1);
    w.setPieceTotal(c.total);
    w.setPieceOffset(c.offset);
    w.setPiece(
        capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(c.piece.data()), c.piece.size()));
    w.setEntries(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(c.entries.data()),
                                     c.entries.size()));
    w.setRawSize(static_cast<uint32_t>(c.entries.size()));
    auto words = capnp::messageToFlatArray(b);
    auto bytes = words.asBytes();
    auto d = DecodeMessage(std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size()));
    EXPECT_EQ(d.status().code(), Code::kCorrupt) << c.what;
  }
}

// Decodes a Hello built directly (as another build could send it): replica 3..3, send
// and accept `all`, an empty collected vector, then whatever `fill` sets.
// An envelope whose body `fill` builds, decoded: messages no encoder would write.
Result<Message> DecodeRaw(const std::function<void(wire::Envelope::Body::Builder)>& fill) {
  capnp::MallocMessageBuilder b;
  auto env = b.initRoot<wire::Envelope>();
  env.setVersion(kWireVersion);
  fill(env.initBody());
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return DecodeMessage(std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size()));
}

Result<Message> DecodeRawHello(const std::function<void(wire::Hello::Builder)>& fill) {
  return DecodeRaw([&](wire::Envelope::Body::Builder body) {
    auto w = body.initHello();
    w.setProtocol(engine::kProtocolVersion);
    std::array<uint8_t, 16> id{};
    id.fill(3);
    w.setReplica(capnp::Data::Reader(id.data(), id.size()));
    w.initSend().setAll(true);
    w.initAccept().setAll(true);
    w.initCollected();
    fill(w);
  });
}

// A filter that leaves collections out goes only where a peer reads it so (sendFull, with
// its feature bit); older builds read `all` in `send` and `accept` as every collection,
// and so does this one, whatever names follow.
TEST(Wire, AFilterThatLeavesCollectionsOutTravelsOnlyInSendFull) {
  Hello h = HelloOf(CollectionFilter::AllBut({"secrets"}), {}, false, {});
  EXPECT_EQ(EncodeMessage(h).status().code(), Code::kInvalidArgument);
  h = HelloOf({}, CollectionFilter::AllBut({"secrets"}), false, {});
  EXPECT_EQ(EncodeMessage(h).status().code(), Code::kInvalidArgument);

  auto build = [](bool all_with_names, bool bit, bool full) {
    return DecodeRawHello([&](wire::Hello::Builder w) {
      if (all_with_names) w.getSend().initNames(1).set(0, "secrets");
      w.setFeatures(bit ? kFeatureExclusions : 0);
      if (full) {
        auto f = w.initSendFull();
        f.setAll(true);
        f.initNames(1).set(0, "secrets");
      }
    });
  };
  auto d = build(true, false, false);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(std::get<Hello>(*d).send.Everything()) << "as an older build reads it";
  EXPECT_FALSE(std::get<Hello>(*d).send_full.has_value());
  d = build(false, false, true);  // no feature bit: sendFull is not read
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(std::get<Hello>(*d).send_full.has_value());
  d = build(false, true, true);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(std::get<Hello>(*d).send_full, CollectionFilter::AllBut({"secrets"}));
  EXPECT_EQ(build(false, true, false).status().code(), Code::kCorrupt)
      << "the bit without the filter";
  Hello bad_name = FullHello(CollectionFilter::AllBut({""}));
  EXPECT_EQ(DecodeMessage(EncodeMessage(bad_name).value()).status().code(), Code::kCorrupt);
}

// What a Hello says was collected in single collections: read back as sent, and refused
// when a name is not a collection's or the collections are out of order or repeated.
TEST(Wire, AHellosCollectionsCollectedInAreChecked) {
  VersionVector vv, other;
  vv.Raise(Rid(1), 5);
  other.Raise(Rid(2), 9);
  Hello h = HelloOf({}, {}, true, vv);
  h.collected_in = {{"orders", other}, {"products", vv}};
  auto d = DecodeMessage(EncodeMessage(h).value());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(std::get<Hello>(*d).collected_in, h.collected_in);
  h.collected_in = {{"", vv}};
  EXPECT_EQ(DecodeMessage(EncodeMessage(h).value()).status().code(), Code::kCorrupt);
  for (const auto& names : {std::vector<std::string>{"products", "orders"},
                            std::vector<std::string>{"orders", "orders"}}) {
    auto got = DecodeRawHello([&](wire::Hello::Builder w) {
      auto list = w.initCollectedIn(2);
      for (unsigned i = 0; i < 2; ++i) {
        list[i].setCollection(names[i]);
        list[i].initVv();
      }
    });
    EXPECT_EQ(got.status().code(), Code::kCorrupt) << names[0] << ", " << names[1];
  }
}

}  // namespace
}  // namespace tandem::net

namespace tandem::net {
namespace {

Result<Message> DecodeRawDigests(const std::function<void(wire::Digests::Builder)>& fill) {
  return DecodeRaw([&](wire::Envelope::Body::Builder body) {
    auto w = body.initDigests();
    w.setComparable(true);
    w.initVv();
    w.initHull();
    fill(w);
  });
}

// What a replica's states hold goes only to a peer that compares them, and a forged list
// (sums that do not match the names, names out of order, a zero sum) is refused.
TEST(Wire, DigestsRoundTripAndForgedOnesAreRefused) {
  VersionVector vv, hull;
  vv.Raise(Rid(1), 5);
  hull.Raise(Rid(1), 5);
  hull.Raise(Rid(4), 2);
  Digests d{true, vv, hull, false, {{"orders", {}}, {"products", {}}}};
  d.repair = true;
  d.sums["orders"][0] = 1;
  d.sums["products"][15] = 0xff;
  EXPECT_EQ(EncodeMessage(d).status().code(), Code::kUnsupported)
      << "Digests to a peer that did not offer them";
  EncodeOptions to;
  to.peer_features = kFeatureDigests;
  auto got = DecodeMessage(EncodeMessage(d, to).value());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const auto& g = std::get<Digests>(*got);
  EXPECT_TRUE(g.comparable);
  EXPECT_EQ(g.vv, vv);
  EXPECT_EQ(g.hull, hull);
  EXPECT_EQ(g.sums, d.sums);
  EXPECT_TRUE(g.repair);
  // Many collections (each name is read once: the decoder's traversal limit allows no more).
  Digests many{true, vv, hull, false, {}};
  for (int i = 0; i < 500; ++i) many.sums["c" + std::to_string(1000 + i)][3] = 7;
  auto m = DecodeMessage(EncodeMessage(many, to).value());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(std::get<Digests>(*m).sums, many.sums);
  auto none = DecodeMessage(EncodeMessage(Digests{}, to).value());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(std::get<Digests>(*none).comparable);
  // The Hello says whether its sender takes them.
  Hello h = HelloOf({}, {}, true, vv);
  h.digests = true;
  h.compare = true;
  auto hd = DecodeMessage(EncodeMessage(h).value());
  ASSERT_TRUE(hd.ok());
  EXPECT_TRUE(std::get<Hello>(*hd).digests);
  EXPECT_TRUE(std::get<Hello>(*hd).compare);
  h.digests = false;
  EXPECT_FALSE(std::get<Hello>(DecodeMessage(EncodeMessage(h).value()).value()).digests);

  const std::string sum16(16, '\x01');
  auto forged = [&](const std::vector<std::string>& names, const std::string& sums) {
    return DecodeRawDigests([&](wire::Digests::Builder w) {
             auto list = w.initCollections(static_cast<unsigned>(names.size()));
             for (unsigned i = 0; i < names.size(); ++i) list.set(i, names[i]);
             w.setSums(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(sums.data()),
                                           sums.size()));
           })
        .status()
        .code();
  };
  EXPECT_EQ(forged({"orders"}, sum16), Code::kOk);
  EXPECT_EQ(forged({"orders"}, sum16 + "x"), Code::kCorrupt);
  EXPECT_EQ(forged({"orders", "products"}, sum16), Code::kCorrupt);
  EXPECT_EQ(forged({"products", "orders"}, sum16 + sum16), Code::kCorrupt);
  EXPECT_EQ(forged({"orders", "orders"}, sum16 + sum16), Code::kCorrupt);
  EXPECT_EQ(forged({"orders"}, std::string(16, '\0')), Code::kCorrupt);
  EXPECT_EQ(forged({""}, sum16), Code::kCorrupt);
}

}  // namespace
}  // namespace tandem::net
