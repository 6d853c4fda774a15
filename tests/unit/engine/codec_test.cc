// The codec's field states, version vectors and peer states.
#include "tandem/engine/codec.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "codec_test_util.h"
#include "reader_parts.h"

namespace tandem::engine {
namespace {

// ---- field states -------------------------------------------------------------------

std::vector<FieldState> SampleStates() {
  std::vector<FieldState> out;
  out.push_back(FieldState{});

  FieldState reg;
  ApplyPut(reg, Dot{kA, 1}, MakeHlc(1000, 2), Value{int64_t{5}});
  out.push_back(reg);

  FieldState siblings;
  ApplyPut(siblings, Dot{kA, 3}, MakeHlc(5, 0), S("a"));
  FieldState other;
  ApplyPut(other, Dot{kB, 900}, MakeHlc(0xffffffffffffULL, 0xffff), Value{-0.0});
  Join(siblings, other);
  out.push_back(siblings);

  FieldState counter;
  ApplyIncr(counter, Dot{kA, 1}, 1, 5);
  ApplyPut(counter, Dot{kB, 1}, 2, Value{Bytes{std::string("\0", 1)}});
  ApplyIncr(counter, Dot{kA, 2}, 3, std::numeric_limits<int64_t>::min());
  ApplyIncr(counter, Dot{kC, 70000}, 4, std::numeric_limits<int64_t>::max());
  out.push_back(counter);

  FieldState set;
  ApplyAdd(set, Dot{kA, 1}, 10, S("x"));
  FieldState set_b;
  ApplyAdd(set_b, Dot{kB, 1}, 11, S("x"));
  ApplyAdd(set_b, Dot{kB, 2}, 12, Value{std::numeric_limits<double>::quiet_NaN()});
  ApplyAdd(set_b, Dot{kB, 3}, 13, Value{});
  Join(set, set_b);
  ApplyRemove(set, Dot{kC, 1}, 14, Value{});
  out.push_back(set);

  FieldState tomb = counter;
  ApplyDelete(tomb, Dot{kC, 70001});
  out.push_back(tomb);
  return out;
}

TEST(FieldCodecTest, SelfContainedRoundTrip) {
  auto states = SampleStates();
  for (size_t i = 0; i < states.size(); ++i) {
    std::string enc = EncodeFieldState(states[i]).value();
    auto back = DecodeFieldState(enc);
    ASSERT_TRUE(back.ok()) << i << ": " << back.status().ToString();
    EXPECT_EQ(*back, states[i]) << i;
    EXPECT_EQ(EncodeFieldState(*back).value(), enc) << i << ": encoding is not canonical";
  }
}

// The self-contained form is the table a fresh external table ends up with, then the
// state against it; and its size is within EncodedSizeBound, which sizes its buffer.
TEST(FieldCodecTest, SelfContainedIsTheTableThenTheStateWithinItsBound) {
  auto states = SampleStates();
  FieldState big;
  ApplyAdd(big, Dot{kB, 1}, 1, Value{Bytes{std::string(100000, 'b')}});
  ApplyAdd(big, Dot{kA, 1}, 2, Value{BlobRef{BlobHash{}, 9, std::string(100, 't')}});
  ApplyAdd(big, Dot{kC, 7}, 3, S("c"));
  states.push_back(big);
  for (size_t i = 0; i < states.size(); ++i) {
    VectorReplicaTable table;
    std::string body;
    ASSERT_TRUE(EncodeFieldState(states[i], table, &body).ok());
    std::string want = VarintBytes(table.ids().size());
    for (const auto& id : table.ids()) want += IdBytes(id);
    want += body;
    const std::string enc = EncodeFieldState(states[i]).value();
    EXPECT_EQ(enc, want) << i;
    EXPECT_LE(enc.size(), EncodedSizeBound(states[i])) << i;
    EXPECT_LE(EncodedSizeBound(states[i]), enc.size() + 64) << i;  // and close to it
  }
}

// EncodesSmall lets a writer skip EncodedSizeBound: whatever it calls small encodes
// within kSmallEncoding bytes, at the largest it allows; and what it allows is narrow.
TEST(FieldCodecTest, WhatEncodesSmallFitsTheSmallSize) {
  const uint64_t top = std::numeric_limits<uint64_t>::max();
  const Hlc last = MakeHlc(0xffffffffffffULL, 0xffff);
  auto at_most = [&](Value a, Value b) {
    FieldState s, t;
    ApplyPut(s, Dot{kA, top}, last, std::move(a));
    ApplyPut(t, Dot{kB, top}, last, std::move(b));
    Join(s, t);
    ApplyDelete(t, Dot{kC, top});  // two more replicas in the context, no marker
    t.ctx.Raise(Rid(4), top);
    s.ctx.Merge(t.ctx);
    return s;
  };
  const std::vector<FieldState> small = {
      at_most(Value{std::string(128, 'x')}, Value{Bytes{std::string(128, 'y')}}),
      at_most(Value{BlobRef{BlobHash{}, top, std::string(kMaxBlobTypeBytes, 't')}},
              Value{BlobRef{BlobHash{}, top, std::string(kMaxBlobTypeBytes, 'u')}}),
      at_most(Value{-1.5}, Value{std::numeric_limits<int64_t>::min()}),
  };
  for (size_t i = 0; i < small.size(); ++i) {
    ASSERT_EQ(small[i].ctx.size(), 4u);
    ASSERT_EQ(small[i].markers.size(), 2u);
    EXPECT_TRUE(EncodesSmall(small[i])) << i;
    EXPECT_LE(EncodeFieldState(small[i]).value().size(), kSmallEncoding) << i;
  }
  FieldState longer;
  ApplyPut(longer, Dot{kA, 1}, 1, Value{std::string(129, 'x')});
  EXPECT_FALSE(EncodesSmall(longer));
  FieldState three;
  for (const ReplicaId& r : {kA, kB, kC}) {
    FieldState one;
    ApplyPut(one, Dot{r, 1}, 1, Value{});
    Join(three, one);
  }
  ASSERT_EQ(three.markers.size(), 3u);
  EXPECT_FALSE(EncodesSmall(three));
  for (const FieldState& s : SampleStates()) {
    if (!s.elements.empty() || !s.counter.empty() || !s.counter_base.empty()) {
      EXPECT_FALSE(EncodesSmall(s));
    }
  }
}

// The sample states, and a set of 300 elements (encoded outside the small path).
std::vector<FieldState> SampleStatesAndALargeSet() {
  FieldState big;
  for (int i = 0; i < 300; ++i)
    ApplyAdd(big, Dot{i % 2 ? kA : kB, uint64_t(i + 1)}, uint64_t(i + 1), Value{int64_t{i}});
  std::vector<FieldState> states = SampleStates();
  states.push_back(big);
  return states;
}

// A large state is written into storage reserved for it: counted, then encoded into
// exactly that many bytes, which are EncodeFieldState's; any other size is refused.
TEST(FieldCodecTest, ALargeStateEncodesIntoExactlyTheSizeCounted) {
  const std::vector<FieldState> states = SampleStatesAndALargeSet();
  for (size_t i = 0; i < states.size(); ++i) {
    VectorReplicaTable table;
    std::string want;
    ASSERT_TRUE(EncodeFieldState(states[i], table, &want).ok()) << i;
    auto n = EncodedFieldStateSize(states[i], table);
    ASSERT_TRUE(n.ok()) << i;
    EXPECT_EQ(*n, want.size()) << i;
    std::string got(want.size() + 1, '?');
    ASSERT_TRUE(EncodeFieldStateInto(states[i], table, got.data(), want.size()).ok()) << i;
    EXPECT_EQ(got.substr(0, want.size()), want) << i;
    EXPECT_EQ(got.back(), '?') << i;  // nothing past the end
    EXPECT_EQ(EncodeFieldStateInto(states[i], table, got.data(), want.size() - 1).code(),
              Code::kCorrupt)
        << i;
    EXPECT_EQ(EncodeFieldStateInto(states[i], table, got.data(), want.size() + 1).code(),
              Code::kCorrupt)
        << i;
  }
}

// Encoding a state it may consume gives the same bytes, and leaves only its context and
// counters (its markers and elements were freed as they were written).
TEST(FieldCodecTest, AConsumingEncodingIsTheSameBytes) {
  const std::vector<FieldState> states = SampleStatesAndALargeSet();
  const FieldKey key{"c", "r", "f"};
  for (size_t i = 0; i < states.size(); ++i) {
    auto want = EncodeDelta(key, states[i]);
    ASSERT_TRUE(want.ok()) << i;
    FieldState consumed = states[i];
    auto got = EncodeDelta(key, std::move(consumed));
    ASSERT_TRUE(got.ok()) << i;
    EXPECT_EQ(*got, *want) << i;
    EXPECT_TRUE(consumed.markers.empty()) << i;
    EXPECT_TRUE(consumed.elements.empty()) << i;
    EXPECT_EQ(consumed.ctx, states[i].ctx) << i;
    auto back = DecodeDelta(*got);
    ASSERT_TRUE(back.ok()) << i;
    EXPECT_EQ(back->second, states[i]) << i;
  }
}

TEST(FieldCodecTest, ExternalTableRoundTrip) {
  VectorReplicaTable table;
  table.IndexOf(kC);  // pre-existing entries: indices need not follow id order
  std::vector<std::string> encs;
  auto states = SampleStates();
  for (const auto& s : states) {
    std::string enc;
    EXPECT_TRUE(EncodeFieldState(s, table, &enc).ok());
    encs.push_back(enc);
  }
  EXPECT_EQ(table.ids().size(), 3u);
  for (size_t i = 0; i < states.size(); ++i) {
    auto back = DecodeFieldState(encs[i], table);
    ASSERT_TRUE(back.ok()) << i << ": " << back.status().ToString();
    EXPECT_EQ(*back, states[i]) << i;
  }
  // The same bytes against a table that lacks those replicas fail cleanly.
  VectorReplicaTable empty;
  auto bad = DecodeFieldState(encs[1], empty);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kCorrupt);
}

TEST(FieldCodecTest, FramedDecodeLeavesTheRestOfTheInput) {
  VectorReplicaTable table;
  auto states = SampleStates();
  std::string buf;
  EXPECT_TRUE(EncodeFieldState(states[2], table, &buf).ok());
  EXPECT_TRUE(EncodeFieldState(states[4], table, &buf).ok());
  buf += "tail";
  Reader r(buf);
  FieldState first = DecodeFieldState(r, table);
  FieldState second = DecodeFieldState(r, table);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(first, states[2]);
  EXPECT_EQ(second, states[4]);
  EXPECT_EQ(r.Raw(4), "tail");
}

TEST(FieldCodecTest, GoldenEncodingOfASimpleRegister) {
  FieldState s;
  ApplyPut(s, Dot{kA, 1}, MakeHlc(1000, 2), Value{int64_t{5}});
  std::string want = VarintBytes(1) + IdBytes(kA);  // the replica table
  want += "\x10";                                   // format 1, no optional sections
  want += std::string("\x01\x00\x01", 3);           // ctx: 1 entry, table index 0, seq 1
  want += std::string("\x01\x00\x00", 3);           // 1 marker at ctx position 0, offset 0
  want += "\xe8\x07";                               // hlc ms 1000
  want += "\x09";                                   // logical 2 << 2 | register
  want += "\x03\x0a";                               // value int 5
  EXPECT_EQ(EncodeFieldState(s).value(), want);
}

TEST(FieldCodecTest, GoldenEncodingWithAllSections) {
  FieldState s;
  ApplyAdd(s, Dot{kA, 1}, MakeHlc(7, 0), S("x"));  // elements
  ApplyIncr(s, Dot{kA, 2}, MakeHlc(7, 1), 3);      // counter, clears elements
  ApplyAdd(s, Dot{kA, 3}, MakeHlc(7, 2), S("y"));  // base, elements again
  std::string want = VarintBytes(1) + IdBytes(kA);
  want += "\x17";                                       // format 1, elements, counter, base
  want += std::string("\x01\x00\x03", 3);               // ctx {A:3}
  want += std::string("\x01\x00\x00\x07\x0b", 5);       // marker A:3 hlc (7, 2) set
  want += std::string("\x01\x05\x01y\x01\x00\x00", 7);  // element "y" with dot A:3
  want += std::string("\x01\x00\x03\x00", 4);           // counter A: +3 -0
  want += std::string("\x01\x00\x03\x00", 4);           // base A: +3 -0
  EXPECT_EQ(EncodeFieldState(s).value(), want);
}

TEST(FieldCodecTest, LatestWriteDotIsCheap) {
  // A dot at the top of its replica's context entry costs two bytes regardless of how
  // large the sequence number is.
  FieldState small, big;
  ApplyPut(small, Dot{kA, 1}, 1, Value{});
  ApplyPut(big, Dot{kA, 1ull << 40}, 1, Value{});
  EXPECT_EQ(EncodeFieldState(big).value().size() - EncodeFieldState(small).value().size(),
            VarintBytes(1ull << 40).size() - 1);
}

TEST(FieldCodecTest, EveryTruncationFails) {
  for (const auto& s : SampleStates()) {
    std::string enc = EncodeFieldState(s).value();
    for (size_t n = 0; n < enc.size(); ++n) {
      auto r = DecodeFieldState(std::string_view(enc).substr(0, n));
      ASSERT_FALSE(r.ok()) << "prefix of " << n << "/" << enc.size() << " decoded";
      EXPECT_EQ(r.status().code(), Code::kCorrupt);
    }
  }
}

TEST(FieldCodecTest, EveryTruncationFailsWithExternalTable) {
  VectorReplicaTable table;
  for (const auto& s : SampleStates()) {
    std::string enc;
    EXPECT_TRUE(EncodeFieldState(s, table, &enc).ok());
    for (size_t n = 0; n < enc.size(); ++n)
      EXPECT_FALSE(DecodeFieldState(std::string_view(enc).substr(0, n), table).ok()) << n;
  }
}

TEST(FieldCodecTest, TrailingBytesRejected) {
  for (const auto& s : SampleStates()) {
    std::string enc = EncodeFieldState(s).value();
    for (std::string extra : {std::string("\x00", 1), std::string("\x01"), std::string("zz")}) {
      auto r = DecodeFieldState(enc + extra);
      EXPECT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), Code::kCorrupt);
    }
    VectorReplicaTable table;
    std::string ext;
    EXPECT_TRUE(EncodeFieldState(s, table, &ext).ok());
    EXPECT_FALSE(DecodeFieldState(ext + "x", table).ok());
  }
}

