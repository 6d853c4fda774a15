// Collection schemas (parsing, normalisers, checks, the write policy on a replica) and
// import/export (JSON lines, CSV): round trips, RFC 4180, bad rows, strict mode.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../../integration/process.h"
#include "tandem/bindings/json.h"
#include "tandem/data/etl.h"
#include "tandem/data/schema.h"
#include "tandem/engine/memory_store.h"
#include "tandem/net/identity.h"
#include "tandem/storage/replica.h"

namespace tandem::engine {
// Readable failures for record comparisons: the canonical JSON and every field's kind.
void PrintTo(const Record& r, std::ostream* os) {
  *os << bindings::Canonical(bindings::RecordToJson(r)) << " kinds{";
  for (const auto& [name, f] : r.fields) *os << name << ":" << KindName(f.kind) << " ";
  *os << "}";
}
}  // namespace tandem::engine

namespace tandem::data {
void PrintTo(Format f, std::ostream* os) { *os << (f == Format::kCsv ? "csv" : "jsonl"); }

namespace {

using engine::Bytes;
using engine::Kind;
using engine::Record;
using engine::Replica;
using engine::Value;

Value S(const std::string& s) { return Value{s}; }
Value I(int64_t i) { return Value{i}; }
Value D(double d) { return Value{d}; }

bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- Replicas --------------------------------------------------------------------

engine::ReplicaId Rid(uint8_t n) {
  engine::ReplicaId id;
  id.bytes[0] = 0xd4;
  id.bytes[15] = n;
  return id;
}

// A replica over a MemoryStore with the schema policy installed, as devices have it.
struct Db {
  explicit Db(uint8_t n = 1)
      : clock(std::make_shared<uint64_t>(1000)),
        replica(
            std::make_unique<engine::MemoryStore>(Rid(n)), [c = clock] { return ++*c; },
            storage::Blake2b256Parts) {
    replica.SetWritePolicy(std::make_shared<SchemaPolicy>());
  }
  std::shared_ptr<uint64_t> clock;
  Replica replica;
};

std::vector<Record> ScanAll(Replica& r, const std::string& coll) {
  std::vector<Record> out;
  Status st = r.Scan(coll, "", [&](const Record& rec) {
    out.push_back(rec);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

engine::VersionVector Vv(Replica& r) {
  auto m = r.Meta();
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? m->vv : engine::VersionVector{};
}

Record Get(Replica& r, const std::string& coll, const std::string& id) {
  auto rec = r.Get(coll, id);
  EXPECT_TRUE(rec.ok()) << coll << "/" << id << ": " << rec.status().ToString();
  return rec.ok() ? *rec : Record{};
}

// The reading of one field, straight from the stored state (kind included).
std::optional<engine::FieldValue> ReadField(Replica& r, const std::string& coll,
                                            const std::string& id, const std::string& field) {
  auto st = r.GetState(coll, id);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return std::nullopt;
  auto it = st->fields.find(field);
  if (it == st->fields.end()) return std::nullopt;
  return engine::Read(it->second);
}

// A counter field's count; INT64_MIN when the field is missing or not a counter.
int64_t CountOf(Replica& r, const std::string& coll, const std::string& id,
                const std::string& field) {
  auto f = ReadField(r, coll, id, field);
  EXPECT_TRUE(f && f->kind == Kind::kCounter) << coll << "/" << id << "." << field;
  return f && f->kind == Kind::kCounter ? f->count : std::numeric_limits<int64_t>::min();
}

void SaveOrDie(Replica& r, const std::string& coll, const std::string& json) {
  auto v = SaveSchema(r, coll, json);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
}

// ---- Inputs ------------------------------------------------------------------------

// A regular (seekable) file holding `text`, positioned at its start.
FILE* FileWith(const std::string& text) {
  FILE* f = std::tmpfile();
  if (!f) abort();
  if (std::fwrite(text.data(), 1, text.size(), f) != text.size()) abort();
  std::rewind(f);
  return f;
}

// The read end of a pipe that a thread fills with `text` and then closes.
class PipeInput {
 public:
  explicit PipeInput(std::string text) {
    ::signal(SIGPIPE, SIG_IGN);  // the reader may stop early (a fatal error)
    int fds[2];
    if (::pipe(fds) != 0) abort();
    read_ = ::fdopen(fds[0], "rb");
    if (!read_) abort();
    writer_ = std::thread([fd = fds[1], t = std::move(text)] {
      size_t off = 0;
      while (off < t.size()) {
        ssize_t n = ::write(fd, t.data() + off, t.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      ::close(fd);
    });
  }
  ~PipeInput() {
    std::fclose(read_);
    writer_.join();
  }
  FILE* file() const { return read_; }

 private:
  FILE* read_ = nullptr;
  std::thread writer_;
};

enum class Source { kFile, kPipe };
void PrintTo(Source s, std::ostream* os) { *os << (s == Source::kPipe ? "pipe" : "file"); }

struct Imported {
  Result<ImportReport> result = Status::Invalid("not run");
  std::vector<std::pair<uint64_t, std::string>> bad;  // (line, reason)
  bool ok() const { return result.ok(); }
  const ImportReport& report() const { return result.value(); }
  std::string error() const { return result.status().message(); }
  std::vector<uint64_t> bad_lines() const {
    std::vector<uint64_t> out;
    for (const auto& b : bad) out.push_back(b.first);
    return out;
  }
  std::string bad_reason(uint64_t line) const {
    for (const auto& b : bad)
      if (b.first == line) return b.second;
    return "(no bad row at line " + std::to_string(line) + ")";
  }
};

Imported ImportText(Replica& r, const std::string& text, ImportOptions o,
                    Source source = Source::kFile) {
  Imported out;
  o.bad_row = [&](uint64_t line, const std::string& why) { out.bad.emplace_back(line, why); };
  if (source == Source::kFile) {
    FILE* f = FileWith(text);
    out.result = Import(r, f, o);
    std::fclose(f);
  } else {
    PipeInput p(text);
    out.result = Import(r, p.file(), o);
  }
  return out;
}

ImportOptions Jsonl(const std::string& coll = "items") {
  ImportOptions o;
  o.collection = coll;
  o.format = Format::kJsonl;
  return o;
}
ImportOptions Csv(const std::string& coll = "items") {
  ImportOptions o;
  o.collection = coll;
  o.format = Format::kCsv;
  return o;
}

std::string ExportText(Replica& r, const std::string& coll, Format format) {
  FILE* f = std::tmpfile();
  if (!f) abort();
  auto n = Export(r, coll, format, f);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  std::string text;
  std::rewind(f);
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
  std::fclose(f);
  return text;
}

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
  EXPECT_EQ(s->Find("qty")->max, 1000.0);
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
  EXPECT_TRUE(Has(e, "ERROR: phone:") && Has(e, "not a valid phone number")) << e;
  // Without a region, a number needs its country code.
  e = Check("intl", S("(415) 555-2671"));
  EXPECT_TRUE(Has(e, "ERROR: intl:") && Has(e, "+country code")) << e;
  EXPECT_EQ(Check("intl", S("  +1 (415) 555-2671 ")), "+14155552671");
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
  EXPECT_TRUE(Has(st.message(), "price: 11.0 is above the maximum 10.0")) << st.message();
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

// ---- Import and export: round trips ---------------------------------------------------

// Every kind of value, and strings that would read as something else.
void FillEverything(Replica& r) {
  const std::vector<std::pair<std::string, Value>> fields = {
      {"name", S("Ann")},
      {"s42", S("42")},
      {"zip", S("02134")},
      {"neg_text", S("-7")},
      {"float_text", S("2.50")},
      {"truth", S("true")},
      {"nul", S("null")},
      {"arr_text", S("[1,2]")},
      {"obj_text", S("{\"$counter\":1}")},
      {"quoted_text", S("\"q\"")},
      {"spaced_num", S(" 42 ")},
      {"empty", S("")},
      {"comma", S("a,b")},
      {"quote", S("say \"hi\", then \"\"bye\"\"")},
      {"newline", S("line1\nline2")},
      {"crlf", S("x\r\ny\r")},
      {"lead_space", S("  padded  ")},
      {"uni", S("h\xc3\xa9llo \xe2\x86\x92 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89")},
      {"n", I(5)},
      {"big", I(std::numeric_limits<int64_t>::max())},
      {"small", I(std::numeric_limits<int64_t>::min())},
      {"d", D(2.5)},
      {"whole", D(5.0)},
      {"tiny", D(1e-7)},
      {"negzero", D(-0.0)},
      {"tenth", D(0.1)},
      {"b", Value{true}},
      {"z", Value{}},
      {"raw", Value{Bytes{std::string("\x00\x01\x02\xff", 4)}}},
      {"noraw", Value{Bytes{""}}},
      {"odd, \"name\"", S("odd field name")},
  };
  ASSERT_TRUE(r.Put("items", "r1", fields).ok());
  ASSERT_TRUE(r.Incr("items", "r1", "stock", 3).ok());
  for (const Value& e : {S("red"), I(3), S("02134"), S("a,b"), Value{Bytes{"\x01"}}})
    ASSERT_TRUE(r.Add("items", "r1", "tags", e).ok());

  ASSERT_TRUE(r.Put("items", "r2", {{"name", S("Bob")}}).ok());
  ASSERT_TRUE(r.Incr("items", "r2", "stock", -15).ok());
  ASSERT_TRUE(r.Incr("items", "r2", "zero", 0).ok());
  ASSERT_TRUE(r.Add("items", "r2", "tags", S("gone")).ok());
  ASSERT_TRUE(r.Remove("items", "r2", "tags", S("gone")).ok());  // an empty set

  ASSERT_TRUE(r.Put("items", "r,3 \"q\"", {{"n", I(1)}}).ok());
  ASSERT_TRUE(r.Put("items", "\xc3\xa9t\xc3\xa9", {{"n", I(2)}}).ok());
  ASSERT_TRUE(r.Put("items", "42", {{"n", I(3)}}).ok());
  ASSERT_TRUE(r.Put("items", "multi\nline", {{"empty", S("")}}).ok());
  // A deleted record is not exported.
  ASSERT_TRUE(r.Put("items", "deleted", {{"n", I(4)}}).ok());
  ASSERT_TRUE(r.Delete("items", "deleted").ok());
}

class RoundTrip : public ::testing::TestWithParam<Format> {};

TEST_P(RoundTrip, ExportThenImportGivesTheSameRecords) {
  Db a(1), b(2);
  FillEverything(a.replica);
  const std::string text = ExportText(a.replica, "items", GetParam());
  ASSERT_FALSE(text.empty());
  ImportOptions o = GetParam() == Format::kCsv ? Csv() : Jsonl();
  auto got = ImportText(b.replica, text, o);
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad.empty()) << got.bad[0].first << ": " << got.bad[0].second << "\n" << text;
  EXPECT_EQ(got.report().rows, 6u);
  EXPECT_EQ(got.report().rows_imported, 6u);
  EXPECT_EQ(got.report().bad_rows, 0u);

  const auto want = ScanAll(a.replica, "items");
  ASSERT_EQ(want.size(), 6u);
  EXPECT_EQ(ScanAll(b.replica, "items"), want) << text;
  // Counters are counters (not numbers), sets are sets, from the stored state.
  auto stock = ReadField(b.replica, "items", "r2", "stock");
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->kind, Kind::kCounter);
  EXPECT_EQ(stock->count, -15);
  auto zero = ReadField(b.replica, "items", "r2", "zero");
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->kind, Kind::kCounter);
  auto tags = ReadField(b.replica, "items", "r2", "tags");
  ASSERT_TRUE(tags);
  EXPECT_EQ(tags->kind, Kind::kSet);
  EXPECT_TRUE(tags->set.empty());
  auto s42 = ReadField(b.replica, "items", "r1", "s42");
  ASSERT_TRUE(s42);
  EXPECT_EQ(engine::TypeOf(s42->scalar), engine::ValueType::kString);

  // The export of the copy is the same text, and importing it again writes nothing.
  EXPECT_EQ(ExportText(b.replica, "items", GetParam()), text);
  auto again = ImportText(b.replica, text, o);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(again.report().rows_imported, 6u);
  EXPECT_EQ(again.report().fields_written, 0u);
  // And into the source replica itself: nothing either.
  auto self = ImportText(a.replica, text, o);
  ASSERT_TRUE(self.ok()) << self.error();
  EXPECT_EQ(self.report().fields_written, 0u);
}

// A schema makes export write declared fields plainly (strings unquoted, counters as
// numbers, bytes as base64 in CSV); import reads them back by the same schema.
TEST_P(RoundTrip, UnderASchemaTheDeclaredFormsRoundTrip) {
  constexpr char kSchema[] = R"({"fields": {
      "name": {"type": "string"}, "zip": {"type": "string"}, "s42": {"type": "string"},
      "stock": {"type": "counter"}, "raw": {"type": "bytes"}, "tags": {"type": "set"},
      "d": {"type": "double"}, "n": {"type": "int"}}})";
  Db a(1), b(2);
  SaveOrDie(a.replica, "items", kSchema);
  SaveOrDie(b.replica, "items", kSchema);
  ASSERT_TRUE(a.replica
                  .Put("items", "r1",
                       {{"name", S("[not a list]")},
                        {"zip", S("02134")},
                        {"s42", S("42")},
                        {"raw", Value{Bytes{std::string("\xff\x00", 2)}}},
                        {"d", D(3.0)},
                        {"n", I(-2)},
                        {"free", S("123")}})
                  .ok());
  ASSERT_TRUE(a.replica.Incr("items", "r1", "stock", 7).ok());
  ASSERT_TRUE(a.replica.Add("items", "r1", "tags", S("x")).ok());
  ASSERT_TRUE(a.replica.Put("items", "r2", {{"name", S("null")}, {"d", D(0.5)}}).ok());
  const std::string text = ExportText(a.replica, "items", GetParam());
  if (GetParam() == Format::kCsv) {
    // Declared fields are plain: the counter's count, the string as it is.
    EXPECT_TRUE(Has(text, ",02134,")) << text;
    EXPECT_TRUE(Has(text, ",7,")) << text;
  } else {
    EXPECT_TRUE(Has(text, "\"stock\":7")) << text;
  }
  auto got = ImportText(b.replica, text, GetParam() == Format::kCsv ? Csv() : Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad.empty()) << got.bad[0].second << "\n" << text;
  EXPECT_EQ(ScanAll(b.replica, "items"), ScanAll(a.replica, "items")) << text;
  auto stock = ReadField(b.replica, "items", "r1", "stock");
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->kind, Kind::kCounter);
  EXPECT_EQ(stock->count, 7);
}

