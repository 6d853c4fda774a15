// Collection schemas: parsing, normalisers and checks, and the write policy on a replica.
#include "tandem/data/schema.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../integration/process.h"
#include "data_test_util.h"
#include "tandem/net/identity.h"

namespace tandem::data {
namespace {

using namespace test;

// ---- Schema parsing ------------------------------------------------------------------

std::string ParseError(const std::string& json) {
  auto s = Schema::Parse(json);
  EXPECT_FALSE(s.ok()) << "parsed: " << json;
  return s.ok() ? std::string() : s.status().message();
}

std::shared_ptr<const Schema> MustParse(const std::string& json) {
  auto s = Schema::Parse(json);
  EXPECT_TRUE(s.ok()) << json << ": " << s.status().ToString();
  return s.ok() ? s.value() : nullptr;
}

TEST(SchemaParse, AValidSchemaGivesItsRules) {
  auto s = MustParse(R"({"fields": {
      "name": {"type": "string", "required": true, "min_length": 1, "max_length": 40},
      "phone": {"type": "string", "normalize": ["trim", "phone"], "region": "us"},
      "qty": {"type": "counter", "min": 0, "max": 1000},
      "tags": {"type": "set", "items": "string"},
      "price": {"type": "double", "resolve": "max"},
      "state": {"type": "string", "enum": ["new", "paid"], "description": "for people"}},
    "additional": false, "description": "orders"})");
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->additional());
  EXPECT_EQ(s->fields().size(), 6u);
  ASSERT_NE(s->Find("phone"), nullptr);
  EXPECT_EQ(s->Find("phone")->region, "US");  // upper-cased
  EXPECT_TRUE(engine::SameValue(*s->Find("qty")->max, Value{int64_t{1000}}));
  EXPECT_EQ(s->Find("price")->resolve, Resolve::kMax);
  EXPECT_EQ(s->Find("state")->enumeration.size(), 2u);
  EXPECT_EQ(s->Find("nope"), nullptr);
  EXPECT_EQ(s->DeclaredKind("qty"), Kind::kCounter);
  EXPECT_EQ(s->DeclaredKind("tags"), Kind::kSet);
  EXPECT_EQ(s->DeclaredKind("name"), Kind::kRegister);
  EXPECT_EQ(s->DeclaredKind("nope"), std::nullopt);
  // Defaults: additional fields allowed.
  auto open = MustParse(R"({"fields": {}})");
  ASSERT_TRUE(open);
  EXPECT_TRUE(open->additional());
}