TEST(FieldCodecTest, SingleByteCorruptionNeverCrashesAndAcceptedStatesAreValid) {
  for (const auto& s : SampleStates()) {
    std::string enc = EncodeFieldState(s).value();
    for (size_t i = 0; i < enc.size(); ++i) {
      for (int delta : {1, 0x7f, 0x80, 0xff}) {
        std::string bad = enc;
        bad[i] = static_cast<char>(static_cast<uint8_t>(bad[i]) + delta);
        auto r = DecodeFieldState(bad);
        if (!r.ok()) {
          // Damage reads as corrupt; a damaged header can also read as a newer format.
          EXPECT_TRUE(r.status().code() == Code::kCorrupt ||
                      r.status().code() == Code::kUnsupported)
              << r.status().ToString();
          continue;
        }
        // Whatever was accepted satisfies the invariants: it encodes and decodes again.
        auto again = DecodeFieldState(EncodeFieldState(*r).value());
        ASSERT_TRUE(again.ok()) << "byte " << i << " +" << delta;
        EXPECT_EQ(*again, *r);
      }
    }
  }
}

// Hand-built encodings, following the grammar in codec.cc:
//   state  := header ctx markers [elements] [counter] [base]
//   header := version << 4 | has_elements | has_counter << 1 | has_base << 2
//   marker := dot hlc_ms (hlc_logical << 2 | kind) [value if register]
constexpr uint8_t kElements = 1, kCounter = 2, kBase = 4;