TEST_P(RoundTrip, EmptyValuesOfDeclaredStringsAndBytesSurvive) {
  constexpr char kSchema[] =
      R"({"fields": {"note": {"type": "string"}, "blob": {"type": "bytes"}}})";
  Db a(1), b(2);
  SaveOrDie(a.replica, "items", kSchema);
  SaveOrDie(b.replica, "items", kSchema);
  ASSERT_TRUE(a.replica.Put("items", "r1", {{"note", S("")}, {"blob", Value{Bytes{""}}}}).ok());
  const std::string text = ExportText(a.replica, "items", GetParam());
  auto got = ImportText(b.replica, text, GetParam() == Format::kCsv ? Csv() : Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  auto have = ScanAll(b.replica, "items");
  EXPECT_EQ(have, ScanAll(a.replica, "items")) << text;
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip, ::testing::Values(Format::kJsonl, Format::kCsv),
                         [](const auto& param_info) {
                           return std::string(param_info.param == Format::kCsv ? "Csv" : "Jsonl");
                         });

TEST(Export, WritesIdFirstInIdOrderAndCountsRecords) {
  Db a;
  ASSERT_TRUE(a.replica.Put("items", "b", {{"x", I(2)}}).ok());
  ASSERT_TRUE(a.replica.Put("items", "a", {{"y", S("t")}, {"x", I(1)}}).ok());
  ASSERT_TRUE(a.replica.Incr("items", "a", "c", 4).ok());
  EXPECT_EQ(ExportText(a.replica, "items", Format::kJsonl),
            "{\"id\":\"a\",\"c\":{\"$counter\":4},\"x\":1,\"y\":\"t\"}\n"
            "{\"id\":\"b\",\"x\":2}\n");
  EXPECT_EQ(ExportText(a.replica, "items", Format::kCsv),
            "id,c,x,y\n"
            "a,\"{\"\"$counter\"\":4}\",1,t\n"
            "b,,2,\n");
  FILE* f = std::tmpfile();
  auto n = Export(a.replica, "items", Format::kCsv, f);
  std::fclose(f);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(ExportText(a.replica, "empty", Format::kJsonl), "");
  EXPECT_EQ(ExportText(a.replica, "empty", Format::kCsv), "id\n");
}

TEST(Formats, ByNameAndByExtension) {
  EXPECT_EQ(ParseFormat("csv").value(), Format::kCsv);
  EXPECT_EQ(ParseFormat("jsonl").value(), Format::kJsonl);
  auto bad = ParseFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Has(bad.status().message(), "unknown format \"xml\"")) << bad.status().message();
  EXPECT_EQ(FormatOfPath("a/b.csv"), Format::kCsv);
  EXPECT_EQ(FormatOfPath("b.ndjson"), Format::kJsonl);
  EXPECT_EQ(FormatOfPath("b.jsonl"), Format::kJsonl);
  EXPECT_EQ(FormatOfPath("b.txt"), std::nullopt);
  EXPECT_EQ(FormatOfPath(".csv"), std::nullopt);
}