TEST(SchemaParse, ErrorsNameTheFieldAndTheRule) {
  std::string e = ParseError(R"({"fields": {"qty": {"type": "integer"}}})");
  EXPECT_TRUE(Has(e, "\"qty\"") && Has(e, "unknown type \"integer\"")) << e;

  e = ParseError(R"({"fields": {"qty": {"type": "int", "maximum": 3}}})");
  EXPECT_TRUE(Has(e, "\"qty\"") && Has(e, "unknown rule \"maximum\"")) << e;

  e = ParseError(R"({"fields": {"sku": {"type": "string", "pattern": "([A-Z]+"}}})");
  EXPECT_TRUE(Has(e, "\"sku\"") && Has(e, "pattern does not compile")) << e;

  e = ParseError(R"({"fields": {"qty": {"type": "int", "min": 5, "max": 4}}})");
  EXPECT_TRUE(Has(e, "\"qty\"") && Has(e, "min is above max")) << e;

  e = ParseError(R"({"fields": {"code": {"type": "string", "min_length": 5, "max_length": 4}}})");
  EXPECT_TRUE(Has(e, "\"code\"") && Has(e, "min_length is above max_length")) << e;

  e = ParseError(
      R"({"fields": {"tel": {"type": "string", "normalize": ["phone"], "region": "XX"}}})");
  EXPECT_TRUE(Has(e, "\"tel\"") && Has(e, "unknown region \"XX\"")) << e;

  e = ParseError(
      R"({"fields": {"tel": {"type": "string", "normalize": ["phone"], "region": "USA"}}})");
  EXPECT_TRUE(Has(e, "\"tel\"") && Has(e, "two-letter region")) << e;

  e = ParseError(R"({"fields": {"id": {"type": "string"}}})");
  EXPECT_TRUE(Has(e, "\"id\" is the record id")) << e;
}

// A schema being set must mean what it says; a stored one (set by an earlier version,
// say) is still read as it is, so that it keeps applying.
TEST(SchemaSave, ANewSchemaThatCannotMeanWhatItSaysIsRefused) {
  Db db;
  auto refused = [&](const std::string& json) {
    auto v = SaveSchema(db.replica, "c", json);
    EXPECT_FALSE(v.ok()) << json;
    return v.ok() ? std::string() : v.status().message();
  };
  EXPECT_TRUE(Has(refused("{}"), "\"fields\" is required")) << refused("{}");
  EXPECT_TRUE(
      Has(refused(R"({"fields": {}, "fields": {"a": {}}})"), "key \"fields\" appears twice"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"a": {"type": "int", "type": "string"}}})"),
                  "key \"type\" appears twice"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"n": {"type": "int", "enum": ["x"]}}})"),
                  "enum value \"x\" can never be written"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"n": {"type": "int", "min": 5, "enum": [1, 5]}}})"),
                  "enum value 1 can never be written"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"s": {"normalize": ["lower"], "enum": ["ABC"]}}})"),
                  "enum value \"ABC\" can never be written"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"s": {"normalize": ["lower"], "enum": ["abc", "ABC"]}}})"),
                  "enum value \"ABC\" can never be written (not in normal form)"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"s": {"prefer": ["not-a-device"]}}})"),
                  "\"not-a-device\" is not a device id"));
  // Rules that cannot apply to the field's type (they would be ignored).
  EXPECT_TRUE(Has(refused(R"({"fields": {"s": {"type": "string", "min": 5}}})"),
                  "min and max apply to numbers (int, double, counter), not string values"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"b": {"type": "bool", "max": 1}}})"),
                  "min and max apply to numbers"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"n": {"type": "int", "pattern": "^1"}}})"),
                  "min_length, max_length and pattern apply to strings, not int values"));
  EXPECT_TRUE(Has(refused(R"({"fields": {"t": {"type": "set", "items": "int", "max_length": 3}}})"),
                  "apply to strings"));
  // None of them was stored, and sound ones are.
  EXPECT_FALSE(LoadSchema(db.replica, "c").value().has_value());
  const std::string device = net::DeviceId(std::array<uint8_t, 32>{});
  auto v = SaveSchema(db.replica, "c",
                      R"({"fields": {"s": {"type": "string", "normalize": ["lower"], )"
                      R"("enum": ["abc"], "prefer": [")" +
                          device + R"("]}, "n": {"type": "int", "enum": [1, 2]}}})");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(SaveSchema(db.replica, "d", R"({"fields": {}})").ok());
  // Parsing what was stored stays lenient.
  EXPECT_TRUE(Schema::Parse("{}").ok());
  EXPECT_TRUE(Schema::Parse(R"({"fields": {"n": {"type": "int", "enum": ["x"]}}})").ok());
}

TEST(SchemaParse, OtherMistakesAreRefused) {
  EXPECT_TRUE(Has(ParseError("{\"fields\": "), "not valid JSON"));
  EXPECT_TRUE(Has(ParseError("[1]"), "expected a JSON object"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": [] })"), "\"fields\" must be an object"));
  EXPECT_TRUE(Has(ParseError(R"({"feilds": {}})"), "unknown key \"feilds\""));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {}, "additional": "no"})"), "additional"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": {"type": "int", "normalize": ["trim"]}}})"),
                  "normalize applies to strings"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": {"type": "string", "normalize": ["title"]}}})"),
                  "unknown normalizer"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": {"type": "string", "items": "int"}}})"),
                  "items applies to sets"));
  EXPECT_TRUE(
      Has(ParseError(R"({"fields": {"n": {"type": "set", "items": "counter"}}})"), "scalars"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": {"type": "int", "enum": []}}})"),
                  "enum must be a non-empty array"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": {"type": "counter", "resolve": "max"}}})"),
                  "counters and sets merge by design"));
  EXPECT_TRUE(
      Has(ParseError(R"({"fields": {"n": {"type": "int", "min": "0"}}})"), "min must be a number"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": {"type": "string", "max_length": -1}}})"),
                  "max_length must be a whole number"));
  EXPECT_TRUE(Has(ParseError(R"({"fields": {"n": "string"}})"), "expected an object of rules"));
}