struct Enc {
  uint64_t table_count = 2;
  std::string table_ids = IdBytes(kA) + IdBytes(kB);  // kA = index 0, kB = index 1
  uint8_t header = 0x10;
  std::string ctx = std::string("\x02\x00\x03\x01\x02", 5);  // {kA:3, kB:2}
  std::string markers = std::string("\x00", 1);
  std::string rest;  // the optional sections the header announces
  std::string Bytes() const {
    return VarintBytes(table_count) + table_ids + std::string(1, static_cast<char>(header)) + ctx +
           markers + rest;
  }
};

std::string MarkerBytes(uint64_t pos, uint64_t offset, uint64_t ms, uint64_t logical,
                        uint8_t kind) {
  std::string s =
      VarintBytes(pos) + VarintBytes(offset) + VarintBytes(ms) + VarintBytes(logical << 2 | kind);
  if (kind == 1) s.push_back('\x00');  // null register value
  return s;
}

void ExpectCorrupt(const std::string& bytes, const char* what) {
  auto r = DecodeFieldState(bytes);
  ASSERT_FALSE(r.ok()) << what << " was accepted";
  EXPECT_EQ(r.status().code(), Code::kCorrupt) << what << ": " << r.status().ToString();
}

TEST(FieldCodecTest, HandBuiltStateDecodes) {
  Enc e;
  e.header = 0x10 | kElements | kCounter | kBase;
  e.markers = "\x02" + MarkerBytes(0, 0, 10, 0, 1) + MarkerBytes(1, 1, 10, 5, 2);
  e.rest = std::string("\x01\x05\x01x\x01\x00\x02", 7);  // element "x" with dot (0, 2)
  e.rest += std::string("\x01\x01\x07\x01", 4);          // counter kB: pos 7 neg 1
  e.rest += std::string("\x01\x01\x02\x00", 4);          // base kB: pos 2
  auto r = DecodeFieldState(e.Bytes());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->ctx.Get(kA), 3u);
  EXPECT_EQ(r->ctx.Get(kB), 2u);
  ASSERT_EQ(r->markers.size(), 2u);
  EXPECT_EQ(r->markers.at(Dot{kA, 3}).kind, Kind::kRegister);
  EXPECT_EQ(r->markers.at(Dot{kB, 1}).kind, Kind::kCounter);
  EXPECT_EQ(r->markers.at(Dot{kB, 1}).hlc, MakeHlc(10, 5));
  EXPECT_EQ(r->elements.at(S("x")), (std::set<Dot>{Dot{kA, 1}}));
  EXPECT_EQ(r->counter.at(kB), (PnTotals{7, 1}));
  EXPECT_EQ(r->counter_base.at(kB), (PnTotals{2, 0}));
  EXPECT_EQ(EncodeFieldState(*r).value(), e.Bytes());  // and it was canonical
}