// ---- CSV (RFC 4180) -----------------------------------------------------------------------

TEST(ImportCsv, QuotingCrlfAndAByteOrderMark) {
  Db db;
  const std::string text =
      "\xEF\xBB\xBF"
      "id,name,note,qty\r\n"
      "1,\"Smith, Ann\",\"she said \"\"hi\"\"\",42\r\n"
      "2,Bob,\"two\r\nlines\",02134\r\n"
      "3, spaced ,\"\",\"7\"\r\n"
      "\r\n"
      "4,\"\",plain,-1.5\r\n";
  auto got = ImportText(db.replica, text, Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad.empty()) << got.bad[0].first << ": " << got.bad[0].second;
  EXPECT_EQ(got.report().rows_imported, 4u);
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[0].id, "1");  // the BOM is not part of the header's "id"
  EXPECT_TRUE(engine::SameValue(recs[0].fields["name"].scalar, S("Smith, Ann")));
  EXPECT_TRUE(engine::SameValue(recs[0].fields["note"].scalar, S("she said \"hi\"")));
  EXPECT_TRUE(engine::SameValue(recs[0].fields["qty"].scalar, I(42)));
  EXPECT_TRUE(engine::SameValue(recs[1].fields["note"].scalar, S("two\r\nlines")));
  // A leading zero is not a JSON number: the text stays text.
  EXPECT_TRUE(engine::SameValue(recs[1].fields["qty"].scalar, S("02134")));
  // Spaces are part of a field; a quoted empty cell is an empty cell (unset).
  EXPECT_TRUE(engine::SameValue(recs[2].fields["name"].scalar, S(" spaced ")));
  EXPECT_EQ(recs[2].fields.count("note"), 0u);
  EXPECT_TRUE(engine::SameValue(recs[2].fields["qty"].scalar, I(7)));
  EXPECT_EQ(recs[3].fields.count("name"), 0u);
  EXPECT_TRUE(engine::SameValue(recs[3].fields["qty"].scalar, D(-1.5)));
}