// ---- CheckValue ----------------------------------------------------------------------

class CheckValueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = MustParse(R"({"fields": {
        "name":  {"type": "string", "normalize": ["trim"]},
        "email": {"type": "string", "normalize": ["trim", "lower"], "pattern": "^[a-z.]+@[a-z.]+$"},
        "code":  {"type": "string", "normalize": ["upper"], "min_length": 2, "max_length": 4},
        "phone": {"type": "string", "normalize": ["phone"], "region": "US"},
        "intl":  {"type": "string", "normalize": ["trim", "phone"]},
        "sku":   {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
        "state": {"type": "string", "enum": ["new", "paid"]},
        "qty":   {"type": "int", "min": 0, "max": 100},
        "price": {"type": "double", "min": 0.5},
        "flag":  {"type": "bool"},
        "blob":  {"type": "bytes"},
        "must":  {"type": "string", "required": true}},
      "additional": false})");
    ASSERT_TRUE(schema_);
  }
  // The normal form of v, or the error message prefixed with "ERROR: ".
  std::string Check(const std::string& field, Value v, Value* out = nullptr) {
    Status st = schema_->CheckValue(field, &v);
    if (out) *out = v;
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Code::kInvalidArgument);
      return "ERROR: " + st.message();
    }
    return engine::TypeOf(v) == engine::ValueType::kString ? std::get<std::string>(v)
                                                           : engine::DebugString(v);
  }
  std::shared_ptr<const Schema> schema_;
};

TEST_F(CheckValueTest, NormalisersRewriteStrings) {
  EXPECT_EQ(Check("name", S("  Ann Lee \t\n")), "Ann Lee");
  EXPECT_EQ(Check("name", S("   ")), "");
  EXPECT_EQ(Check("email", S("  Ann.Lee@Example.COM ")), "ann.lee@example.com");
  EXPECT_EQ(Check("code", S("ab")), "AB");
  // Non-ASCII letters are left alone by lower/upper (no locale surprises).
  EXPECT_EQ(Check("code", S("\xc3\xa9")), "\xc3\xa9");
}

TEST_F(CheckValueTest, PhoneNumbersBecomeE164) {
  EXPECT_EQ(Check("phone", S("(415) 555-2671")), "+14155552671");
  EXPECT_EQ(Check("phone", S("415.555.2671")), "+14155552671");
  EXPECT_EQ(Check("phone", S("+1 415 555 2671")), "+14155552671");
  std::string e = Check("phone", S("12345"));
  EXPECT_TRUE(Has(e, "ERROR: phone: \"12345\" is not a valid phone number for region US")) << e;
  e = Check("phone", S("call me"));
  EXPECT_TRUE(Has(e, "ERROR: phone:") && Has(e, "not a phone number alone")) << e;
  // What E.164 would drop is refused, not dropped: an extension, a vanity number's
  // letters, words around the number.
  for (const char* lossy : {"+1 201 555 0123 ext 5", "201-555-0123 x123", "(201) 555-0123;ext=42",
                            "Ask for Bob: 201 555 0123", "1-800-FLOWERS"}) {
    e = Check("phone", S(lossy));
    EXPECT_TRUE(Has(e, "is not a phone number alone")) << lossy << ": " << e;
  }
  // Without a region, a number needs its country code.
  e = Check("intl", S("(415) 555-2671"));
  EXPECT_TRUE(Has(e, "ERROR: intl:") && Has(e, "+country code")) << e;
  EXPECT_EQ(Check("intl", S("  +1 (415) 555-2671 ")), "+14155552671");
}