TEST(FieldCodecTest, RejectsBadKind) {
  Enc e;
  e.markers = "\x01" + MarkerBytes(0, 0, 10, 0, 0);  // kind 0
  ExpectCorrupt(e.Bytes(), "kind 0");
  for (uint8_t kind : {1, 2, 3}) {  // the three real kinds decode
    e.markers = "\x01" + MarkerBytes(0, 0, 10, 0, kind);
    EXPECT_TRUE(DecodeFieldState(e.Bytes()).ok()) << int(kind);
  }
}

TEST(FieldCodecTest, RejectsDuplicateMarkerDots) {
  Enc e;
  e.markers = "\x02" + MarkerBytes(0, 0, 10, 0, 2) + MarkerBytes(0, 0, 11, 0, 3);
  ExpectCorrupt(e.Bytes(), "duplicate marker dot");
}

TEST(FieldCodecTest, RejectsDotsOutsideTheContext) {
  Enc e;
  e.markers = "\x01" + MarkerBytes(2, 0, 10, 0, 2);  // ctx has positions 0 and 1
  ExpectCorrupt(e.Bytes(), "dot naming a replica outside the context");
  e.markers = "\x01" + MarkerBytes(0, 3, 10, 0, 2);  // seq 3 - 3 = 0
  ExpectCorrupt(e.Bytes(), "dot below sequence 1");
  e.markers = "\x01" + MarkerBytes(1, 1, 10, 0, 2);  // seq 2 - 1 = 1: fine
  EXPECT_TRUE(DecodeFieldState(e.Bytes()).ok());
}