TEST(ImportCsv, CellsThatAreJsonAreReadAsJson) {
  Db db;
  auto got = ImportText(db.replica,
                        "id,a,b,c,d,e,f,g,h\n"
                        "r,true,null,\"\"\"42\"\"\",\"[1,\"\"x\"\"]\",\"{\"\"$counter\"\":5}\","
                        "\"{\"\"$bytes\"\":\"\"AAE=\"\"}\",\"{\"\"k\"\":1}\",True\n",
                        Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  ASSERT_TRUE(got.bad.empty()) << got.bad[0].second;
  Record r = Get(db.replica, "items", "r");
  EXPECT_TRUE(engine::SameValue(r.fields["a"].scalar, Value{true}));
  EXPECT_EQ(engine::TypeOf(r.fields["b"].scalar), engine::ValueType::kNull);
  EXPECT_EQ(r.fields["b"].kind, Kind::kRegister);
  EXPECT_TRUE(engine::SameValue(r.fields["c"].scalar, S("42")));
  EXPECT_EQ(r.fields["d"].kind, Kind::kSet);
  EXPECT_EQ(r.fields["d"].set.size(), 2u);
  EXPECT_EQ(r.fields["e"].kind, Kind::kCounter);
  EXPECT_EQ(r.fields["e"].count, 5);
  EXPECT_TRUE(engine::SameValue(r.fields["f"].scalar, Value{Bytes{std::string("\x00\x01", 2)}}));
  // An object that is no value of ours is plain text, as is anything not JSON.
  EXPECT_TRUE(engine::SameValue(r.fields["g"].scalar, S("{\"k\":1}")));
  EXPECT_TRUE(engine::SameValue(r.fields["h"].scalar, S("True")));
}

TEST(ImportCsv, BadRowsAreReportedWithTheirLineAndSkipped) {
  Db db;
  SaveOrDie(db.replica, "items", R"({"fields": {"qty": {"type": "int"}}})");
  const std::string text =
      "id,name,qty\n"            // 1
      "a,Ann,1\n"                // 2
      "b,\"multi\nline\",2\n"    // 3-4
      "c,Cy\n"                   // 5: ragged
      "d,\xff\xfe,3\n"           // 6: invalid UTF-8
      ",NoId,4\n"                // 7: empty id
      "e,Eve,lots\n"             // 8: wrong type
      "f,\"x\ny\nz\",1,extra\n"  // 9-11: ragged after embedded newlines
      "\n"                       // 12
      "g,Gus,5\n";               // 13
  auto got = ImportText(db.replica, text, Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{5, 6, 7, 8, 9}));
  EXPECT_TRUE(Has(got.bad_reason(5), "2 fields, the header has 3")) << got.bad_reason(5);
  EXPECT_TRUE(Has(got.bad_reason(6), "not valid UTF-8")) << got.bad_reason(6);
  EXPECT_TRUE(Has(got.bad_reason(7), "record id is empty")) << got.bad_reason(7);
  EXPECT_TRUE(Has(got.bad_reason(8), "qty: expected int, got \"lots\"")) << got.bad_reason(8);
  EXPECT_TRUE(Has(got.bad_reason(9), "4 fields, the header has 3")) << got.bad_reason(9);
  EXPECT_EQ(got.report().rows, 8u);
  EXPECT_EQ(got.report().rows_imported, 3u);
  EXPECT_EQ(got.report().bad_rows, 5u);
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].id, "a");
  EXPECT_EQ(recs[1].id, "b");
  EXPECT_EQ(recs[2].id, "g");
}

TEST(ImportCsv, ATruncatedQuotedFieldStopsWithItsLineKeepingEarlierRows) {
  Db db;
  auto got = ImportText(db.replica, "id,name\na,Ann\nb,\"never\nclosed", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.result.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(got.error(), "line 3: the file ends inside a quoted field")) << got.error();
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].id, "a");

  // The same when the truncated field is the first of its row.
  Db db2;
  got = ImportText(db2.replica, "id,name\na,Ann\n\"b", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "line 3:")) << got.error();
  EXPECT_EQ(ScanAll(db2.replica, "items").size(), 1u);
}

TEST(ImportCsv, MalformedQuotingNamesItsLine) {
  Db db;
  auto got = ImportText(db.replica, "id,name\na,Ann\nb,\"Bo\"b\n", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "line 3: malformed CSV")) << got.error();
  got = ImportText(db.replica, "id,name\nc,C\"y\n", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "line 2: malformed CSV")) << got.error();
}

TEST(ImportCsv, HeaderProblemsStopTheImport) {
  Db db;
  auto got = ImportText(db.replica, "id,a,b,a\n1,2,3,4\n", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.result.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Has(got.error(), "the header names \"a\" twice")) << got.error();
  got = ImportText(db.replica, "id,x,id\n1,2,3\n", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "names \"id\" twice")) << got.error();
  got = ImportText(db.replica, "name,qty\nAnn,1\n", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "no \"id\" column")) << got.error();
  got = ImportText(db.replica, "", Csv());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "empty")) << got.error();
  EXPECT_TRUE(ScanAll(db.replica, "items").empty());
  // A header alone is an empty import.
  got = ImportText(db.replica, "id,a\n", Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.report().rows, 0u);
}

TEST(ImportCsv, LineNumbersCountCrlfAndEmbeddedLineBreaks) {
  Db db;
  const std::string text =
      "\xEF\xBB\xBF"
      "id,note\r\n"            // 1
      "a,\"x\r\ny\r\nz\"\r\n"  // 2-4
      "\r\n"                   // 5
      "b,1,2\r\n"              // 6: ragged
      "c,\"p\r\nq\",3\r\n"     // 7-8: ragged
      "d,last";                // 9, no line break at the end
  auto got = ImportText(db.replica, text, Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{6, 7}));
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_TRUE(engine::SameValue(recs[0].fields["note"].scalar, S("x\r\ny\r\nz")));
  EXPECT_EQ(recs[1].id, "d");
  EXPECT_TRUE(engine::SameValue(recs[1].fields["note"].scalar, S("last")));
}

TEST(ImportCsv, AValueOverTheLimitIsABadRowAndARowOverTheLineLimitStops) {
  for (size_t size : {engine::kMaxValueBytes + 1, size_t{33} << 20}) {
    SCOPED_TRACE(size);
    Db db;
    std::string text = "id,note\na,1\nb,\"";
    text.append(size, 'x');
    text += "\"\nc,3\n";
    auto got = ImportText(db.replica, text, Csv());
    if (size < (size_t{32} << 20)) {
      // Within the line limit: a bad row with its line, the rest imported.
      ASSERT_TRUE(got.ok()) << got.error();
      EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{3}));
      EXPECT_TRUE(db.replica.Get("items", "c").ok());
    } else {
      // Past it the rest cannot be read safely: the import stops, naming the line.
      EXPECT_FALSE(got.ok());
      EXPECT_TRUE(Has(got.error(), "line 3:") && Has(got.error(), "32 MiB")) << got.error();
    }
    EXPECT_EQ(db.replica.Get("items", "b").status().code(), Code::kNotFound);
    EXPECT_TRUE(db.replica.Get("items", "a").ok());
  }
}

TEST(ImportCsv, IdNamesAnotherColumn) {
  Db db;
  ImportOptions o = Csv();
  o.id_field = "sku";
  auto got = ImportText(db.replica, "name,sku,qty\nHat,H-1,3\nCap,C-2,4\n", o);
  ASSERT_TRUE(got.ok()) << got.error();
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].id, "C-2");
  EXPECT_EQ(recs[1].id, "H-1");
  EXPECT_EQ(recs[1].fields.count("sku"), 0u);  // the id is not also a field
  EXPECT_TRUE(engine::SameValue(recs[1].fields["name"].scalar, S("Hat")));
  EXPECT_TRUE(engine::SameValue(recs[1].fields["qty"].scalar, I(3)));
  // The id column must be there.
  got = ImportText(db.replica, "name,qty\nHat,3\n", o);
  EXPECT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "no \"sku\" column")) << got.error();
}

// ---- JSON lines --------------------------------------------------------------------------

