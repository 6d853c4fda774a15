// Import and export together: round trips, counters and sets, the same file twice,
// strict mode, hostile input.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../integration/process.h"
#include "data_test_util.h"
#include "tandem/bindings/json.h"
#include "tandem/data/etl.h"
#include "tandem/data/schema.h"
#include "tandem/storage/replica.h"

namespace tandem::data {
namespace {

using namespace test;

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

// A schema makes export write declared counters and bytes plainly (counters as numbers,
// bytes as base64 in CSV); import reads them back by the same schema. Declared strings
// that would read as JSON are quoted all the same (a replica without the schema reads
// them back as strings too).
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
    EXPECT_TRUE(Has(text, ",\"\"\"42\"\"\",")) << text;
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

TEST_P(Strict, ARequiredFieldGivenOnlyByALaterRowIsMissingWhateverTheBatches) {
  // Rows are judged in order: a row that makes a record without its required field is
  // bad even when a later row of the same record gives it, whichever rows share a
  // transaction, and a strict import refuses the file for the same row.
  const std::string text =
      "{\"id\":\"a\",\"name\":\"Ann\"}\n"
      "{\"id\":\"q\",\"qty\":1}\n"
      "{\"id\":\"q\",\"name\":\"Q\"}\n"
      "{\"id\":\"a\",\"qty\":2}\n";
  constexpr char kSchema[] = R"({"fields": {"name": {"type": "string", "required": true}}})";
  std::optional<std::vector<Record>> first;
  for (size_t batch : {size_t{1}, size_t{2}, size_t{3}, size_t{1000}}) {
    SCOPED_TRACE("batch_rows=" + std::to_string(batch));
    Db db;
    SaveOrDie(db.replica, "items", kSchema);
    ImportOptions o = Jsonl();
    o.batch_rows = batch;
    auto got = ImportText(db.replica, text, o, GetParam());
    ASSERT_TRUE(got.ok()) << got.error();
    EXPECT_EQ(got.bad_lines(), std::vector<uint64_t>{2});
    EXPECT_TRUE(Has(got.bad_reason(2), "q: name is required")) << got.bad_reason(2);
    auto recs = ScanAll(db.replica, "items");
    if (!first) first = recs;
    EXPECT_EQ(recs, *first);
    o.strict = true;
    Db strict;
    SaveOrDie(strict.replica, "items", kSchema);
    got = ImportText(strict.replica, text, o, GetParam());
    EXPECT_FALSE(got.ok());
    EXPECT_TRUE(Has(got.error(), "line 2: q: name is required")) << got.error();
  }
  ASSERT_EQ(first->size(), 2u);
  EXPECT_FALSE(first->at(1).fields.count("qty")) << "q holds only what its good row gave";
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

TEST_P(Strict, AReplicaChangedWhileRowsAreWrittenSaysWhatStays) {
  // Every row passes the checks; then a schema arrives (as by sync) before the later
  // batches are written, and a row breaks it: the import says what it kept.
  std::string text = "id,qty\n";
  for (int i = 0; i < 2500; ++i)
    text += "r" + std::to_string(10000 + i) + "," + std::to_string(i) + "\n";
  Db db;
  ImportOptions o = Csv();
  o.strict = true;
  bool changed = false;
  o.progress = [&](const ImportProgress& p) {
    if (!p.validating && p.rows >= 1000 && !changed) {
      changed = true;
      SaveOrDie(db.replica, "items", R"({"fields": {"qty": {"type": "int", "max": 1500}}})");
    }
  };
  auto got = ImportText(db.replica, text, o, GetParam());
  ASSERT_FALSE(got.ok());
  ASSERT_TRUE(changed);
  // The first row written after the schema came is the first refused: the rows before it
  // (a batch or more, as progress is reported) stay, and the message says how many.
  const size_t kept = ScanAll(db.replica, "items").size();
  ASSERT_GE(kept, 1000u);
  ASSERT_LT(kept, 2500u);
  const std::string line = std::to_string(kept + 2);
  EXPECT_TRUE(
      Has(got.error(), "line " + line + ": qty: " + std::to_string(kept) + " is above the maximum"))
      << got.error();
  EXPECT_TRUE(Has(got.error(), "the replica changed while they were written; the " +
                                   std::to_string(kept) + " rows before line " + line +
                                   " stay imported"))
      << got.error();
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