TEST(FieldCodecTest, RejectsTimestampOutOfRange) {
  Enc e;
  e.markers = "\x01" + MarkerBytes(0, 0, 1ull << 48, 0, 2);
  ExpectCorrupt(e.Bytes(), "milliseconds past 48 bits");
  e.markers = "\x01" + MarkerBytes(0, 0, 10, 0x10000, 2);
  ExpectCorrupt(e.Bytes(), "logical past 16 bits");
  e.markers = "\x01" + MarkerBytes(0, 0, (1ull << 48) - 1, 0xffff, 2);  // the largest: fine
  auto r = DecodeFieldState(e.Bytes());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->MaxHlc(), std::numeric_limits<Hlc>::max());
}

TEST(FieldCodecTest, RejectsUnknownReplicaIndex) {
  Enc e;
  e.table_count = 1;
  e.table_ids = IdBytes(kA);
  e.ctx = std::string("\x01\x01\x01", 3);  // index 1 of a table of 1
  ExpectCorrupt(e.Bytes(), "unknown replica index");
  e.ctx = std::string("\x01\x00\x01", 3);
  EXPECT_TRUE(DecodeFieldState(e.Bytes()).ok());
}

TEST(FieldCodecTest, RejectsBadContexts) {
  Enc e;
  e.ctx = std::string("\x01\x00\x00", 3);
  ExpectCorrupt(e.Bytes(), "context seq 0");
  e.ctx = std::string("\x02\x00\x01\x00\x02", 5);
  ExpectCorrupt(e.Bytes(), "duplicate ctx replica");
  e.ctx = std::string("\x02\x01\x01\x00\x01", 5);
  ExpectCorrupt(e.Bytes(), "ctx in descending replica order");
  e.ctx = std::string("\x02\x00\x01\x01\x01", 5);
  EXPECT_TRUE(DecodeFieldState(e.Bytes()).ok());
}

TEST(FieldCodecTest, RejectsDuplicateReplicaInTable) {
  Enc e;
  e.table_ids = IdBytes(kA) + IdBytes(kA);
  e.ctx = std::string("\x01\x00\x01", 3);
  ExpectCorrupt(e.Bytes(), "duplicate table entry");
}

TEST(FieldCodecTest, RejectsBadElements) {
  Enc e;
  e.header = 0x10 | kElements;
  auto with = [&](const std::string& elements) {
    e.rest = elements;
    return e.Bytes();
  };
  ExpectCorrupt(with(std::string("\x01\x05\x01x\x02\x00\x00\x00\x00", 9)), "duplicate element dot");
  ExpectCorrupt(with(std::string("\x02\x05\x01x\x01\x00\x00\x05\x01x\x01\x00\x01", 13)),
                "duplicate element");
  ExpectCorrupt(with(std::string("\x01\x05\x01x\x00", 5)), "element without dots");
  ExpectCorrupt(with(std::string("\x01\x05\x01\xff\x01\x00\x00", 7)), "invalid UTF-8 element");
  ExpectCorrupt(with(std::string("\x01\x05\x01x\x01\x02\x00", 7)), "element dot outside ctx");
  EXPECT_TRUE(
      DecodeFieldState(with(std::string("\x02\x05\x01x\x01\x00\x00\x05\x01y\x01\x00\x01", 13)))
          .ok());
}

TEST(FieldCodecTest, RejectsBadCounterEntries) {
  Enc e;
  e.header = 0x10 | kCounter;
  e.rest = std::string("\x01\x00\x00\x00", 4);
  ExpectCorrupt(e.Bytes(), "zero totals");
  e.rest = std::string("\x02\x00\x01\x00\x00\x02\x00", 7);
  ExpectCorrupt(e.Bytes(), "duplicate counter entry");
  e.rest = std::string("\x01\x02\x01\x00", 4);
  ExpectCorrupt(e.Bytes(), "counter outside the context");
  e.rest = std::string("\x01\x00\x01\x00", 4);
  EXPECT_TRUE(DecodeFieldState(e.Bytes()).ok());
  e.header = 0x10 | kBase;
  e.rest = std::string("\x01\x00\x00\x00", 4);
  ExpectCorrupt(e.Bytes(), "zero base totals");
}