TEST(ImportJsonl, BadLinesAreReportedWithTheirLineAndSkipped) {
  Db db;
  const std::string text =
      "{\"id\":\"a\",\"v\":1}\n"               // 1
      "{\"id\":\"b\",\"v\":\n"                 // 2: bad JSON
      "[1,2,3]\n"                              // 3: not an object
      "{\"v\":3}\n"                            // 4: no id
      "{\"id\":\"c\",\"v\":\"\xff\"}\n"        // 5: invalid UTF-8
      "\n"                                     // 6: blank
      "{\"id\":\"d\",\"v\":4}\r\n"             // 7 (CRLF)
      "{\"id\":\"e\",\"v\":{\"nested\":1}}\n"  // 8: nested object
      "{\"id\":true,\"v\":1}\n"                // 9: id of the wrong type
      "{\"id\":\"f\",\"v\":[[1]]}\n"           // 10: nested array
      "{\"id\":7,\"v\":5}\n"                   // 11: an integer id is fine
      "{\"id\":\"h\",\"v\":1E400}\n"           // 12: a number past a double
      "{\"id\":\"g\",\"v\":";                  // 13: truncated last line
  auto got = ImportText(db.replica, text, Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2, 3, 4, 5, 8, 9, 10, 12, 13}));
  EXPECT_TRUE(Has(got.bad_reason(2), "not valid JSON")) << got.bad_reason(2);
  EXPECT_TRUE(Has(got.bad_reason(3), "expected a JSON object")) << got.bad_reason(3);
  EXPECT_TRUE(Has(got.bad_reason(4), "no \"id\" key")) << got.bad_reason(4);
  EXPECT_TRUE(Has(got.bad_reason(5), "not valid JSON")) << got.bad_reason(5);
  EXPECT_TRUE(Has(got.bad_reason(8), "v: nested objects are not values")) << got.bad_reason(8);
  EXPECT_TRUE(Has(got.bad_reason(9), "record id must be a string or an integer"))
      << got.bad_reason(9);
  EXPECT_TRUE(Has(got.bad_reason(10), "v: a set's elements are scalars")) << got.bad_reason(10);
  EXPECT_TRUE(Has(got.bad_reason(12), "a number is out of range")) << got.bad_reason(12);
  EXPECT_TRUE(Has(got.bad_reason(13), "not valid JSON")) << got.bad_reason(13);
  EXPECT_EQ(got.report().rows, 12u);
  EXPECT_EQ(got.report().rows_imported, 3u);
  EXPECT_EQ(got.report().bad_rows, 9u);
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].id, "7");
  EXPECT_EQ(recs[1].id, "a");
  EXPECT_EQ(recs[2].id, "d");
}

// A JSON parser turns an integer literal too large for int64 into a double, which loses
// its last digits (a 20-digit SIM card number): a bad row instead, in either format.
TEST(Import, AnIntegerTooLargeForInt64IsABadRowNotARoundedDouble) {
  Db db;
  auto got =
      ImportText(db.replica,
                 "{\"id\":\"s1\",\"iccid\":89014103211118510720}\n"
                 "{\"id\":\"s2\",\"n\":[1,-9223372036854775809]}\n"
                 "{\"id\":\"s3\",\"iccid\":\"89014103211118510720\",\"max\":9223372036854775807,"
                 "\"f\":1.5e300,\"k 12345678901234567890\":1}\n",
                 Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{1, 2}));
  EXPECT_TRUE(Has(got.bad_reason(1), "integer out of the int64 range: 89014103211118510720"))
      << got.bad_reason(1);
  EXPECT_TRUE(Has(got.bad_reason(2), "-9223372036854775809")) << got.bad_reason(2);
  Record s3 = Get(db.replica, "items", "s3");
  EXPECT_TRUE(engine::SameValue(s3.fields["iccid"].scalar, S("89014103211118510720")));
  EXPECT_TRUE(engine::SameValue(s3.fields["max"].scalar, Value{int64_t{9223372036854775807}}));

  got =
      ImportText(db.replica, "id,iccid\nc1,89014103211118510720\nc2,8901410321111851072\n", Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2}));
  EXPECT_TRUE(Has(got.bad_reason(2), "iccid: integer out of the int64 range")) << got.bad_reason(2);
  // A set cell's element too; an id or value a parser keeps exact (up to 2^64 - 1) is
  // judged as before (an unsigned id is taken, an unsigned value refused).
  got = ImportText(db.replica, "id,t\nc3,\"[1,89014103211118510720]\"\nc4,\"[1,2]\"\n", Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2}));
  got = ImportText(db.replica,
                   "{\"id\":17000000000000000000,\"n\":1}\n"
                   "{\"id\":\"u\",\"n\":17000000000000000000}\n",
                   Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2}));
  EXPECT_TRUE(Has(got.bad_reason(2), "int64 range")) << got.bad_reason(2);
  EXPECT_EQ(Get(db.replica, "items", "17000000000000000000").fields.size(), 1u);
  // A field the schema types double asks for rounding.
  SaveOrDie(db.replica, "measures", R"({"fields": {"x": {"type": "double"}}})");
  got = ImportText(db.replica, "{\"id\":\"m\",\"x\":89014103211118510720}\n", Jsonl("measures"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty()) << got.bad_reason(1);
  got = ImportText(db.replica, "id,x\nm2,89014103211118510720\n", Csv("measures"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty()) << got.bad_reason(2);
  SaveOrDie(db.replica, "sims", R"({"fields": {"iccid": {"type": "string"}}})");
  got = ImportText(db.replica, "id,iccid\nc1,89014103211118510720\n", Csv("sims"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty());
  EXPECT_TRUE(engine::SameValue(Get(db.replica, "sims", "c1").fields["iccid"].scalar,
                                S("89014103211118510720")));
}

// A JSON parser keeps the last of a repeated key, at any depth: which one the file meant
// is unknown.
TEST(ImportJsonl, ARepeatedKeyIsABadRow) {
  Db db;
  auto got =
      ImportText(db.replica,
                 "{\"id\":\"6\",\"id\":\"7\",\"n\":1}\n"
                 "{\"id\":\"8\",\"n\":1,\"m\":{\"$counter\":2},\"n\":2}\n"
                 "{\"id\":\"9\",\"s\":\"a\\\"b\",\"t\":[\"x\",\"y\"],\"u\":{\"$bytes\":\"AQ==\"}}\n"
                 "{\"id\":\"10\",\"c\":{\"$counter\":1,\"$counter\":5}}\n",
                 Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{1, 2, 4}));
  EXPECT_TRUE(Has(got.bad_reason(1), "key \"id\" appears twice")) << got.bad_reason(1);
  EXPECT_TRUE(Has(got.bad_reason(2), "key \"n\" appears twice")) << got.bad_reason(2);
  EXPECT_TRUE(Has(got.bad_reason(4), "key \"$counter\" appears twice")) << got.bad_reason(4);
  EXPECT_EQ(ScanAll(db.replica, "items").size(), 1u);
}

TEST(ImportJsonl, ALineOverTheLimitIsABadRowAndTheRestIsRead) {
  std::string text = "{\"id\":\"a\",\"v\":1}\n{\"id\":\"big\",\"v\":\"";
  text.append((32u << 20) + 100, 'x');
  text += "\"}\n{\"id\":\"c\",\"v\":3}\n";
  for (Source source : {Source::kFile, Source::kPipe}) {
    Db fresh;
    auto got = ImportText(fresh.replica, text, Jsonl(), source);
    ASSERT_TRUE(got.ok()) << got.error();
    EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2}));
    EXPECT_TRUE(Has(got.bad_reason(2), "longer than 32 MiB")) << got.bad_reason(2);
    auto recs = ScanAll(fresh.replica, "items");
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ(recs[0].id, "a");
    EXPECT_EQ(recs[1].id, "c");
  }
}