// Limits compare exactly: integers beyond 2^53 are not rounded to doubles (which would
// take 2^53 for 2^53 + 1), and an integer meets a double by value.
TEST(SchemaLimits, IntegersAreComparedExactly) {
  auto s = MustParse(R"({"fields": {
      "a": {"type": "int", "min": 9007199254740993},
      "b": {"type": "int", "max": 9223372036854775806},
      "c": {"type": "any", "min": 0.5, "max": 9007199254740992.0}}})");
  ASSERT_TRUE(s);
  auto check = [&](const std::string& f, Value v) { return s->CheckValue(f, &v); };
  EXPECT_FALSE(check("a", Value{int64_t{9007199254740992}}).ok());
  EXPECT_TRUE(check("a", Value{int64_t{9007199254740993}}).ok());
  EXPECT_TRUE(Has(check("a", Value{int64_t{9007199254740992}}).message(),
                  "9007199254740992 is below the minimum 9007199254740993"));
  EXPECT_FALSE(check("b", Value{std::numeric_limits<int64_t>::max()}).ok());
  EXPECT_TRUE(check("b", Value{int64_t{9223372036854775806}}).ok());
  EXPECT_FALSE(check("c", Value{int64_t{0}}).ok());
  EXPECT_TRUE(check("c", Value{int64_t{1}}).ok());
  EXPECT_TRUE(check("c", Value{int64_t{9007199254740992}}).ok());
  EXPECT_FALSE(check("c", Value{int64_t{9007199254740993}}).ok());
  // The comparison itself, across types and at the ends of int64.
  const Value max{std::numeric_limits<int64_t>::max()}, min{std::numeric_limits<int64_t>::min()};
  EXPECT_EQ(CompareNumbers(max, Value{0x1p63}), -1);
  EXPECT_EQ(CompareNumbers(Value{0x1p63}, max), 1);
  EXPECT_EQ(CompareNumbers(min, Value{-0x1p63}), 0);
  EXPECT_EQ(CompareNumbers(min, Value{-0x1p64}), 1);
  EXPECT_EQ(CompareNumbers(Value{int64_t{2}}, Value{2.5}), -1);
  EXPECT_EQ(CompareNumbers(Value{int64_t{-2}}, Value{-2.5}), 1);
  EXPECT_EQ(CompareNumbers(Value{int64_t{3}}, Value{3.0}), 0);
  EXPECT_EQ(CompareNumbers(Value{int64_t{9007199254740993}}, Value{9007199254740992.0}), 1);
  EXPECT_EQ(CompareNumbers(Value{1.5}, Value{2.5}), -1);
  EXPECT_EQ(CompareNumbers(Value{int64_t{5}}, Value{int64_t{5}}), 0);
  // The schema itself: a minimum above the maximum by one, beyond 2^53.
  auto bad = Schema::Parse(
      R"({"fields": {"a": {"type": "int", "min": 9007199254740993, "max": 9007199254740992}}})");
  EXPECT_FALSE(bad.ok());
}

TEST_F(CheckValueTest, RefusalsNameTheFieldAndTheRule) {
  std::string e = Check("sku", S("abc-12"));
  EXPECT_TRUE(Has(e, "ERROR: sku: \"abc-12\" does not match the pattern")) << e;
  EXPECT_EQ(Check("sku", S("ABC-12")), "ABC-12");
  e = Check("state", S("shipped"));
  EXPECT_TRUE(Has(e, "ERROR: state: \"shipped\" is not one of \"new\", \"paid\"")) << e;
  EXPECT_EQ(Check("state", S("paid")), "paid");
  e = Check("qty", I(-1));
  EXPECT_TRUE(Has(e, "ERROR: qty: -1 is below the minimum")) << e;
  e = Check("qty", I(101));
  EXPECT_TRUE(Has(e, "ERROR: qty: 101 is above the maximum")) << e;
  EXPECT_EQ(Check("qty", I(100)), "100");
  EXPECT_EQ(Check("qty", I(0)), "0");
  e = Check("price", D(0.25));
  EXPECT_TRUE(Has(e, "ERROR: price:") && Has(e, "below the minimum")) << e;
  e = Check("code", S("a"));
  EXPECT_TRUE(Has(e, "ERROR: code: shorter than min_length 2")) << e;
  e = Check("code", S("abcde"));
  EXPECT_TRUE(Has(e, "ERROR: code: longer than max_length 4")) << e;
  // The normal form is what is checked: upper-cased, "abcd" fits.
  EXPECT_EQ(Check("code", S("abcd")), "ABCD");
  // So is the email's pattern (lower-case letters only) after lower.
  EXPECT_EQ(Check("email", S("A@B.C")), "a@b.c");
  e = Check("email", S("a b@c"));
  EXPECT_TRUE(Has(e, "ERROR: email:") && Has(e, "does not match the pattern")) << e;
}

