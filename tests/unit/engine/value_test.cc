#include "tandem/engine/value.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tandem/engine/status.h"

namespace tandem::engine {
namespace {

double BitsToDouble(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

int Sign(int x) { return (x > 0) - (x < 0); }

// ---- Status -------------------------------------------------------------------------

TEST(StatusTest, OkAndErrors) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "ok");
  Status nf = Status::NotFound("x");
  EXPECT_FALSE(nf.ok());
  EXPECT_EQ(nf.code(), Code::kNotFound);
  EXPECT_EQ(nf.ToString(), "not found: x");
  EXPECT_EQ(Status::Corrupt("truncated varint").With("field state").ToString(),
            "corrupt: field state: truncated varint");
  EXPECT_TRUE(ok.With("ctx").ok());
  EXPECT_EQ(ok.With("ctx").message(), "");
}

Result<std::string> MaybeString(bool ok) {
  if (!ok) return Status::Invalid("bad");
  return std::string("value");
}

TEST(StatusTest, ResultHoldsValueOrStatus) {
  Result<std::string> v = MaybeString(true);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "value");
  EXPECT_TRUE(v.status().ok());
  Result<std::string> e = MaybeString(false);
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(e.status().message(), "bad");
}

// ---- CompareValues ------------------------------------------------------------------

TEST(CompareValuesTest, OrdersByTypeFirst) {
  std::vector<Value> by_type = {Value{},       Value{true},          Value{int64_t{-100}},
                                Value{-1e300}, Value{std::string()}, Value{Bytes{}}};
  for (size_t i = 0; i < by_type.size(); ++i) {
    for (size_t j = 0; j < by_type.size(); ++j) {
      EXPECT_EQ(Sign(CompareValues(by_type[i], by_type[j])), Sign(int(i) - int(j)))
          << i << " vs " << j;
    }
  }
  // Type beats value: a large int is still below a small double, false is above null.
  EXPECT_LT(CompareValues(Value{std::numeric_limits<int64_t>::max()}, Value{-1.0}), 0);
  EXPECT_LT(CompareValues(Value{}, Value{false}), 0);
  EXPECT_LT(CompareValues(Value{std::string("\xff")}, Value{Bytes{""}}), 0);
}

TEST(CompareValuesTest, WithinTypes) {
  EXPECT_EQ(CompareValues(Value{}, Value{}), 0);
  EXPECT_LT(CompareValues(Value{false}, Value{true}), 0);
  EXPECT_GT(CompareValues(Value{true}, Value{false}), 0);
  EXPECT_EQ(CompareValues(Value{true}, Value{true}), 0);
  EXPECT_LT(CompareValues(Value{std::numeric_limits<int64_t>::min()}, Value{int64_t{0}}), 0);
  EXPECT_GT(CompareValues(Value{int64_t{3}}, Value{int64_t{-3}}), 0);
  EXPECT_EQ(CompareValues(Value{int64_t{7}}, Value{int64_t{7}}), 0);
  EXPECT_LT(CompareValues(Value{1.5}, Value{2.5}), 0);
  EXPECT_LT(CompareValues(Value{-2.5}, Value{-1.5}), 0);
  EXPECT_LT(CompareValues(Value{std::string("a")}, Value{std::string("ab")}), 0);
  EXPECT_LT(CompareValues(Value{std::string("ab")}, Value{std::string("b")}), 0);
  EXPECT_EQ(CompareValues(Value{std::string("ab")}, Value{std::string("ab")}), 0);
  EXPECT_LT(CompareValues(Value{Bytes{"a"}}, Value{Bytes{"b"}}), 0);
  EXPECT_EQ(CompareValues(Value{Bytes{"a"}}, Value{Bytes{"a"}}), 0);
}

TEST(CompareValuesTest, StringsAndBytesCompareAsUnsignedBytes) {
  // 0xc3 (a UTF-8 lead byte) sorts after ASCII, as in memcmp / UTF-8 code point order.
  EXPECT_LT(CompareValues(Value{std::string("z")}, Value{std::string("\xc3\xa9")}), 0);
  EXPECT_LT(CompareValues(Value{Bytes{std::string("\x7f")}}, Value{Bytes{std::string("\x80")}}), 0);
  EXPECT_LT(CompareValues(Value{Bytes{std::string("\x00", 1)}}, Value{Bytes{std::string("\x01")}}),
            0);
  EXPECT_LT(CompareValues(Value{Bytes{""}}, Value{Bytes{std::string("\x00", 1)}}), 0);
}