TEST(ImportJsonl, WrongTypesUnderASchemaAreBadRows) {
  Db db;
  SaveOrDie(db.replica, "items", R"({"fields": {
      "qty": {"type": "int", "min": 0}, "tags": {"type": "set", "items": "string"},
      "name": {"type": "string", "normalize": ["trim"]}, "stock": {"type": "counter"}}})");
  const std::string text =
      "{\"id\":\"a\",\"qty\":\"5\"}\n"
      "{\"id\":\"b\",\"qty\":-1}\n"
      "{\"id\":\"c\",\"tags\":\"x\"}\n"
      "{\"id\":\"d\",\"tags\":[\"x\",1]}\n"
      "{\"id\":\"e\",\"stock\":1.5}\n"
      "{\"id\":\"f\",\"name\":[\"x\"]}\n"
      "{\"id\":\"g\",\"qty\":2,\"name\":\"  Gus \",\"tags\":[\" y\"],\"stock\":4}\n";
  auto got = ImportText(db.replica, text, Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(Has(got.bad_reason(1), "qty: expected int")) << got.bad_reason(1);
  EXPECT_TRUE(Has(got.bad_reason(2), "qty: -1 is below the minimum")) << got.bad_reason(2);
  EXPECT_TRUE(Has(got.bad_reason(3), "tags: a set, expected a JSON array")) << got.bad_reason(3);
  EXPECT_TRUE(Has(got.bad_reason(4), "tags: expected a set of string")) << got.bad_reason(4);
  EXPECT_TRUE(Has(got.bad_reason(5), "stock: a counter, expected an integer")) << got.bad_reason(5);
  EXPECT_TRUE(Has(got.bad_reason(6), "name: expected string, got an array")) << got.bad_reason(6);
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_TRUE(engine::SameValue(recs[0].fields["name"].scalar, S("Gus")));
  EXPECT_EQ(recs[0].fields["tags"].kind, Kind::kSet);
  EXPECT_TRUE(engine::SameValue(recs[0].fields["tags"].set[0], S(" y")));
  EXPECT_EQ(recs[0].fields["stock"].kind, Kind::kCounter);
  EXPECT_EQ(recs[0].fields["stock"].count, 4);
}

TEST(ImportJsonl, RowsRefusedOnlyWhenWrittenAreFoundOneByOne) {
  // A required field is checked when the batch commits: the batch is retried row by
  // row so that only the bad row is skipped, with its line.
  Db db;
  SaveOrDie(db.replica, "items", R"({"fields": {"name": {"type": "string", "required": true}}})");
  const std::string text =
      "{\"id\":\"a\",\"name\":\"Ann\"}\n"
      "{\"id\":\"b\",\"qty\":1}\n"
      "{\"id\":\"c\",\"name\":\"Cy\"}\n"
      "{\"id\":\"a\",\"qty\":2}\n";  // a exists by now: fine
  auto got = ImportText(db.replica, text, Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2}));
  EXPECT_TRUE(Has(got.bad_reason(2), "name is required")) << got.bad_reason(2);
  EXPECT_EQ(got.report().rows_imported, 3u);
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_TRUE(engine::SameValue(recs[0].fields["qty"].scalar, I(2)));
}

TEST(ImportJsonl, IdNamesAnotherKey) {
  Db db;
  ImportOptions o = Jsonl();
  o.id_field = "sku";
  auto got = ImportText(db.replica,
                        "{\"sku\":\"H-1\",\"name\":\"Hat\"}\n{\"sku\":12,\"name\":\"Cap\"}\n"
                        "{\"name\":\"none\"}\n",
                        o);
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{3}));
  EXPECT_TRUE(Has(got.bad_reason(3), "no \"sku\" key")) << got.bad_reason(3);
  auto recs = ScanAll(db.replica, "items");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].id, "12");
  EXPECT_EQ(recs[1].id, "H-1");
  EXPECT_EQ(recs[1].fields.count("sku"), 0u);
  EXPECT_EQ(recs[1].fields.size(), 1u);
}

// ---- Counters, sets, idempotence ---------------------------------------------------