TEST_F(CheckValueTest, TypesNullsAndUnknownFields) {
  std::string e = Check("qty", S("5"));
  EXPECT_TRUE(Has(e, "ERROR: qty: expected int, got")) << e;
  e = Check("qty", D(5.5));
  EXPECT_TRUE(Has(e, "ERROR: qty: expected int")) << e;
  e = Check("flag", I(1));
  EXPECT_TRUE(Has(e, "ERROR: flag: expected bool")) << e;
  e = Check("blob", S("AAEC"));
  EXPECT_TRUE(Has(e, "ERROR: blob: expected bytes")) << e;
  EXPECT_FALSE(Has(Check("blob", Value{Bytes{"\x01"}}), "ERROR"));
  // A double field takes an integer as a double.
  Value v;
  EXPECT_FALSE(Has(Check("price", I(5), &v), "ERROR"));
  EXPECT_TRUE(engine::SameValue(v, D(5.0)));
  // Null: fine unless required.
  EXPECT_FALSE(Has(Check("qty", Value{}), "ERROR"));
  e = Check("must", Value{});
  EXPECT_TRUE(Has(e, "ERROR: must: required")) << e;
  // additional: false
  e = Check("other", S("x"));
  EXPECT_TRUE(Has(e, "ERROR: other: not a field of this collection's schema")) << e;
}

TEST(CheckValue, AWholeNumberInTheEnumOfADoubleFieldIsAccepted) {
  // A double field takes integers as doubles (5 -> 5.0); its enum, written in JSON as
  // [1, 2.5], must then accept 1 (and 1.0), or no value equal to 1 can ever be stored.
  auto s = MustParse(R"({"fields": {"size": {"type": "double", "enum": [1, 2.5]}}})");
  ASSERT_TRUE(s);
  Value half = D(2.5);
  EXPECT_TRUE(s->CheckValue("size", &half).ok());
  Value one = I(1), one_d = D(1.0);
  Status st = s->CheckValue("size", &one);
  Status st_d = s->CheckValue("size", &one_d);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE(st_d.ok()) << st_d.message();
  Value three = D(3.0);
  EXPECT_FALSE(s->CheckValue("size", &three).ok());
}

// ---- The policy on a replica ------------------------------------------------------

constexpr char kPeople[] = R"({"fields": {
    "name":  {"type": "string", "required": true, "normalize": ["trim"]},
    "email": {"type": "string", "normalize": ["trim", "lower"], "pattern": "^[^@ ]+@[^@ ]+$"},
    "phone": {"type": "string", "normalize": ["phone"], "region": "US"},
    "qty":   {"type": "counter", "min": 0, "max": 10},
    "tags":  {"type": "set", "items": "string", "normalize": ["trim", "lower"]},
    "price": {"type": "double", "min": 0}}})";

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override { SaveOrDie(r(), "people", kPeople); }
  Replica& r() { return db_.replica; }
  Db db_;
};

TEST_F(PolicyTest, ARefusedWriteAbortsTheWholeBatch) {
  const auto before = Vv(r());
  Status st = r().Write([&](engine::Batch& b) {
    TANDEM_RETURN_IF_ERROR(b.Put("people", "p0", "name", S("Zed")));
    TANDEM_RETURN_IF_ERROR(b.Put("people", "p1", "name", S("Ann")));
    return b.Put("people", "p1", "email", S("not an email"));
  });
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "email")) << st.message();
  EXPECT_EQ(r().Get("people", "p0").status().code(), Code::kNotFound);
  EXPECT_EQ(r().Get("people", "p1").status().code(), Code::kNotFound);
  EXPECT_EQ(Vv(r()), before);
  EXPECT_TRUE(ScanAll(r(), "people").empty());

  // The same with the convenience Put: one bad field, nothing written.
  st = r().Put("people", "p2", {{"name", S("Bo")}, {"phone", S("555")}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "phone")) << st.message();
  EXPECT_EQ(r().Get("people", "p2").status().code(), Code::kNotFound);
  EXPECT_EQ(Vv(r()), before);
}