TEST(FieldCodecTest, OptionalSectionsMustMatchTheHeader) {
  Enc e;
  for (uint8_t flag : {kElements, kCounter, kBase}) {
    SCOPED_TRACE(int(flag));
    e.header = 0x10 | flag;
    e.rest = "";
    ExpectCorrupt(e.Bytes(), "announced section missing");
    e.rest = std::string("\x00", 1);
    ExpectCorrupt(e.Bytes(), "announced section empty");
  }
  e.header = 0x10;
  e.rest = std::string("\x00", 1);  // an unannounced (empty) section is a trailing byte
  ExpectCorrupt(e.Bytes(), "unannounced section");
  e.header = 0x18;  // an unknown flag
  e.rest = "";
  ExpectCorrupt(e.Bytes(), "unknown header flag");
}

TEST(FieldCodecTest, RejectsForgedHugeCounts) {
  const std::string huge = VarintBytes(1ull << 60);
  ExpectCorrupt(huge + std::string(40, '\0'), "huge table count");
  {
    Enc e;
    e.ctx = huge + std::string(20, '\x01');
    ExpectCorrupt(e.Bytes(), "huge ctx count");
  }
  {
    Enc e;
    e.markers = huge + std::string(20, '\x00');
    ExpectCorrupt(e.Bytes(), "huge marker count");
  }
  {
    Enc e;
    e.header = 0x10 | kElements;
    e.rest = huge + std::string(20, '\x00');
    ExpectCorrupt(e.Bytes(), "huge element count");
  }
  {
    Enc e;
    e.header = 0x10 | kElements;
    e.rest = "\x01\x05\x01x" + huge + std::string(20, '\x00');
    ExpectCorrupt(e.Bytes(), "huge element dot count");
  }
  {
    Enc e;
    e.header = 0x10 | kCounter;
    e.rest = huge + std::string(20, '\x01');
    ExpectCorrupt(e.Bytes(), "huge counter count");
  }
  {
    Enc e;
    e.header = 0x10 | kBase;
    e.rest = huge + std::string(20, '\x01');
    ExpectCorrupt(e.Bytes(), "huge base count");
  }
  {
    Enc e;
    e.markers =
        std::string("\x01\x00\x00\x0a\x01\x05", 6) + VarintBytes(1ull << 40) + std::string(20, 'x');
    ExpectCorrupt(e.Bytes(), "huge string length in a register");
  }
}

TEST(FieldCodecTest, RejectsNonCanonicalVarintsInsideAState) {
  {
    Enc e;
    e.ctx = std::string("\x02\x00\x83\x00\x01\x02", 6);
    ExpectCorrupt(e.Bytes(), "padded ctx seq");
  }
  {
    Enc e;
    e.markers = std::string("\x81\x00", 2) + MarkerBytes(0, 0, 10, 0, 2);
    ExpectCorrupt(e.Bytes(), "padded marker count");
  }
  {
    Enc e;
    e.markers = std::string("\x01\x00\x00\x8a\x00\x02", 6);
    ExpectCorrupt(e.Bytes(), "padded hlc millis");
  }
  {
    Enc e;
    e.table_count = 2;
    std::string bytes = e.Bytes();
    ASSERT_EQ(bytes[0], '\x02');
    ExpectCorrupt("\x82" + std::string("\x00", 1) + bytes.substr(1), "padded table count");
  }
}

TEST(FieldCodecTest, RejectsUnknownVersions) {
  for (uint8_t header : {0x00, 0x01, 0x20, 0xf0, 0xff}) {
    Enc e;
    e.header = header;
    EXPECT_FALSE(DecodeFieldState(e.Bytes()).ok()) << int(header);
  }
  Enc e;
  e.header = 0x00;  // version 0 never existed: damage, not a newer format
  EXPECT_EQ(DecodeFieldState(e.Bytes()).status().code(), Code::kCorrupt);
}

// status.h: kUnsupported is "a newer format or protocol than this build understands";
// kCorrupt means damaged bytes. A state written by a newer build is not damaged.
TEST(FieldCodecTest, NewerFormatVersionIsUnsupportedNotCorrupt) {
  for (uint8_t version = kFieldFormatVersion + 1; version < 16; ++version) {
    Enc e;
    e.header = static_cast<uint8_t>(version << 4);
    auto r = DecodeFieldState(e.Bytes());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kUnsupported) << int(version) << r.status().ToString();
  }
}

