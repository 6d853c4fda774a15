#include "tandem/engine/ids.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace tandem::engine {
namespace {

ReplicaId Rid(uint8_t last, uint8_t first = 0) {
  ReplicaId id;
  id.bytes[0] = first;
  id.bytes[15] = last;
  return id;
}

// ---- ReplicaId ----------------------------------------------------------------------

TEST(ReplicaIdTest, ZeroByDefault) {
  ReplicaId id;
  EXPECT_TRUE(id.IsZero());
  EXPECT_EQ(id.Hex(), std::string(32, '0'));
  EXPECT_FALSE(Rid(1).IsZero());
  EXPECT_FALSE(Rid(0, 0x80).IsZero());
}

TEST(ReplicaIdTest, HexIsLowercaseBigEndianByteOrder) {
  ReplicaId id;
  for (int i = 0; i < 16; ++i) id.bytes[i] = static_cast<uint8_t>(i * 17);  // 00 11 22 .. ff
  EXPECT_EQ(id.Hex(), "00112233445566778899aabbccddeeff");
  EXPECT_EQ(id.ShortHex(), "00112233");
}

// Ids order as their bytes do, lexicographically (contexts and version vectors are
// stored in that order), whichever byte first differs, and are equal only byte for byte.
TEST(ReplicaIdTest, OrderIsTheBytesLexicographicOrder) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; ++i) {
    ReplicaId a, b;
    for (auto& x : a.bytes) x = static_cast<uint8_t>(rng());
    // Share a prefix of any length (all 16 bytes now and then), then differ anywhere.
    b = a;
    if (i % 17)
      for (size_t k = rng() % 16; k < 16; ++k) b.bytes[k] = static_cast<uint8_t>(rng());
    const auto want = std::lexicographical_compare_three_way(a.bytes.begin(), a.bytes.end(),
                                                             b.bytes.begin(), b.bytes.end());
    EXPECT_EQ(a <=> b, want) << a.Hex() << " " << b.Hex();
    EXPECT_EQ(a == b, a.bytes == b.bytes);
    EXPECT_EQ((Dot{a, 1} < Dot{b, 0}), want < 0);
  }
}

TEST(ReplicaIdTest, HexRoundTrip) {
  ReplicaId id;
  for (int i = 0; i < 16; ++i) id.bytes[i] = static_cast<uint8_t>(0xf0 - i * 13);
  auto back = ReplicaId::FromHex(id.Hex());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, id);
}

TEST(ReplicaIdTest, FromHexAcceptsUppercase) {
  auto id = ReplicaId::FromHex("00112233445566778899AABBCCDDEEFF");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->Hex(), "00112233445566778899aabbccddeeff");
}