TEST(Import, CountersAreSetToTheGivenCountAndStayCounters) {
  Db db;
  ASSERT_TRUE(db.replica.Incr("items", "p", "stock", 3).ok());
  auto got = ImportText(db.replica, "{\"id\":\"p\",\"stock\":{\"$counter\":10}}\n", Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  auto stock = ReadField(db.replica, "items", "p", "stock");
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->kind, Kind::kCounter);
  EXPECT_EQ(stock->count, 10);
  EXPECT_EQ(got.report().fields_written, 1u);
  // Down, too.
  got = ImportText(db.replica, "id,stock\np,\"{\"\"$counter\"\":-4}\"\n", Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(CountOf(db.replica, "items", "p", "stock"), -4);

  // A declared counter takes a plain number.
  Db s;
  SaveOrDie(s.replica, "items", R"({"fields": {"stock": {"type": "counter", "min": 0}}})");
  ASSERT_TRUE(s.replica.Incr("items", "p", "stock", 3).ok());
  got = ImportText(s.replica, "id,stock\np,10\n", Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad.empty());
  stock = ReadField(s.replica, "items", "p", "stock");
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->kind, Kind::kCounter);
  EXPECT_EQ(stock->count, 10);
  // Increments made after the import still add up: it is a counter, not a register.
  ASSERT_TRUE(s.replica.Incr("items", "p", "stock", 2).ok());
  EXPECT_EQ(CountOf(s.replica, "items", "p", "stock"), 12);
  // Outside the declared range: a bad row, the count unchanged.
  got = ImportText(s.replica, "{\"id\":\"p\",\"stock\":-1}\n", Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(Has(got.bad_reason(1), "stock")) << got.bad_reason(1);
  EXPECT_EQ(CountOf(s.replica, "items", "p", "stock"), 12);
}

TEST(Import, SetsBecomeExactlyTheGivenElements) {
  Db db;
  ASSERT_TRUE(db.replica.Add("items", "p", "tags", S("old")).ok());
  ASSERT_TRUE(db.replica.Add("items", "p", "tags", S("keep")).ok());
  auto got =
      ImportText(db.replica, "{\"id\":\"p\",\"tags\":[\"keep\",\"new\",\"new\"]}\n", Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  auto tags = ReadField(db.replica, "items", "p", "tags");
  ASSERT_TRUE(tags);
  ASSERT_EQ(tags->set.size(), 2u);
  EXPECT_TRUE(engine::SameValue(tags->set[0], S("keep")));
  EXPECT_TRUE(engine::SameValue(tags->set[1], S("new")));
  // Fields a row does not name are left alone.
  ASSERT_TRUE(db.replica.Put("items", "p", {{"other", I(1)}}).ok());
  got = ImportText(db.replica, "{\"id\":\"p\",\"tags\":[]}\n", Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  Record r = Get(db.replica, "items", "p");
  EXPECT_EQ(r.fields["tags"].kind, Kind::kSet);
  EXPECT_TRUE(r.fields["tags"].set.empty());
  EXPECT_TRUE(engine::SameValue(r.fields["other"].scalar, I(1)));
}

TEST(Import, ASetHoldingAnElementNotInNormalFormBecomesTheGivenSet) {
  // "RED" was added before the schema normalised tags to lower case. Importing
  // tags ["red"] must leave exactly {"red"}, every time.
  Db db;
  ASSERT_TRUE(db.replica.Add("items", "p", "tags", S("RED")).ok());
  SaveOrDie(db.replica, "items",
            R"({"fields": {"tags": {"type": "set", "items": "string", "normalize": ["lower"]}}})");
  std::vector<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    auto got = ImportText(db.replica, "{\"id\":\"p\",\"tags\":[\"red\"]}\n", Jsonl());
    ASSERT_TRUE(got.ok()) << got.error();
    auto tags = ReadField(db.replica, "items", "p", "tags");
    ASSERT_TRUE(tags);
    std::string text;
    for (const auto& e : tags->set) text += engine::DebugString(e) + " ";
    seen.push_back(text);
  }
  EXPECT_EQ(seen[0], "\"red\" ");
  EXPECT_EQ(seen[1], "\"red\" ");
}

TEST(Import, TheSameFileTwiceWritesNothingTheSecondTime) {
  const std::string jsonl =
      "{\"id\":\"a\",\"s\":\"x\",\"n\":1,\"d\":1.5,\"z\":null,\"b\":{\"$bytes\":\"AQI=\"},"
      "\"c\":{\"$counter\":0},\"t\":[2,\"y\"],\"e\":[]}\n"
      "{\"id\":\"b\",\"c\":{\"$counter\":-3},\"s\":\"\"}\n";
  const std::string csv =
      "id,s,n,c,t\n"
      "a,x,1,\"{\"\"$counter\"\":2}\",\"[1]\"\n"
      "b,\"  y \",,,\n";
  for (const auto& [text, opts] : {std::pair{jsonl, Jsonl()}, std::pair{csv, Csv()}}) {
    Db db;
    SaveOrDie(db.replica, "items",
              R"({"fields": {"s": {"type": "string", "normalize": ["trim", "upper"]}}})");
    auto first = ImportText(db.replica, text, opts);
    ASSERT_TRUE(first.ok()) << first.error();
    ASSERT_TRUE(first.bad.empty()) << first.bad[0].second;
    EXPECT_GT(first.report().fields_written, 0u);
    const auto vv = Vv(db.replica);
    const auto records = ScanAll(db.replica, "items");
    auto second = ImportText(db.replica, text, opts);
    ASSERT_TRUE(second.ok()) << second.error();
    EXPECT_EQ(second.report().rows_imported, 2u);
    EXPECT_EQ(second.report().fields_written, 0u) << text;
    EXPECT_EQ(Vv(db.replica), vv);
    EXPECT_EQ(ScanAll(db.replica, "items"), records);
  }
}

TEST(Import, ReservedCollectionsAndBadOptionsAreRefused) {
  Db db;
  ImportOptions o = Jsonl("_tandem_schemas");
  auto got = ImportText(db.replica, "{\"id\":\"items\",\"schema\":\"{}\"}\n", o);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "reserved")) << got.error();
  o = Jsonl();
  o.id_field = "";
  got = ImportText(db.replica, "{\"id\":\"a\"}\n", o);
  EXPECT_FALSE(got.ok());
  got = ImportText(db.replica, "{\"id\":\"a\",\"x\":1}\n", Jsonl(""));
  EXPECT_FALSE(got.ok());
}

TEST(Import, ManyRowsInSmallBatches) {
  Db db;
  std::string text;
  for (int i = 0; i < 250; ++i)
    text += "{\"id\":\"r" + std::to_string(1000 + i) + "\",\"n\":" + std::to_string(i) + "}\n";
  text += "oops\n";
  ImportOptions o = Jsonl();
  o.batch_rows = 7;
  uint64_t progress_calls = 0, last_rows = 0;
  o.progress = [&](const ImportProgress& p) {
    ++progress_calls;
    last_rows = p.rows;
  };
  auto got = ImportText(db.replica, text, o);
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{251}));
  EXPECT_EQ(got.report().rows_imported, 250u);
  EXPECT_EQ(got.report().bytes, text.size());
  EXPECT_EQ(ScanAll(db.replica, "items").size(), 250u);
  EXPECT_GE(progress_calls, 1u);
  EXPECT_EQ(last_rows, 251u);
}

// ---- Strict mode ---------------------------------------------------------------------------

class Strict : public ::testing::TestWithParam<Source> {};

TEST_P(Strict, ABadRowAnywhereImportsNothing) {
  std::string jsonl, csv = "id,n\n";
  for (int i = 0; i < 40; ++i) {
    jsonl += "{\"id\":\"r" + std::to_string(i) + "\",\"n\":" + std::to_string(i) + "}\n";
    csv += "r" + std::to_string(i) + "," + std::to_string(i) + "\n";
  }
  const std::string bad_last_jsonl = jsonl + "{\"id\":\"x\",\"n\":}\n";
  const std::string bad_first_jsonl = "[]\n" + jsonl;
  const std::string bad_last_csv = csv + "x,1,2\n";
  struct Case {
    std::string text;
    ImportOptions opts;
    uint64_t line;
  };
  for (Case c : {Case{bad_last_jsonl, Jsonl(), 41}, Case{bad_first_jsonl, Jsonl(), 1},
                 Case{bad_last_csv, Csv(), 42}}) {
    Db db;
    ASSERT_TRUE(db.replica.Put("items", "r0", {{"n", I(-1)}}).ok());
    const auto vv = Vv(db.replica);
    const auto before = ScanAll(db.replica, "items");
    c.opts.strict = true;
    c.opts.batch_rows = 5;  // a non-strict import would have committed batches by then
    auto got = ImportText(db.replica, c.text, c.opts, GetParam());
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.result.status().code(), Code::kInvalidArgument);
    EXPECT_TRUE(Has(got.error(), "line " + std::to_string(c.line) + ":")) << got.error();
    EXPECT_TRUE(Has(got.error(), "nothing was imported")) << got.error();
    EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{c.line}));
    EXPECT_EQ(Vv(db.replica), vv);
    EXPECT_EQ(ScanAll(db.replica, "items"), before);
  }
}