TEST(CompareValuesTest, DoublesFollowIeeeTotalOrder) {
  const double inf = std::numeric_limits<double>::infinity();
  const double qnan = std::numeric_limits<double>::quiet_NaN();
  const double neg_nan = -qnan;
  ASSERT_TRUE(std::signbit(neg_nan));
  const double denorm = std::numeric_limits<double>::denorm_min();
  // Ascending per totalOrder.
  std::vector<double> asc = {neg_nan, -inf,   -1e300, -1.0,  -denorm, -0.0,
                             0.0,     denorm, 1.0,    1e300, inf,     qnan};
  for (size_t i = 0; i < asc.size(); ++i) {
    for (size_t j = 0; j < asc.size(); ++j) {
      EXPECT_EQ(Sign(CompareValues(Value{asc[i]}, Value{asc[j]})), Sign(int(i) - int(j)))
          << asc[i] << " vs " << asc[j] << " (" << i << "," << j << ")";
    }
  }
}

TEST(CompareValuesTest, SignedZerosAndNaNsAreDistinctButReflexive) {
  EXPECT_FALSE(SameValue(Value{0.0}, Value{-0.0}));
  EXPECT_LT(CompareValues(Value{-0.0}, Value{0.0}), 0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(SameValue(Value{nan}, Value{nan}));
  // Two NaNs with different payloads are different values.
  double nan1 = BitsToDouble(0x7ff8000000000001ULL);
  double nan2 = BitsToDouble(0x7ff8000000000002ULL);
  ASSERT_TRUE(std::isnan(nan1) && std::isnan(nan2));
  EXPECT_FALSE(SameValue(Value{nan1}, Value{nan2}));
  EXPECT_LT(CompareValues(Value{nan1}, Value{nan2}), 0);
  // A signalling NaN sorts below the quiet NaN (smaller payload).
  double snan = BitsToDouble(0x7ff0000000000001ULL);
  EXPECT_LT(CompareValues(Value{std::numeric_limits<double>::infinity()}, Value{snan}), 0);
  EXPECT_LT(CompareValues(Value{snan}, Value{nan}), 0);
}

TEST(CompareValuesTest, IsAntisymmetricAndTransitiveOnAMixedSample) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Value> vals = {Value{},
                             Value{false},
                             Value{true},
                             Value{int64_t{-5}},
                             Value{int64_t{0}},
                             Value{int64_t{5}},
                             Value{-nan},
                             Value{-0.0},
                             Value{0.0},
                             Value{nan},
                             Value{std::string()},
                             Value{std::string("a")},
                             Value{std::string("\xc3\xa9")},
                             Value{Bytes{}},
                             Value{Bytes{std::string("\xff")}}};
  // The list is in ascending order: check it is sorted and that sort agrees.
  for (size_t i = 0; i < vals.size(); ++i) {
    EXPECT_EQ(CompareValues(vals[i], vals[i]), 0) << i;
    for (size_t j = 0; j < vals.size(); ++j) {
      EXPECT_EQ(Sign(CompareValues(vals[i], vals[j])), -Sign(CompareValues(vals[j], vals[i])));
      EXPECT_EQ(Sign(CompareValues(vals[i], vals[j])), Sign(int(i) - int(j))) << i << "," << j;
    }
  }
  std::vector<Value> shuffled(vals.rbegin(), vals.rend());
  std::sort(shuffled.begin(), shuffled.end(), ValueLess());
  for (size_t i = 0; i < vals.size(); ++i) EXPECT_TRUE(SameValue(shuffled[i], vals[i])) << i;
}

TEST(ValueTest, TypeOfAndNames) {
  EXPECT_EQ(TypeOf(Value{}), ValueType::kNull);
  EXPECT_EQ(TypeOf(Value{true}), ValueType::kBool);
  EXPECT_EQ(TypeOf(Value{int64_t{1}}), ValueType::kInt);
  EXPECT_EQ(TypeOf(Value{1.0}), ValueType::kDouble);
  EXPECT_EQ(TypeOf(Value{std::string("s")}), ValueType::kString);
  EXPECT_EQ(TypeOf(Value{Bytes{"b"}}), ValueType::kBytes);
  EXPECT_STREQ(TypeName(ValueType::kNull), "null");
  EXPECT_STREQ(TypeName(ValueType::kBool), "bool");
  EXPECT_STREQ(TypeName(ValueType::kInt), "int");
  EXPECT_STREQ(TypeName(ValueType::kDouble), "double");
  EXPECT_STREQ(TypeName(ValueType::kString), "string");
  EXPECT_STREQ(TypeName(ValueType::kBytes), "bytes");
}

TEST(ValueTest, DebugString) {
  EXPECT_EQ(DebugString(Value{}), "null");
  EXPECT_EQ(DebugString(Value{true}), "true");
  EXPECT_EQ(DebugString(Value{false}), "false");
  EXPECT_EQ(DebugString(Value{int64_t{-5}}), "-5");
  EXPECT_EQ(DebugString(Value{2.5}), "2.5");
  EXPECT_EQ(DebugString(Value{std::string("Ann")}), "\"Ann\"");
  EXPECT_EQ(DebugString(Value{Bytes{"abc"}}), "bytes[3]");
}