TEST(ReplicaIdTest, FromHexRejectsWrongLength) {
  for (std::string s : {std::string(), std::string(31, 'a'), std::string(33, 'a'),
                        std::string(64, 'a'), std::string(16, 'a')}) {
    auto r = ReplicaId::FromHex(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  }
}

TEST(ReplicaIdTest, FromHexRejectsNonHexDigits) {
  const std::string good = "00112233445566778899aabbccddeeff";
  for (char bad : {'g', 'G', 'x', ' ', '-', '\0', '/', ':', '@', '`', static_cast<char>(0xc3)}) {
    // Every position, so both nibbles of every byte are checked.
    for (size_t pos = 0; pos < good.size(); ++pos) {
      std::string s = good;
      s[pos] = bad;
      auto r = ReplicaId::FromHex(s);
      ASSERT_FALSE(r.ok()) << "char " << int(bad) << " at " << pos;
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(ReplicaIdTest, FromBytesCopiesSixteenBytes) {
  uint8_t raw[17];
  for (int i = 0; i < 17; ++i) raw[i] = static_cast<uint8_t>(i + 1);
  ReplicaId id = ReplicaId::FromBytes(raw);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(id.bytes[i], i + 1);
  raw[0] = 99;  // a copy, not a view
  EXPECT_EQ(id.bytes[0], 1);
}

TEST(ReplicaIdTest, OrderIsBytewise) {
  EXPECT_LT(Rid(1), Rid(2));
  EXPECT_LT(Rid(0xff, 0), Rid(0, 1));  // the first byte is most significant
  EXPECT_EQ(Rid(3), Rid(3));
}

TEST(DotTest, OrderIsReplicaThenSeq) {
  EXPECT_LT((Dot{Rid(1), 9}), (Dot{Rid(2), 1}));
  EXPECT_LT((Dot{Rid(1), 1}), (Dot{Rid(1), 2}));
  EXPECT_EQ((Dot{Rid(1), 2}), (Dot{Rid(1), 2}));
}

// ---- Hlc ----------------------------------------------------------------------------

TEST(HlcTest, PackAndUnpack) {
  Hlc h = MakeHlc(123456789, 42);
  EXPECT_EQ(HlcMillis(h), 123456789u);
  EXPECT_EQ(HlcLogical(h), 42);
  EXPECT_LT(MakeHlc(5, 0xffff), MakeHlc(6, 0));
  EXPECT_LT(MakeHlc(5, 1), MakeHlc(5, 2));
  // Milliseconds are 48 bits: higher bits are dropped, not shifted into nothing.
  EXPECT_EQ(HlcMillis(MakeHlc(0xffffffffffffULL, 7)), 0xffffffffffffULL);
  EXPECT_EQ(MakeHlc(0x1000000000001ULL, 0), MakeHlc(1, 0));
}

// ---- HybridClock --------------------------------------------------------------------

TEST(HybridClockTest, FollowsPhysicalTimeWhenItAdvances) {
  HybridClock c;
  Hlc a = c.Tick(1000);
  EXPECT_EQ(a, MakeHlc(1000, 0));
  Hlc b = c.Tick(2000);
  EXPECT_EQ(b, MakeHlc(2000, 0));
  EXPECT_EQ(c.last(), b);
}

TEST(HybridClockTest, SameMillisecondAdvancesLogical) {
  HybridClock c;
  Hlc a = c.Tick(1000);
  Hlc b = c.Tick(1000);
  Hlc d = c.Tick(1000);
  EXPECT_EQ(b, MakeHlc(1000, 1));
  EXPECT_EQ(d, MakeHlc(1000, 2));
  EXPECT_LT(a, b);
  EXPECT_LT(b, d);
}

TEST(HybridClockTest, MonotonicWhenPhysicalClockGoesBackwards) {
  HybridClock c;
  Hlc prev = c.Tick(5000);
  for (uint64_t t : {4000u, 1u, 0u, 4999u, 5000u}) {
    Hlc h = c.Tick(t);
    EXPECT_GT(h, prev) << "physical " << t;
    EXPECT_EQ(HlcMillis(h), 5000u);  // stays at the highest time seen
    prev = h;
  }
  Hlc later = c.Tick(6000);
  EXPECT_EQ(later, MakeHlc(6000, 0));
}

TEST(HybridClockTest, LogicalOverflowBorrowsAMillisecond) {
  HybridClock c(MakeHlc(1000, 0xfffe));
  Hlc a = c.Tick(1000);
  EXPECT_EQ(a, MakeHlc(1000, 0xffff));
  Hlc b = c.Tick(1000);
  EXPECT_GT(b, a);
  EXPECT_EQ(b, MakeHlc(1001, 0));
  // Physical time catching up with the borrowed millisecond still moves forward.
  Hlc d = c.Tick(1001);
  EXPECT_GT(d, b);
  EXPECT_EQ(d, MakeHlc(1001, 1));
}

TEST(HybridClockTest, ObserveMovesForwardOnly) {
  HybridClock c;
  c.Observe(MakeHlc(9000, 3));
  EXPECT_EQ(c.last(), MakeHlc(9000, 3));
  c.Observe(MakeHlc(100, 0));
  EXPECT_EQ(c.last(), MakeHlc(9000, 3));
  // The next tick is above the observed remote time even though physical time is behind.
  Hlc h = c.Tick(500);
  EXPECT_GT(h, MakeHlc(9000, 3));
  EXPECT_EQ(h, MakeHlc(9000, 4));
}

TEST(HybridClockTest, ResumesFromPersistedLast) {
  HybridClock c(MakeHlc(7000, 5));
  EXPECT_EQ(c.last(), MakeHlc(7000, 5));
  EXPECT_EQ(c.Tick(10), MakeHlc(7000, 6));
}

TEST(HybridClockTest, ManyTicksInOneMillisecondStayStrictlyIncreasing) {
  HybridClock c;
  Hlc prev = c.Tick(42);
  for (int i = 0; i < 70000; ++i) {  // more than 2^16: crosses a logical overflow
    Hlc h = c.Tick(42);
    ASSERT_GT(h, prev) << i;
    prev = h;
  }
  EXPECT_EQ(HlcMillis(prev), 43u);
}

// The largest timestamp is representable (a peer can send it: 48-bit ms, 16-bit logical).
// Once observed, the clock must never run backwards to 0.
TEST(HybridClockTest, NeverGoesBackwardsAtTheEndOfItsRange) {
  HybridClock c;
  const Hlc max = std::numeric_limits<Hlc>::max();
  c.Observe(max);
  Hlc h = c.Tick(1000);
  EXPECT_GE(h, max) << "clock wrapped around to " << h;
  EXPECT_GE(c.last(), max);
}

// ---- VersionVector ------------------------------------------------------------------

TEST(VersionVectorTest, EmptyGetsZero) {
  VersionVector vv;
  EXPECT_TRUE(vv.empty());
  EXPECT_EQ(vv.size(), 0u);
  EXPECT_EQ(vv.Get(Rid(1)), 0u);
  EXPECT_EQ(vv.ToString(), "{}");
}

TEST(VersionVectorTest, RaiseOnlyIncreases) {
  VersionVector vv;
  vv.Raise(Rid(1), 5);
  EXPECT_EQ(vv.Get(Rid(1)), 5u);
  vv.Raise(Rid(1), 3);
  EXPECT_EQ(vv.Get(Rid(1)), 5u);
  vv.Raise(Rid(1), 8);
  EXPECT_EQ(vv.Get(Rid(1)), 8u);
  EXPECT_EQ(vv.size(), 1u);
}

TEST(VersionVectorTest, RaiseToZeroAddsNoEntry) {
  VersionVector vv;
  vv.Raise(Rid(1), 0);
  EXPECT_TRUE(vv.empty());
  VersionVector empty;
  EXPECT_EQ(vv, empty);
}

TEST(VersionVectorTest, CoversDot) {
  VersionVector vv;
  vv.Raise(Rid(1), 3);
  EXPECT_TRUE(vv.Covers(Dot{Rid(1), 1}));
  EXPECT_TRUE(vv.Covers(Dot{Rid(1), 3}));
  EXPECT_FALSE(vv.Covers(Dot{Rid(1), 4}));
  EXPECT_FALSE(vv.Covers(Dot{Rid(2), 1}));
}

TEST(VersionVectorTest, CoversVector) {
  VersionVector a, b;
  EXPECT_TRUE(a.Covers(b));  // empty covers empty
  a.Raise(Rid(1), 3);
  a.Raise(Rid(2), 1);
  EXPECT_TRUE(a.Covers(b));
  EXPECT_FALSE(b.Covers(a));
  b.Raise(Rid(1), 3);
  EXPECT_TRUE(a.Covers(b));
  b.Raise(Rid(1), 4);
  EXPECT_FALSE(a.Covers(b));
  VersionVector c;
  c.Raise(Rid(3), 1);  // an entry a lacks entirely
  EXPECT_FALSE(a.Covers(c));
  EXPECT_TRUE(a.Covers(a));
}

TEST(VersionVectorTest, MergeIsPointwiseMax) {
  VersionVector a, b;
  a.Raise(Rid(1), 5);
  a.Raise(Rid(2), 1);
  b.Raise(Rid(2), 7);
  b.Raise(Rid(3), 2);
  VersionVector ab = a;
  ab.Merge(b);
  EXPECT_EQ(ab.Get(Rid(1)), 5u);
  EXPECT_EQ(ab.Get(Rid(2)), 7u);
  EXPECT_EQ(ab.Get(Rid(3)), 2u);
  EXPECT_EQ(ab.size(), 3u);
  VersionVector ba = b;
  ba.Merge(a);
  EXPECT_EQ(ab, ba);
  EXPECT_TRUE(ab.Covers(a));
  EXPECT_TRUE(ab.Covers(b));
  VersionVector again = ab;
  again.Merge(ab);
  EXPECT_EQ(again, ab);
}

TEST(VersionVectorTest, ToStringUsesShortHex) {
  VersionVector vv;
  vv.Raise(Rid(0, 0xab), 5);
  vv.Raise(Rid(1, 0x01), 2);
  EXPECT_EQ(vv.ToString(), "{01000000:2, ab000000:5}");
}

}  // namespace
}  // namespace tandem::engine
