// The codec's primitives (varints, the reader) and values.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "codec_test_util.h"
#include "tandem/engine/codec.h"

namespace tandem::engine {
namespace {

// ---- primitives ---------------------------------------------------------------------

TEST(VarintTest, KnownEncodings) {
  EXPECT_EQ(VarintBytes(0), std::string("\x00", 1));
  EXPECT_EQ(VarintBytes(1), "\x01");
  EXPECT_EQ(VarintBytes(127), "\x7f");
  EXPECT_EQ(VarintBytes(128), "\x80\x01");
  EXPECT_EQ(VarintBytes(300), "\xac\x02");
  EXPECT_EQ(VarintBytes(std::numeric_limits<uint64_t>::max()), std::string(9, '\xff') + "\x01");
}

TEST(VarintTest, RoundTrip) {
  std::vector<uint64_t> vals = {0,
                                1,
                                127,
                                128,
                                255,
                                256,
                                16383,
                                16384,
                                (1ull << 32) - 1,
                                1ull << 32,
                                (1ull << 56) + 3,
                                (1ull << 63) - 1,
                                1ull << 63,
                                std::numeric_limits<uint64_t>::max()};
  std::string buf;
  Writer w(&buf);
  for (uint64_t v : vals) w.Varint(v);
  Reader r(buf);
  for (uint64_t v : vals) EXPECT_EQ(r.Varint(), v);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(VarintTest, RejectsNonCanonical) {
  for (std::string bad : {std::string("\x80\x00", 2), std::string("\xff\x00", 2),
                          std::string("\x81\x80\x00", 3), std::string("\x80\x80\x80\x00", 4)}) {
    Reader r(bad);
    EXPECT_EQ(r.Varint(), 0u);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
  }
  const std::string zero_byte("\x00", 1);
  Reader zero(zero_byte);  // a single zero byte is the canonical 0
  EXPECT_EQ(zero.Varint(), 0u);
  EXPECT_TRUE(zero.ok());
}

TEST(VarintTest, RejectsOverflowAndOverlongInput) {
  // Ten bytes whose last carries more than the one remaining bit.
  const std::string over_bytes = std::string(9, '\xff') + "\x02";
  Reader over(over_bytes);
  over.Varint();
  EXPECT_FALSE(over.ok());
  // Eleven bytes.
  const std::string longer_bytes = std::string(10, '\xff') + "\x01";
  Reader longer(longer_bytes);
  longer.Varint();
  EXPECT_FALSE(longer.ok());
  // Ten bytes with a continuation bit on the last.
  const std::string cont_bytes = std::string(9, '\xff') + "\x81" + "\x01";
  Reader cont(cont_bytes);
  cont.Varint();
  EXPECT_FALSE(cont.ok());
}

TEST(VarintTest, RejectsTruncated) {
  for (std::string bad : {std::string(), std::string("\x80"), std::string("\xff\xff")}) {
    Reader r(bad);
    EXPECT_EQ(r.Varint(), 0u);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
  }
}

TEST(ReaderTest, Fixed64IsLittleEndian) {
  std::string buf;
  Writer(&buf).Fixed64(0x0102030405060708ULL);
  EXPECT_EQ(buf, "\x08\x07\x06\x05\x04\x03\x02\x01");
  Reader r(buf);
  EXPECT_EQ(r.Fixed64(), 0x0102030405060708ULL);
  EXPECT_TRUE(r.ok());
  Reader shortr(std::string_view(buf).substr(0, 7));
  EXPECT_EQ(shortr.Fixed64(), 0u);
  EXPECT_FALSE(shortr.ok());
}

TEST(ReaderTest, FirstFailureSticks) {
  std::string buf =
      "\x05"
      "abc";
  Reader r(buf);
  EXPECT_TRUE(r.LengthPrefixed(100).empty());  // claims 5 bytes, has 3
  EXPECT_FALSE(r.ok());
  std::string first = r.status().message();
  EXPECT_EQ(r.U8(), 0);
  EXPECT_EQ(r.Varint(), 0u);
  EXPECT_TRUE(r.Raw(1).empty());
  r.Fail("something else");
  EXPECT_EQ(r.status().message(), first);
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ReaderTest, LengthPrefixedRespectsLimit) {
  std::string buf;
  Writer(&buf).LengthPrefixed("hello");
  {
    Reader r(buf);
    EXPECT_EQ(r.LengthPrefixed(5), "hello");
    EXPECT_TRUE(r.ok());
  }
  {
    Reader r(buf);
    r.LengthPrefixed(4);
    EXPECT_FALSE(r.ok());
  }
}

TEST(ReaderTest, CountIsBoundedByRemainingInput) {
  std::string buf = VarintBytes(3) + "abcdef";
  {
    Reader r(buf);
    EXPECT_EQ(r.Count(2), 3u);  // 3 items of >= 2 bytes fit in 6
    EXPECT_TRUE(r.ok());
  }
  {
    Reader r(buf);
    EXPECT_EQ(r.Count(3), 0u);  // 9 bytes needed, 6 left
    EXPECT_FALSE(r.ok());
  }
  {
    const std::string bytes = VarintBytes(std::numeric_limits<uint64_t>::max()) + "x";
    Reader r(bytes);
    EXPECT_EQ(r.Count(1), 0u);
    EXPECT_FALSE(r.ok());
  }
}

TEST(ReplicaTableTest, IndexOfIsStableAndIdAtInverts) {
  VectorReplicaTable t;
  EXPECT_EQ(t.IndexOf(kB), 0u);
  EXPECT_EQ(t.IndexOf(kA), 1u);
  EXPECT_EQ(t.IndexOf(kB), 0u);
  ReplicaId out;
  ASSERT_TRUE(t.IdAt(1, &out));
  EXPECT_EQ(out, kA);
  EXPECT_FALSE(t.IdAt(2, &out));
  EXPECT_FALSE(t.IdAt(std::numeric_limits<uint64_t>::max(), &out));
  t.Clear();
  EXPECT_FALSE(t.IdAt(0, &out));
  EXPECT_EQ(t.IndexOf(kA), 0u);
}

// ---- values -------------------------------------------------------------------------

std::vector<Value> SampleValues() {
  return {Value{},
          Value{false},
          Value{true},
          Value{int64_t{0}},
          Value{int64_t{-1}},
          Value{int64_t{63}},
          Value{int64_t{-64}},
          Value{std::numeric_limits<int64_t>::max()},
          Value{std::numeric_limits<int64_t>::min()},
          Value{0.0},
          Value{-0.0},
          Value{1.5},
          Value{std::numeric_limits<double>::infinity()},
          Value{-std::numeric_limits<double>::infinity()},
          Value{std::numeric_limits<double>::quiet_NaN()},
          Value{BitsToDouble(0xfff0000000000123ULL)},  // negative NaN with a payload
          Value{std::numeric_limits<double>::denorm_min()},
          Value{std::string()},
          Value{std::string("caf\xc3\xa9 \xf0\x9f\x98\x80")},
          Value{std::string("nul\0inside", 10)},
          Value{std::string(300, 'x')},
          Value{Bytes{}},
          Value{Bytes{std::string("\x00\xff\xc0\x80", 4)}}};
}

TEST(ValueCodecTest, RoundTripIsBitExact) {
  for (const Value& v : SampleValues()) {
    std::string buf;
    Writer w(&buf);
    EncodeValue(v, w);
    Reader r(buf);
    Value back = DecodeValue(r);
    ASSERT_TRUE(r.ok()) << DebugString(v) << ": " << r.status().ToString();
    EXPECT_EQ(r.remaining(), 0u) << DebugString(v);
    EXPECT_EQ(back.index(), v.index()) << DebugString(v);
    EXPECT_TRUE(SameValue(back, v)) << DebugString(v) << " came back as " << DebugString(back);
  }
}

TEST(ValueCodecTest, KnownEncodings) {
  auto enc = [](const Value& v) {
    std::string buf;
    Writer w(&buf);
    EncodeValue(v, w);
    return buf;
  };
  EXPECT_EQ(enc(Value{}), std::string("\x00", 1));
  EXPECT_EQ(enc(Value{false}), "\x01");
  EXPECT_EQ(enc(Value{true}), "\x02");
  EXPECT_EQ(enc(Value{int64_t{-1}}), "\x03\x01");  // zigzag
  EXPECT_EQ(enc(Value{int64_t{1}}), "\x03\x02");
  EXPECT_EQ(enc(Value{1.0}), std::string("\x04\x00\x00\x00\x00\x00\x00\xf0\x3f", 9));
  EXPECT_EQ(enc(S("hi")), "\x05\x02hi");
  EXPECT_EQ(enc(Value{Bytes{"hi"}}), "\x06\x02hi");
}

TEST(ValueCodecTest, EveryTruncationFails) {
  for (const Value& v : SampleValues()) {
    std::string buf;
    Writer w(&buf);
    EncodeValue(v, w);
    for (size_t n = 0; n < buf.size(); ++n) {
      Reader r(std::string_view(buf).substr(0, n));
      DecodeValue(r);
      EXPECT_FALSE(r.ok()) << DebugString(v) << " cut to " << n;
    }
  }
}

TEST(ValueCodecTest, RejectsUnknownTag) {
  for (uint8_t tag : {7, 8, 0x80, 0xff}) {
    std::string buf(1, static_cast<char>(tag));
    Reader r(buf);
    DecodeValue(r);
    EXPECT_FALSE(r.ok()) << int(tag);
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
  }
}

TEST(ValueCodecTest, RejectsInvalidUtf8String) {
  for (std::string bad : {"\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
    std::string buf = "\x05";
    Writer(&buf).LengthPrefixed(bad);
    Reader r(buf);
    DecodeValue(r);
    EXPECT_FALSE(r.ok());
  }
  // The same bytes are fine as a bytes value.
  std::string buf = "\x06";
  Writer(&buf).LengthPrefixed("\xc3");
  Reader r(buf);
  DecodeValue(r);
  EXPECT_TRUE(r.ok());
}

TEST(ValueCodecTest, RejectsOversizedLengthsWithoutNeedingTheBytes) {
  for (char tag : {'\x05', '\x06'}) {
    std::string buf(1, tag);
    buf += VarintBytes(kMaxValueBytes + 1);
    buf += std::string(16, 'x');
    Reader r(buf);
    DecodeValue(r);
    EXPECT_FALSE(r.ok());
  }
}

}  // namespace
}  // namespace tandem::engine