TEST(ReaderTest, MarkUnsupportedKeepsTheMessage) {
  Reader r("");
  r.U8();
  std::string msg = r.status().message();
  r.MarkUnsupported();
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
  EXPECT_EQ(r.status().message(), msg);
}

// A delta read a part at a time, whatever the parts' size, decodes as the whole does,
// and what the whole refuses (cut short, or with a byte past its end) it refuses too.
TEST(ReaderTest, ADeltaReadInPartsDecodesAsTheWholeDoes) {
  std::vector<FieldState> states = SampleStatesAndALargeSet();
  FieldState long_value;  // a value across many parts
  ApplyPut(long_value, Dot{kA, 1}, 1, Value{std::string(5000, 'v')});
  states.push_back(long_value);
  const FieldKey key{"c", "r", "f"};
  for (size_t i = 0; i < states.size(); ++i) {
    auto bytes = EncodeDelta(key, states[i]);
    ASSERT_TRUE(bytes.ok()) << i;
    for (size_t size : {1, 2, 3, 7, 64, 1000}) {
      Parts parts(*bytes, size);
      Reader r({}, &parts);
      EXPECT_EQ(r.remaining(), bytes->size());
      auto d = DecodeDelta(r);
      ASSERT_TRUE(d.ok()) << i << " " << size << " " << d.status().ToString();
      EXPECT_EQ(d->first, key);
      EXPECT_EQ(d->second, states[i]) << i << " " << size;
      for (const std::string& bad : {bytes->substr(0, bytes->size() - 1), *bytes + "x"}) {
        Parts bad_parts(bad, size);
        Reader bad_r({}, &bad_parts);
        EXPECT_FALSE(DecodeDelta(bad_r).ok()) << i << " " << size;
      }
    }
  }
}

// ---- version vectors ----------------------------------------------------------------

TEST(VersionVectorCodecTest, RoundTrip) {
  VersionVector vv;
  vv.Raise(kA, 1);
  vv.Raise(kB, 1ull << 50);
  vv.Raise(kC, std::numeric_limits<uint64_t>::max());
  for (const VersionVector& v : {VersionVector{}, vv}) {
    std::string buf;
    Writer w(&buf);
    EncodeVersionVector(v, w);
    Reader r(buf);
    VersionVector back = DecodeVersionVector(r);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r.remaining(), 0u);
    EXPECT_EQ(back, v);
    for (size_t n = 0; n < buf.size(); ++n) {
      Reader cut(std::string_view(buf).substr(0, n));
      DecodeVersionVector(cut);
      EXPECT_FALSE(cut.ok()) << n;
    }
    // A byte at a time: an id read stays valid while its sequence is read after it.
    Parts parts(buf, 1);
    Reader in_parts({}, &parts);
    EXPECT_EQ(DecodeVersionVector(in_parts), v);
    EXPECT_TRUE(in_parts.ok()) << in_parts.status().ToString();
  }
}

TEST(VersionVectorCodecTest, RejectsZeroAndDuplicateEntries) {
  {
    std::string buf = VarintBytes(1) + IdBytes(kA) + VarintBytes(0);
    Reader r(buf);
    DecodeVersionVector(r);
    EXPECT_FALSE(r.ok());
  }
  {
    std::string buf = VarintBytes(2) + IdBytes(kA) + VarintBytes(1) + IdBytes(kA) + VarintBytes(2);
    Reader r(buf);
    DecodeVersionVector(r);
    EXPECT_FALSE(r.ok());
  }
  {
    std::string buf = VarintBytes(1ull << 40) + IdBytes(kA) + VarintBytes(1);
    Reader r(buf);
    DecodeVersionVector(r);
    EXPECT_FALSE(r.ok());
  }
}