// ---- UTF-8 --------------------------------------------------------------------------

TEST(Utf8Test, AcceptsWellFormed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8(std::string("nul\0inside", 10)));  // NUL is valid UTF-8
  EXPECT_TRUE(IsValidUtf8("\x7f"));
  EXPECT_TRUE(IsValidUtf8("\xc2\x80"));          // U+0080, smallest 2-byte
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9"));          // é
  EXPECT_TRUE(IsValidUtf8("\xdf\xbf"));          // U+07FF
  EXPECT_TRUE(IsValidUtf8("\xe0\xa0\x80"));      // U+0800, smallest 3-byte
  EXPECT_TRUE(IsValidUtf8("\xe2\x82\xac"));      // €
  EXPECT_TRUE(IsValidUtf8("\xed\x9f\xbf"));      // U+D7FF, just below the surrogates
  EXPECT_TRUE(IsValidUtf8("\xee\x80\x80"));      // U+E000, just above the surrogates
  EXPECT_TRUE(IsValidUtf8("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(IsValidUtf8("\xf0\x90\x80\x80"));  // U+10000, smallest 4-byte
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));  // 😀
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF, the largest
  EXPECT_TRUE(IsValidUtf8("a\xc3\xa9z\xf0\x9f\x98\x80!"));
}

TEST(Utf8Test, RejectsOverlongForms) {
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));          // overlong NUL
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xc1\xbf"));          // overlong U+007F
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\x80"));      // 3-byte NUL
  EXPECT_FALSE(IsValidUtf8("\xe0\x9f\xbf"));      // 3-byte U+07FF
  EXPECT_FALSE(IsValidUtf8("\xf0\x80\x80\x80"));  // 4-byte NUL
  EXPECT_FALSE(IsValidUtf8("\xf0\x8f\xbf\xbf"));  // 4-byte U+FFFF
}

TEST(Utf8Test, RejectsSurrogates) {
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));              // U+D800
  EXPECT_FALSE(IsValidUtf8("\xed\xad\xbf"));              // U+DB7F
  EXPECT_FALSE(IsValidUtf8("\xed\xb0\x80"));              // U+DC00
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));              // U+DFFF
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\xbd\xed\xb8\x80"));  // CESU-8 surrogate pair
}