TEST_P(Strict, AGoodInputIsImportedWhole) {
  std::string jsonl, csv = "id,n\n";
  for (int i = 0; i < 40; ++i) {
    jsonl += "{\"id\":\"r" + std::to_string(i) + "\",\"n\":" + std::to_string(i) + "}\n";
    csv += "r" + std::to_string(i) + "," + std::to_string(i) + "\n";
  }
  for (const auto& [text, o] : {std::pair{jsonl, Jsonl()}, std::pair{csv, Csv()}}) {
    Db db;
    ImportOptions opts = o;
    opts.strict = true;
    opts.batch_rows = 6;
    bool validating_seen = false;
    opts.progress = [&](const ImportProgress& p) { validating_seen |= p.validating; };
    auto got = ImportText(db.replica, text, opts, GetParam());
    ASSERT_TRUE(got.ok()) << got.error();
    EXPECT_EQ(got.report().rows, 40u);
    EXPECT_EQ(got.report().rows_imported, 40u);
    EXPECT_EQ(got.report().bytes, text.size());
    EXPECT_TRUE(validating_seen);
    auto recs = ScanAll(db.replica, "items");
    ASSERT_EQ(recs.size(), 40u);
    EXPECT_TRUE(engine::SameValue(Get(db.replica, "items", "r39").fields["n"].scalar, I(39)));
  }
}

TEST_P(Strict, ASchemaViolationIsABadRowToo) {
  Db db;
  SaveOrDie(db.replica, "items", R"({"fields": {"qty": {"type": "int", "max": 9}}})");
  ImportOptions o = Csv();
  o.strict = true;
  auto got = ImportText(db.replica, "id,qty\na,1\nb,2\nc,10\nd,3\n", o, GetParam());
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "line 4: qty: 10 is above the maximum")) << got.error();
  EXPECT_TRUE(ScanAll(db.replica, "items").empty());
}

TEST_P(Strict, ARequiredFieldGivenByAnEarlierRowIsGiven) {
  // Without --strict this file imports with no bad row (the batch holds both rows), so
  // --strict must accept it as well.
  const std::string text =
      "{\"id\":\"a\",\"name\":\"Ann\"}\n"
      "{\"id\":\"a\",\"qty\":1}\n";
  constexpr char kSchema[] = R"({"fields": {"name": {"type": "string", "required": true}}})";
  Db lax;
  SaveOrDie(lax.replica, "items", kSchema);
  auto got = ImportText(lax.replica, text, Jsonl(), GetParam());
  ASSERT_TRUE(got.ok()) << got.error();
  ASSERT_TRUE(got.bad.empty()) << got.bad[0].second;

  Db db;
  SaveOrDie(db.replica, "items", kSchema);
  ImportOptions o = Jsonl();
  o.strict = true;
  got = ImportText(db.replica, text, o, GetParam());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(ScanAll(db.replica, "items"), ScanAll(lax.replica, "items"));
}

TEST_P(Strict, ARowRefusedOnlyAtWriteTimeStillImportsNothing) {
  // additional: false refuses a counter (or an empty set) on an undeclared field when it
  // is written; the first pass must see that too, or rows before it get committed.
  for (const std::string extra : {"{\"$counter\":1}", "[]"}) {
    for (size_t batch : {size_t{1000}, size_t{1}}) {
      SCOPED_TRACE(extra + " batch_rows=" + std::to_string(batch));
      Db db;
      SaveOrDie(db.replica, "items",
                R"({"fields": {"name": {"type": "string"}}, "additional": false})");
      const auto vv = Vv(db.replica);
      ImportOptions o = Jsonl();
      o.strict = true;
      o.batch_rows = batch;
      auto got = ImportText(db.replica,
                            "{\"id\":\"a\",\"name\":\"Ann\"}\n"
                            "{\"id\":\"b\",\"extra\":" +
                                extra + "}\n",
                            o, GetParam());
      EXPECT_FALSE(got.ok());
      EXPECT_TRUE(Has(got.error(), "line 2: extra: not a field")) << got.error();
      EXPECT_TRUE(ScanAll(db.replica, "items").empty());
      EXPECT_EQ(got.bad_lines(), std::vector<uint64_t>{2});
      EXPECT_EQ(Vv(db.replica), vv);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Inputs, Strict, ::testing::Values(Source::kFile, Source::kPipe),
                         [](const auto& param_info) {
                           return std::string(param_info.param == Source::kPipe ? "Pipe" : "File");
                         });

TEST(Import, FromANonSeekablePipeWithoutStrict) {
  Db db;
  auto got = ImportText(db.replica, "id,n\na,1\nb,x,y\nc,3\n", Csv(), Source::kPipe);
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{3}));
  EXPECT_EQ(ScanAll(db.replica, "items").size(), 2u);
}

TEST(Import, StrictReadsAFileFromWhereItIsPositioned) {
  // The second pass starts where the first did, not at the file's beginning.
  Db db;
  const std::string junk = "not json at all\n";
  FILE* f = FileWith(junk + "{\"id\":\"a\",\"n\":1}\n");
  ASSERT_EQ(std::fseek(f, static_cast<long>(junk.size()), SEEK_SET), 0);
  ImportOptions o = Jsonl();
  o.strict = true;
  auto got = Import(db.replica, f, o);
  std::fclose(f);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->rows_imported, 1u);
  EXPECT_EQ(ScanAll(db.replica, "items").size(), 1u);
}

TEST(ImportHostile, DeeplyNestedJsonIsABadRowNotACrash) {
  Db db;
  std::string deep = "{\"id\":\"a\",\"f\":" + std::string(200000, '[') + std::string(200000, ']') +
                     "}\n{\"id\":\"b\",\"f\":1}\n";
  auto got = ImportText(db.replica, deep, Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(db.replica.Get("items", "b").ok());
  // In a CSV cell it is plain text (not JSON one can hold).
  Db csv;
  std::string cell = std::string(100000, '[') + std::string(100000, ']');
  got = ImportText(csv.replica, "id,f\na," + cell + "\n", Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  auto rec = csv.replica.Get("items", "a");
  ASSERT_TRUE(rec.ok());
  EXPECT_TRUE(engine::SameValue(rec->fields.at("f").scalar, S(cell)));
  // And a schema that nests deep is refused.
  EXPECT_FALSE(Schema::Parse("{\"fields\": {\"x\": {\"enum\": [" + std::string(1000, '[') +
                             std::string(1000, ']') + "]}}}")
                   .ok());
}

TEST(ImportHostile, ARowOfMillionsOfEmptyCellsStopsWithBoundedMemory) {
  Db db;
  std::string text = "id,f\na,1\nb," + std::string(5 << 20, ',') + "\nc,3\n";
  auto got = ImportText(db.replica, text, Csv());
  EXPECT_FALSE(got.ok());
  EXPECT_TRUE(Has(got.error(), "line 3:") && Has(got.error(), "32 MiB")) << got.error();
  EXPECT_TRUE(db.replica.Get("items", "a").ok());
  EXPECT_FALSE(db.replica.Get("items", "b").ok());
}

TEST(ImportHostile, AJsonLinesFileMayStartWithAByteOrderMark) {
  Db db;
  auto got = ImportText(db.replica, "\xEF\xBB\xBF{\"id\":\"a\",\"n\":1}\n", Jsonl());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad.empty());
  EXPECT_TRUE(db.replica.Get("items", "a").ok());
}

}  // namespace
}  // namespace tandem::data