TEST_F(PolicyTest, ARecordLevelRefusalAlsoAbortsTheBatch) {
  const auto before = Vv(r());
  // p1 is fine; p2 is new and has no name: refused when the batch finishes.
  Status st = r().Write([&](engine::Batch& b) {
    TANDEM_RETURN_IF_ERROR(b.Put("people", "p1", "name", S("Ann")));
    return b.Put("people", "p2", "email", S("x@y"));
  });
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "p2: name is required")) << st.message();
  EXPECT_TRUE(ScanAll(r(), "people").empty());
  EXPECT_EQ(Vv(r()), before);
}

TEST_F(PolicyTest, ValidWritesAreStoredInNormalForm) {
  ASSERT_TRUE(r().Put("people", "p1",
                      {{"name", S("  Ann  ")},
                       {"email", S(" Ann@Example.COM ")},
                       {"phone", S("(415) 555-2671")},
                       {"price", I(5)}})
                  .ok());
  Record rec = Get(r(), "people", "p1");
  EXPECT_TRUE(engine::SameValue(rec.fields["name"].scalar, S("Ann")));
  EXPECT_TRUE(engine::SameValue(rec.fields["email"].scalar, S("ann@example.com")));
  EXPECT_TRUE(engine::SameValue(rec.fields["phone"].scalar, S("+14155552671")));
  EXPECT_TRUE(engine::SameValue(rec.fields["price"].scalar, D(5.0)));
  // Later writes to an existing record need not repeat the required field.
  ASSERT_TRUE(r().Put("people", "p1", {{"email", S("b@c")}}).ok());
  EXPECT_TRUE(engine::SameValue(Get(r(), "people", "p1").fields["email"].scalar, S("b@c")));
  // Fields the schema does not name are free (additional defaults to true).
  ASSERT_TRUE(r().Put("people", "p1", {{"note", I(7)}}).ok());
}

TEST_F(PolicyTest, RequiredFieldsOnNewRecordsAndNulls) {
  Status st = r().Put("people", "p1", {{"email", S("a@b")}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "name is required")) << st.message();
  st = r().Put("people", "p1", {{"name", Value{}}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "name")) << st.message();
  EXPECT_EQ(r().Get("people", "p1").status().code(), Code::kNotFound);
  // Deleting a record is never checked.
  ASSERT_TRUE(r().Put("people", "p1", {{"name", S("Ann")}}).ok());
  EXPECT_TRUE(r().Delete("people", "p1").ok());
}

TEST_F(PolicyTest, CountersTakeIncrOnlyAndKeepTheirRange) {
  ASSERT_TRUE(r().Put("people", "p1", {{"name", S("Ann")}}).ok());
  Status st = r().Put("people", "p1", {{"qty", I(5)}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "qty: a counter")) << st.message();
  st = r().Add("people", "p1", "qty", I(1));
  EXPECT_TRUE(Has(st.message(), "qty: a counter field, not a set")) << st.message();
  st = r().Incr("people", "p1", "name", 1);
  EXPECT_TRUE(Has(st.message(), "name: a string field, not a counter")) << st.message();

  ASSERT_TRUE(r().Incr("people", "p1", "qty", 5).ok());
  const auto before = Vv(r());
  st = r().Incr("people", "p1", "qty", -6);  // would be -1
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "qty: the count would be -1, below the minimum 0")) << st.message();
  st = r().Incr("people", "p1", "qty", 6);  // would be 11
  EXPECT_TRUE(Has(st.message(), "qty: the count would be 11, above the maximum 10"))
      << st.message();
  EXPECT_EQ(Vv(r()), before);
  auto q = ReadField(r(), "people", "p1", "qty");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->kind, Kind::kCounter);
  EXPECT_EQ(q->count, 5);
  // Within the range: fine, down to the minimum exactly.
  ASSERT_TRUE(r().Incr("people", "p1", "qty", -5).ok());
  EXPECT_EQ(CountOf(r(), "people", "p1", "qty"), 0);
  // Several increments in one batch are judged by the result.
  ASSERT_TRUE(r().Write([&](engine::Batch& b) {
                   TANDEM_RETURN_IF_ERROR(b.Incr("people", "p1", "qty", -1));
                   return b.Incr("people", "p1", "qty", 3);
                 })
                  .ok());
  EXPECT_EQ(CountOf(r(), "people", "p1", "qty"), 2);
}