TEST(Utf8Test, RejectsBeyondU10FFFF) {
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf7\xbf\xbf\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80\x80"));      // 5-byte form
  EXPECT_FALSE(IsValidUtf8("\xfc\x84\x80\x80\x80\x80"));  // 6-byte form
  EXPECT_FALSE(IsValidUtf8("\xfe"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

TEST(Utf8Test, RejectsTruncatedSequences) {
  for (std::string full : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
    for (size_t n = 1; n < full.size(); ++n) {
      std::string cut = full.substr(0, n);
      EXPECT_FALSE(IsValidUtf8(cut)) << "prefix of length " << n;
      EXPECT_FALSE(IsValidUtf8("abc" + cut)) << "prefix of length " << n << " at the end";
      // Cut short and followed by ASCII: the continuation byte is missing.
      EXPECT_FALSE(IsValidUtf8(cut + "x")) << "prefix of length " << n << " then ASCII";
    }
  }
}

TEST(Utf8Test, TruncationIsJudgedByTheViewNotTheBuffer) {
  // The bytes after the view would complete the sequence; they must not be read.
  const std::string buf = "ab\xc3\xa9\xe2\x82\xac";
  std::string_view all(buf);
  EXPECT_TRUE(IsValidUtf8(all));
  EXPECT_FALSE(IsValidUtf8(all.substr(0, 3)));  // "ab" + lead byte of é
  EXPECT_TRUE(IsValidUtf8(all.substr(0, 4)));
  EXPECT_FALSE(IsValidUtf8(all.substr(0, 5)));
  EXPECT_FALSE(IsValidUtf8(all.substr(0, 6)));
  EXPECT_FALSE(IsValidUtf8(all.substr(3)));  // starts with a continuation byte
}

TEST(Utf8Test, RejectsStrayContinuationBytes) {
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("\xbf"));
  EXPECT_FALSE(IsValidUtf8("a\x80z"));
  EXPECT_FALSE(IsValidUtf8("\xc3\xa9\xa9"));  // one continuation too many
}

// ---- Names and values ---------------------------------------------------------------

TEST(ValidateNameTest, AcceptsOrdinaryNames) {
  EXPECT_TRUE(ValidateName("a", 10, "x").ok());
  EXPECT_TRUE(ValidateName("caf\xc3\xa9", 10, "x").ok());
  EXPECT_TRUE(ValidateName(std::string(10, 'a'), 10, "x").ok());  // exactly the limit
}

TEST(ValidateNameTest, RejectsEmptyTooLongNulAndBadUtf8) {
  auto check = [](std::string_view name) {
    Status s = ValidateName(name, 10, "thing");
    EXPECT_FALSE(s.ok()) << "accepted " << name.size() << " bytes";
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("thing"), std::string::npos) << s.message();
  };
  check("");
  check(std::string(11, 'a'));
  check(std::string("a\0b", 3));
  check(std::string("\0", 1));
  check("\xff");
  check("\xc3");
  check("\xed\xa0\x80");
}

TEST(ValidateNameTest, LimitIsInBytesNotCodePoints) {
  // Five two-byte characters = 10 bytes.
  std::string five = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
  EXPECT_TRUE(ValidateName(five, 10, "x").ok());
  EXPECT_FALSE(ValidateName(five, 9, "x").ok());
}

TEST(ValidateNameTest, SpecificLimits) {
  EXPECT_TRUE(ValidateCollection(std::string(kMaxCollectionName, 'c')).ok());
  EXPECT_FALSE(ValidateCollection(std::string(kMaxCollectionName + 1, 'c')).ok());
  EXPECT_FALSE(ValidateCollection("").ok());
  EXPECT_TRUE(ValidateRecordId(std::string(kMaxRecordId, 'r')).ok());
  EXPECT_FALSE(ValidateRecordId(std::string(kMaxRecordId + 1, 'r')).ok());
  EXPECT_FALSE(ValidateRecordId(std::string("a\0", 2)).ok());
  EXPECT_TRUE(ValidateFieldName(std::string(kMaxFieldName, 'f')).ok());
  EXPECT_FALSE(ValidateFieldName(std::string(kMaxFieldName + 1, 'f')).ok());
  EXPECT_FALSE(ValidateFieldName("").ok());
  EXPECT_FALSE(ValidateFieldName("\xc0\x80").ok());
}

TEST(ValidateNameTest, FieldNameIdIsReserved) {
  Status s = ValidateFieldName("id");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  // Only the exact name is reserved.
  EXPECT_TRUE(ValidateFieldName("ID").ok());
  EXPECT_TRUE(ValidateFieldName("Id").ok());
  EXPECT_TRUE(ValidateFieldName("id2").ok());
  EXPECT_TRUE(ValidateFieldName("_id").ok());
  EXPECT_TRUE(ValidateFieldName("i").ok());
  // Collections and records may be called "id".
  EXPECT_TRUE(ValidateCollection("id").ok());
  EXPECT_TRUE(ValidateRecordId("id").ok());
}

// Scalars are valid but for the doubles JSON cannot show (each would read as null): a
// local write refuses them. (States from peers that hold one still decode and order.)
TEST(ValidateValueTest, ScalarsAreValidButNonFiniteNumbers) {
  EXPECT_TRUE(ValidateValue(Value{}).ok());
  EXPECT_TRUE(ValidateValue(Value{true}).ok());
  EXPECT_TRUE(ValidateValue(Value{std::numeric_limits<int64_t>::min()}).ok());
  EXPECT_TRUE(ValidateValue(Value{std::numeric_limits<double>::max()}).ok());
  EXPECT_TRUE(ValidateValue(Value{-0.0}).ok());
  for (double d :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity()}) {
    const Status st = ValidateValue(Value{d});
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find("must be finite"), std::string::npos) << st.message();
  }
}

TEST(ValidateValueTest, StringsMustBeUtf8AndWithinLimit) {
  EXPECT_TRUE(ValidateValue(Value{std::string()}).ok());
  EXPECT_TRUE(ValidateValue(Value{std::string("caf\xc3\xa9")}).ok());
  EXPECT_TRUE(ValidateValue(Value{std::string("a\0b", 3)}).ok());  // NUL is fine in values
  EXPECT_TRUE(ValidateValue(Value{std::string(kMaxValueBytes, 'x')}).ok());
  Status big = ValidateValue(Value{std::string(kMaxValueBytes + 1, 'x')});
  EXPECT_EQ(big.code(), Code::kInvalidArgument);
  Status bad = ValidateValue(Value{std::string("\xc3")});
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_FALSE(ValidateValue(Value{std::string("\xed\xa0\x80")}).ok());
}

TEST(ValidateValueTest, BytesNeedNotBeUtf8ButMustBeWithinLimit) {
  EXPECT_TRUE(ValidateValue(Value{Bytes{std::string("\xff\xfe\x00", 3)}}).ok());
  EXPECT_TRUE(ValidateValue(Value{Bytes{std::string(kMaxValueBytes, '\xff')}}).ok());
  Status big = ValidateValue(Value{Bytes{std::string(kMaxValueBytes + 1, 'x')}});
  EXPECT_EQ(big.code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::engine