TEST(PeerStateCodec, RoundTripsDeliveryAndReadsVersionOneAsNothingDelivered) {
  PeerState p;
  p.cursor = 42;
  p.vv.Raise(kA, 7);
  p.last_sync_ms = 1234;
  p.fields_received = 3;
  p.fields_refused = 1;
  p.delivered = 99;
  p.delivery = CollectionFilter::Only({"orders", "products"});
  auto back = DecodePeerState(EncodePeerState(p));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(EncodePeerState(p)[0], 2) << "no mark: version 2, which older builds read";
  // Filtered: version 5 says which collections were taken, with or without pieces.
  for (const bool pieces : {false, true}) {
    PeerState f = p;
    f.filtered = true;
    f.received = CollectionFilter::Only({"orders"});
    if (pieces) f.pieces = PieceProgress{5, 100, 64, {}};
    auto back5 = DecodePeerState(EncodePeerState(f));
    ASSERT_TRUE(back5.ok()) << back5.status().ToString();
    EXPECT_EQ(*back5, f);
    EXPECT_EQ(EncodePeerState(f)[0], 5);
    f.received = CollectionFilter{};  // filtered, but nothing before the cursor left out
    back5 = DecodePeerState(EncodePeerState(f));
    ASSERT_TRUE(back5.ok()) << back5.status().ToString();
    EXPECT_EQ(*back5, f);
    // None known whole: what every earlier version says of a filtered peer.
    f.received = CollectionFilter::None();
    EXPECT_EQ(EncodePeerState(f)[0], pieces ? 4 : 2);
    back5 = DecodePeerState(EncodePeerState(f));
    ASSERT_TRUE(back5.ok()) << back5.status().ToString();
    EXPECT_EQ(*back5, f);
  }
  PeerState marked = p;
  marked.mark = 1ull << 50;
  auto back3 = DecodePeerState(EncodePeerState(marked));
  ASSERT_TRUE(back3.ok()) << back3.status().ToString();
  EXPECT_EQ(*back3, marked);
  EXPECT_EQ(EncodePeerState(marked)[0], 3);

  // A version 1 record (written before delivery status existed).
  std::string v1;
  Writer w(&v1);
  w.U8(1);
  w.Varint(42);
  w.Varint(1);  // one version vector entry
  w.Raw(std::string_view(reinterpret_cast<const char*>(kA.bytes.data()), kA.bytes.size()));
  w.Varint(7);
  w.Varint(1234);
  w.Varint(3);
  w.Varint(1);
  w.U8(1);
  auto old = DecodePeerState(v1);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->cursor, 42u);
  EXPECT_EQ(old->vv.Get(kA), 7u);
  EXPECT_EQ(old->delivered, 0u);
  EXPECT_TRUE(old->delivery.Everything());
  // Filtered, from before the collections taken were kept: none are known to be whole.
  EXPECT_TRUE(old->filtered);
  EXPECT_EQ(old->received, CollectionFilter::None());

  // Filters that leave collections out (flag 2), in what a peer received and delivery.
  PeerState excluding = p;
  excluding.filtered = true;
  excluding.received = CollectionFilter::AllBut({"secrets"});
  excluding.delivery = CollectionFilter::AllBut({"a", "b"});
  auto back5 = DecodePeerState(EncodePeerState(excluding));
  ASSERT_TRUE(back5.ok()) << back5.status().ToString();
  EXPECT_EQ(*back5, excluding);
  {
    std::string f;
    Writer fw(&f);
    EncodeCollectionFilter(CollectionFilter::AllBut({"x"}), fw);
    EXPECT_EQ(f[0], 2);
    std::string all_named = f;
    all_named[0] = 1;  // every collection, whatever names follow (as older builds read it)
    Reader r1(all_named);
    EXPECT_EQ(DecodeCollectionFilter(r1), CollectionFilter{});
    EXPECT_TRUE(r1.ok());
    std::string unknown = f;
    unknown[0] = 3;
    Reader r3(unknown);
    DecodeCollectionFilter(r3);
    EXPECT_FALSE(r3.ok());
    std::string none_left_out;
    Writer nw(&none_left_out);
    nw.U8(2);
    nw.Varint(0);
    Reader r0(none_left_out);
    DecodeCollectionFilter(r0);
    EXPECT_FALSE(r0.ok()) << "flag 2 leaves some collection out";
  }

  // Damage is refused, not misread.
  std::string bad = EncodePeerState(p);
  bad[0] = 4;
  EXPECT_FALSE(DecodePeerState(bad).ok());
  bad[0] = 3;  // a mark missing
  EXPECT_FALSE(DecodePeerState(bad).ok());
  bad[0] = 5;  // what was taken, missing
  EXPECT_FALSE(DecodePeerState(bad).ok());
  EXPECT_FALSE(DecodePeerState(EncodePeerState(p) + "x").ok());
  std::string cut = EncodePeerState(p);
  cut.pop_back();
  EXPECT_FALSE(DecodePeerState(cut).ok());
}

// A state that breaks the codec's invariant (a dot its context does not cover) is never
// encoded into something a reader would misread: encoding fails, in release builds too,
// and appends nothing.
TEST(FieldCodecTest, StateBreakingAnInvariantIsRefusedNotEncoded) {
  FieldState s;
  ApplyPut(s, Dot{kA, 1}, MakeHlc(1000, 0), Value{int64_t{5}});
  FieldState marker_outside = s;
  marker_outside.markers.emplace(Dot{kB, 4}, s.markers.begin()->second);
  FieldState counter_outside = s;
  counter_outside.counter[kB] = PnTotals{1, 0};
  for (const FieldState* bad : {&marker_outside, &counter_outside}) {
    VectorReplicaTable table;
    std::string out = "prefix";
    Status st = EncodeFieldState(*bad, table, &out);
    EXPECT_EQ(st.code(), Code::kCorrupt);
    EXPECT_NE(st.message().find("internal check failed"), std::string::npos) << st.message();
    EXPECT_EQ(out, "prefix");
    EXPECT_FALSE(EncodeFieldState(*bad).ok());
  }
}

}  // namespace
}  // namespace tandem::engine