TEST_F(PolicyTest, SetElementsAreNormalisedAndBadOnesCanBeRemoved) {
  // Elements stored before the schema existed: one of the wrong type.
  ASSERT_TRUE(r().Put("people", "p1", {{"name", S("Ann")}}).ok());
  ASSERT_TRUE(SaveSchema(r(), "people", R"({"fields": {}})").ok());
  ASSERT_TRUE(r().Add("people", "p1", "tags", I(5)).ok());
  SaveOrDie(r(), "people", kPeople);

  ASSERT_TRUE(r().Add("people", "p1", "tags", S("  Red ")).ok());
  Status st = r().Add("people", "p1", "tags", I(6));
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(st.message(), "tags: expected a set of string")) << st.message();
  st = r().Put("people", "p1", {{"tags", S("red")}});
  EXPECT_TRUE(Has(st.message(), "tags: a set")) << st.message();
  auto tags = ReadField(r(), "people", "p1", "tags");
  ASSERT_TRUE(tags);
  ASSERT_EQ(tags->kind, Kind::kSet);
  ASSERT_EQ(tags->set.size(), 2u);
  EXPECT_TRUE(engine::SameValue(tags->set[0], I(5)));
  EXPECT_TRUE(engine::SameValue(tags->set[1], S("red")));

  // Removing the bad element is allowed; removing names the element as stored, so
  // another spelling of it removes nothing.
  ASSERT_TRUE(r().Remove("people", "p1", "tags", I(5)).ok());
  ASSERT_TRUE(r().Remove("people", "p1", "tags", S(" RED")).ok());
  tags = ReadField(r(), "people", "p1", "tags");
  ASSERT_TRUE(tags);
  ASSERT_EQ(tags->set.size(), 1u);
  ASSERT_TRUE(r().Remove("people", "p1", "tags", S("red")).ok());
  tags = ReadField(r(), "people", "p1", "tags");
  ASSERT_TRUE(tags);
  EXPECT_EQ(tags->kind, Kind::kSet);
  EXPECT_TRUE(tags->set.empty());
}

TEST_F(PolicyTest, AnElementNotInNormalFormCanBeRemoved) {
  // An element written before the schema (or by a device without it) that is not in
  // the normal form is a bad element too: removing it by its exact value must work.
  ASSERT_TRUE(SaveSchema(r(), "people", R"({"fields": {}})").ok());
  ASSERT_TRUE(r().Put("people", "p1", {{"name", S("Ann")}}).ok());
  ASSERT_TRUE(r().Add("people", "p1", "tags", S("RED")).ok());
  SaveOrDie(r(), "people", kPeople);
  ASSERT_TRUE(r().Remove("people", "p1", "tags", S("RED")).ok());
  auto tags = ReadField(r(), "people", "p1", "tags");
  ASSERT_TRUE(tags);
  EXPECT_TRUE(tags->set.empty());
}

