// Import of JSON lines and CSV (RFC 4180): what each row means, and the bad rows.
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

// A cell read as JSON that names a key twice is a bad row (a parser keeps the last);
// one that is plain text stays text.
TEST(ImportCsv, ACellReadAsJsonWithARepeatedKeyIsABadRow) {
  Db db;
  auto got = ImportText(db.replica,
                        "id,a\n"
                        "r1,\"{\"\"$counter\"\":1,\"\"$counter\"\":2}\"\n"
                        "r2,\"[{\"\"$bytes\"\":\"\"AQ==\"\",\"\"$bytes\"\":\"\"Ag==\"\"}]\"\n"
                        "r3,\"{\"\"k\"\":1,\"\"k\"\":2}\"\n",
                        Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{2, 3}));
  EXPECT_TRUE(Has(got.bad_reason(2), "key \"$counter\" appears twice")) << got.bad_reason(2);
  EXPECT_TRUE(Has(got.bad_reason(3), "key \"$bytes\" appears twice")) << got.bad_reason(3);
  EXPECT_TRUE(
      engine::SameValue(Get(db.replica, "items", "r3").fields["a"].scalar, S("{\"k\":1,\"k\":2}")));
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
  // One a parser keeps exact as unsigned (up to 2^64 - 1) alike.
  got = ImportText(db.replica, "{\"id\":\"m3\",\"x\":12345678901234567890}\n", Jsonl("measures"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty()) << got.bad_reason(1);
  got = ImportText(db.replica, "id,x\nm4,12345678901234567890\n", Csv("measures"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty()) << got.bad_reason(2);
  SaveOrDie(db.replica, "series", R"({"fields": {"x": {"type": "set", "items": "double"}}})");
  got = ImportText(db.replica, "{\"id\":\"s\",\"x\":[1,12345678901234567890]}\n", Jsonl("series"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty()) << got.bad_reason(1);
  EXPECT_EQ(Get(db.replica, "series", "s").fields["x"].set.size(), 2u);
  for (const char* id : {"m3", "m4"})
    EXPECT_TRUE(engine::SameValue(Get(db.replica, "measures", id).fields["x"].scalar,
                                  D(12345678901234567890.0)))
        << id;
  SaveOrDie(db.replica, "sims", R"({"fields": {"iccid": {"type": "string"}}})");
  got = ImportText(db.replica, "id,iccid\nc1,89014103211118510720\n", Csv("sims"));
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_TRUE(got.bad_lines().empty());
  EXPECT_TRUE(engine::SameValue(Get(db.replica, "sims", "c1").fields["iccid"].scalar,
                                S("89014103211118510720")));
}

// Spaces or tabs around a declared number, boolean or counter are padding; an inferred
// cell with them is text on either side.
TEST(ImportCsv, PaddingAroundADeclaredValueIsIgnoredAndMakesAnInferredCellText) {
  Db db;
  SaveOrDie(db.replica, "items",
            R"({"fields": {"n": {"type": "int"}, "d": {"type": "double"},
                           "ok": {"type": "bool"}, "c": {"type": "counter"}}})");
  auto got = ImportText(db.replica,
                        "id,n,d,ok,c,x,y\n"
                        "a,5 , 2.5,\ttrue , 3,5 , 5\n"
                        "b,   ,1,true,1,1,1\n",
                        Csv());
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(got.bad_lines(), (std::vector<uint64_t>{3}));
  EXPECT_TRUE(Has(got.bad_reason(3), "n: expected int")) << got.bad_reason(3);
  Record a = Get(db.replica, "items", "a");
  EXPECT_TRUE(engine::SameValue(a.fields["n"].scalar, I(5)));
  EXPECT_TRUE(engine::SameValue(a.fields["d"].scalar, D(2.5)));
  EXPECT_TRUE(engine::SameValue(a.fields["ok"].scalar, Value{true}));
  EXPECT_EQ(a.fields["c"].count, 3);
  EXPECT_TRUE(engine::SameValue(a.fields["x"].scalar, S("5 ")));
  EXPECT_TRUE(engine::SameValue(a.fields["y"].scalar, S(" 5")));
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

}  // namespace
}  // namespace tandem::data