TEST_F(PolicyTest, ASchemaChangedLaterAppliesToTheNextWrite) {
  constexpr char kV1[] = R"({"fields": {"price": {"type": "double", "max": 10}}})";
  constexpr char kV2[] = R"({"fields": {"price": {"type": "double", "max": 20}}})";
  auto v = SaveSchema(r(), "shop", kV1);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 1);
  Status st = r().Put("shop", "s1", {{"price", D(11)}});
  EXPECT_TRUE(Has(st.message(), "price: 11.0 is above the maximum 10")) << st.message();
  v = SaveSchema(r(), "shop", kV2);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 2);
  EXPECT_TRUE(r().Put("shop", "s1", {{"price", D(11)}}).ok());
  st = r().Put("shop", "s1", {{"price", D(21)}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  // Back to the first text (the cache must compare texts, not versions).
  v = SaveSchema(r(), "shop", kV1);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 3);
  st = r().Put("shop", "s1", {{"price", D(12)}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << "schema v3 (max 10) not applied";

  auto stored = LoadSchema(r(), "shop");
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->version, 3);
  EXPECT_EQ((*stored)->text, kV1);
  // Each version stays readable.
  Record rec = Get(r(), kSchemasCollection, "shop");
  EXPECT_TRUE(engine::SameValue(rec.fields["v2"].scalar, S(kV2)));
  // A collection without a schema, and a bad schema: refused, nothing stored.
  auto none = LoadSchema(r(), "other");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(SaveSchema(r(), "shop", "{").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(LoadSchema(r(), "shop").value()->version, 3);
}

TEST(Policy, ASchemaThatArrivesBySyncAppliesAtOnce) {
  Db a(1), b(2);
  auto sync = [&] {
    auto page = a.replica.CollectDeltas(0, 1 << 20, nullptr);
    ASSERT_TRUE(page.ok());
    ASSERT_TRUE(b.replica.ApplyDeltas(page->deltas).ok());
  };
  ASSERT_TRUE(b.replica.Put("inv", "i1", {{"qty", I(-3)}}).ok());
  SaveOrDie(a.replica, "inv", R"({"fields": {"qty": {"type": "int", "min": 0}}})");
  sync();
  Status st = b.replica.Put("inv", "i1", {{"qty", I(-4)}});
  EXPECT_TRUE(Has(st.message(), "qty: -4 is below the minimum 0")) << st.message();
  SaveOrDie(a.replica, "inv", R"({"fields": {"qty": {"type": "int", "min": -10}}})");
  sync();
  EXPECT_TRUE(b.replica.Put("inv", "i1", {{"qty", I(-4)}}).ok());
}

TEST(Policy, ResolveRulesPickTheSameWinnerOnEveryReplica) {
  Db a(1), b(2);
  SaveOrDie(a.replica, "shop", R"({"fields": {"price": {"type": "double", "resolve": "min"},
                                              "best": {"type": "int", "resolve": "max"}}})");
  auto exchange = [](Db& from, Db& to) {
    auto page = from.replica.CollectDeltas(0, 1 << 20, nullptr);
    ASSERT_TRUE(page.ok());
    ASSERT_TRUE(to.replica.ApplyDeltas(page->deltas).ok());
  };
  exchange(a, b);
  // Concurrent writes; a's are the later ones, so "latest" would pick a's values.
  ASSERT_TRUE(
      b.replica.Put("shop", "s1", {{"price", D(7.5)}, {"best", I(5)}, {"plain", I(1)}}).ok());
  *a.clock = 1'000'000;
  ASSERT_TRUE(a.replica.Put("shop", "s1", {{"price", I(9)}, {"best", I(1)}, {"plain", I(2)}}).ok());
  exchange(a, b);
  exchange(b, a);
  for (Db* d : {&a, &b}) {
    Record r = Get(d->replica, "shop", "s1");
    EXPECT_TRUE(engine::SameValue(r.fields["plain"].scalar, I(2)));  // no rule: the latest
    EXPECT_TRUE(engine::SameValue(r.fields["price"].scalar, D(7.5)));
    EXPECT_TRUE(engine::SameValue(r.fields["best"].scalar, I(5)));
    auto conflicts = d->replica.Conflicts("shop", "s1");
    ASSERT_TRUE(conflicts.ok());
    for (const auto& [field, sibs] : *conflicts) {
      ASSERT_FALSE(sibs.empty());
      EXPECT_TRUE(sibs[0].winner) << field;
      if (field == "price") {
        EXPECT_TRUE(engine::SameValue(sibs[0].value, D(7.5)));
      }
    }
  }
}

TEST(Policy, TheStorageReplicaTakesThePolicyToo) {
  testing::TempDir tmp;
  auto r = storage::CreateReplica(tmp / "db");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  (*r)->SetWritePolicy(std::make_shared<SchemaPolicy>());
  SaveOrDie(**r, "people", kPeople);
  const auto before = Vv(**r);
  EXPECT_EQ((*r)->Put("people", "p1", {{"name", S("Ann")}, {"qty", I(1)}}).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Vv(**r), before);
  ASSERT_TRUE((*r)->Put("people", "p1", {{"name", S(" Ann ")}}).ok());
  EXPECT_TRUE(engine::SameValue(Get(**r, "people", "p1").fields["name"].scalar, S("Ann")));
}

}  // namespace
}  // namespace tandem::data
