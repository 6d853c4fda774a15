// `tandem import`, `tandem export` and `tandem schema`, run as real programs against real
// replica directories: exit codes, messages, strict imports, round trips, stdin.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "process.h"

namespace tandem::testing {
namespace {

RunResult T(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_BIN);
  return Run(args);
}

// A shell script with the tandem binary as $0 and `args` as $1...: for stdin from a
// file (a regular file) or from `cat` (a pipe).
RunResult Sh(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/bin/sh", "-c", script, TANDEM_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv);
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

int CountLines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

class DataCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = T({"init", db_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string Dump(const std::string& dir) {
    auto r = T({"dump", dir});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }
  std::string File(const std::string& name, const std::string& text) {
    std::string path = tmp_ / name;
    WriteFile(path, text);
    return path;
  }
  TempDir tmp_;
  std::string db_ = tmp_ / "db";
};

// ---- import: exit codes and messages ------------------------------------------------

TEST_F(DataCli, ACleanImportExitsZero) {
  auto in = File("in.jsonl",
                 "{\"id\":\"a\",\"name\":\"Ann\",\"qty\":1}\n{\"id\":\"b\",\"name\":\"Bob\"}\n");
  auto r = T({"import", db_, "items", in});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "imported 2 of 2 rows into items (3 fields written)")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  r = T({"get", db_, "items", "a"});
  EXPECT_EQ(r.out, "{\"id\":\"a\",\"name\":\"Ann\",\"qty\":1}\n");
  // Again: nothing to write.
  r = T({"import", db_, "items", in});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "imported 2 of 2 rows into items (0 fields written)")) << r.err;
}

TEST_F(DataCli, BadRowsAreSkippedWithTheirLineAndExitThree) {
  auto in = File("in.csv",
                 "id,name,qty\n"       // 1
                 "a,Ann,1\n"           // 2
                 "b,\"two\nlines\"\n"  // 3-4: ragged
                 "c,\xff,2\n"          // 5: invalid UTF-8
                 "d,Dee,4\n");         // 6
  auto r = T({"import", db_, "items", in});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(Has(r.err, "tandem: import: line 3: 2 fields, the header has 3")) << r.err;
  EXPECT_TRUE(Has(r.err, "tandem: import: line 5: not valid UTF-8")) << r.err;
  EXPECT_TRUE(Has(r.err, "imported 2 of 4 rows into items")) << r.err;
  EXPECT_TRUE(Has(r.err, "2 bad rows skipped")) << r.err;
  EXPECT_EQ(
      T({"ls", db_, "items"}).out,
      "{\"id\":\"a\",\"name\":\"Ann\",\"qty\":1}\n{\"id\":\"d\",\"name\":\"Dee\",\"qty\":4}\n");

  auto jl = File("in.jsonl", "{\"id\":\"e\",\"v\":1}\n{\"id\":\"f\",\"v\":}\n\n[1]\n");
  r = T({"import", db_, "items", jl});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(Has(r.err, "line 2: not valid JSON")) << r.err;
  EXPECT_TRUE(Has(r.err, "line 4: expected a JSON object")) << r.err;
  EXPECT_EQ(T({"get", db_, "items", "e"}).exit_code, 0);
}

TEST_F(DataCli, InputThatCannotBeReadAsAWholeExitsTwo) {
  auto r = T({"import", db_, "items", File("dup.csv", "id,a,a\n1,2,3\n")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "the header names \"a\" twice")) << r.err;
  r = T({"import", db_, "items", File("noid.csv", "name\nAnn\n")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "no \"id\" column")) << r.err;
  r = T({"import", db_, "items", File("cut.csv", "id,n\na,1\nb,\"unterminated")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "line 3: the file ends inside a quoted field")) << r.err;
  // Rows before the point of failure stay imported.
  EXPECT_EQ(T({"ls", db_, "items"}).out, "{\"id\":\"a\",\"n\":1}\n");
}

// A row that sets no field (only an id, or empty cells) stores nothing: a record exists
// only with a field. The import says so rather than counting it as a record.
TEST_F(DataCli, RowsThatSetNoFieldAreNamedAsStoringNothing) {
  auto r = T({"import", db_, "items", File("ids.csv", "id,name\nr1,\nr2,\nr3,Cup\n")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "imported 3 of 3 rows")) << r.err;
  EXPECT_TRUE(Has(r.err, "2 rows set no field")) << r.err;
  EXPECT_EQ(CountLines(Dump(db_)), 1);
}

TEST_F(DataCli, IdNamesAnotherColumn) {
  auto r = T({"import", db_, "items", File("in.csv", "sku,name\nH-1,Hat\n"), "--id", "sku"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(T({"get", db_, "items", "H-1"}).out, "{\"id\":\"H-1\",\"name\":\"Hat\"}\n");
}

// ---- --strict ---------------------------------------------------------------------------

TEST_F(DataCli, StrictFailsOnABadRowAndLeavesTheReplicaAlone) {
  ASSERT_EQ(T({"put", db_, "items", "a", "n=-1"}).exit_code, 0);
  const std::string before = Dump(db_);
  const auto info_before = T({"info", db_}).out;
  std::string text;
  for (int i = 0; i < 30; ++i)
    text += "{\"id\":\"r" + std::to_string(i) + "\",\"n\":" + std::to_string(i) + "}\n";
  text += "{\"id\":\"a\",\"n\":2}\n{\"id\":\"zz\",\"n\":nope}\n";  // bad at line 32
  auto in = File("in.jsonl", text);
  auto r = T({"import", db_, "items", in, "--strict"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Has(r.err, "line 32")) << r.err;
  EXPECT_TRUE(Has(r.err, "nothing was imported")) << r.err;
  EXPECT_EQ(r.err.find("line 32"), r.err.rfind("line 32")) << "said once: " << r.err;
  EXPECT_EQ(Dump(db_), before);
  EXPECT_EQ(T({"info", db_}).out, info_before);
  // From a pipe too (the input is spooled for the second pass).
  r = Sh("cat \"$2\" | \"$0\" import \"$1\" items - --strict", {db_, in});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(Has(r.err, "line 32")) << r.err;
  EXPECT_EQ(Dump(db_), before);
  // Without --strict the same file imports all but that row.
  r = T({"import", db_, "items", in});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(CountLines(Dump(db_)), 31);
}

TEST_F(DataCli, StrictImportsAGoodInputWhole) {
  std::string csv = "id,n\n";
  for (int i = 0; i < 25; ++i) csv += "r" + std::to_string(i) + "," + std::to_string(i) + "\n";
  auto in = File("in.csv", csv);
  auto r = Sh("cat \"$2\" | \"$0\" import \"$1\" items - --format csv --strict", {db_, in});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "imported 25 of 25 rows")) << r.err;
  EXPECT_EQ(CountLines(Dump(db_)), 25);
  EXPECT_EQ(T({"get", db_, "items", "r24"}).out, "{\"id\":\"r24\",\"n\":24}\n");
}

// ---- export, then import elsewhere ----------------------------------------------------------

class DataCliRoundTrip : public DataCli, public ::testing::WithParamInterface<std::string> {};

TEST_P(DataCliRoundTrip, ExportThenImportIntoAFreshReplicaGivesTheSameDump) {
  for (std::vector<std::string> args : {
           std::vector<std::string>{"put", db_, "items", "p1", "name=\"Smith, Ann\"", "n=5",
                                    "d=2.5", "whole=5.0", "b=true", "z=null",
                                    "raw={\"$bytes\":\"AAEC\"}", "zip=\"02134\"", "s42=\"42\"",
                                    "q=\"say \\\"hi\\\"\"", "nl=\"a\\nb\\r\\nc\"", "e=\"\"",
                                    "u=\"\xc3\xa9t\xc3\xa9 \xf0\x9f\x8e\x89\""},
           {"incr", db_, "items", "p1", "stock", "-7"},
           {"add", db_, "items", "p1", "tags", "\"red\""},
           {"add", db_, "items", "p1", "tags", "3"},
           {"put", db_, "items", "p,2", "name=\"Bob\""},
           {"incr", db_, "items", "p,2", "stock", "4"},
       })
    ASSERT_EQ(T(args).exit_code, 0) << args[0];
  auto ex = T({"export", db_, "items", "--format", GetParam()});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  EXPECT_TRUE(Has(ex.err, "exported 2 records")) << ex.err;
  auto file = File("out." + GetParam(), ex.out);

  const std::string db2 = tmp_ / "db2";
  ASSERT_EQ(T({"init", db2}).exit_code, 0);
  auto r = T({"import", db2, "items", file});
  EXPECT_EQ(r.exit_code, 0) << r.err << "\n" << ex.out;
  const std::string dump = Dump(db_);
  EXPECT_EQ(CountLines(dump), 2);
  EXPECT_EQ(Dump(db2), dump) << ex.out;
  // The counter is still a counter in the copy: increments add to it.
  ASSERT_EQ(T({"incr", db2, "items", "p1", "stock", "10"}).exit_code, 0);
  EXPECT_TRUE(Has(T({"get", db2, "items", "p1"}).out, "\"stock\":3")) << ex.out;
  // And the copy exports the same text.
  EXPECT_EQ(T({"export", db_, "items", "--format", GetParam()}).out, ex.out);
}

// The same from a collection whose schema declares its fields strings: the empty replica
// has no schema yet (it comes with the first sync), and must not read "5" as a number.
TEST_P(DataCliRoundTrip, DeclaredStringsImportIntoAReplicaWithoutTheSchema) {
  const std::string schema =
      R"({"fields": {"s": {"type": "string"}, "t": {"type": "string"},
                     "u": {"type": "string"}, "v": {"type": "string"},
                     "zip": {"type": "string"}, "n": {"type": "int"}}})";
  ASSERT_EQ(T({"schema", db_, "items", File("s.json", schema)}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "items", "p1", "s=\"5\"", "t=\"true\"", "u=\"[1]\"", "v=\"null\"",
               "zip=\"02134\"", "n=3"})
                .exit_code,
            0);
  auto ex = T({"export", db_, "items", "--format", GetParam()});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  auto file = File("typed." + GetParam(), ex.out);
  const std::string db2 = tmp_ / "db2";
  ASSERT_EQ(T({"init", db2}).exit_code, 0);
  auto r = T({"import", db2, "items", file});
  EXPECT_EQ(r.exit_code, 0) << r.err << "\n" << ex.out;
  auto dumped = [](const std::string& d) {  // the data, not the schema record
    std::string out;
    std::istringstream in(d);
    for (std::string line; std::getline(in, line);)
      if (line.find("_tandem_") == std::string::npos) out += line + "\n";
    return out;
  };
  EXPECT_EQ(dumped(Dump(db2)), dumped(Dump(db_))) << ex.out;
  // And into a replica that has the schema, the same.
  const std::string db3 = tmp_ / "db3";
  ASSERT_EQ(T({"init", db3}).exit_code, 0);
  ASSERT_EQ(T({"schema", db3, "items", File("s.json", schema)}).exit_code, 0);
  r = T({"import", db3, "items", file});
  EXPECT_EQ(r.exit_code, 0) << r.err << "\n" << ex.out;
  EXPECT_EQ(dumped(Dump(db3)), dumped(Dump(db_))) << ex.out;
}

INSTANTIATE_TEST_SUITE_P(Formats, DataCliRoundTrip, ::testing::Values("csv", "jsonl"));

// ---- schema ---------------------------------------------------------------------------------

constexpr char kSchema[] = R"({"fields": {
  "name":  {"type": "string", "required": true, "normalize": ["trim"]},
  "phone": {"type": "string", "normalize": ["phone"], "region": "US"},
  "qty":   {"type": "counter", "min": 0},
  "state": {"type": "string", "enum": ["new", "paid"]}}})";

TEST_F(DataCli, SchemaSetPrintAndVersions) {
  auto r = T({"schema", db_, "orders"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Has(r.err, "has no schema")) << r.err;

  r = T({"schema", db_, "orders", File("s.json", kSchema)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "version 1")) << r.err;
  r = T({"schema", db_, "orders"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "version 1")) << r.err;
  // Canonical JSON: keys sorted, no spaces, one line.
  EXPECT_EQ(
      r.out,
      "{\"fields\":{\"name\":{\"normalize\":[\"trim\"],\"required\":true,\"type\":\"string\"},"
      "\"phone\":{\"normalize\":[\"phone\"],\"region\":\"US\",\"type\":\"string\"},"
      "\"qty\":{\"min\":0,\"type\":\"counter\"},"
      "\"state\":{\"enum\":[\"new\",\"paid\"],\"type\":\"string\"}}}\n");

  // From stdin: the next version.
  auto v2 = File("s2.json", R"({"fields": {"name": {"type": "string"}}})");
  r = Sh("\"$0\" schema \"$1\" orders - < \"$2\"", {db_, v2});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "version 2")) << r.err;
  r = T({"schema", db_, "orders"});
  EXPECT_EQ(r.out, "{\"fields\":{\"name\":{\"type\":\"string\"}}}\n");
  EXPECT_TRUE(Has(r.err, "version 2")) << r.err;

  // A bad schema: refused with its reason, the stored one unchanged.
  r = T({"schema", db_, "orders", File("bad.json", R"({"fields": {"n": {"type": "integer"}}})")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "unknown type \"integer\"")) << r.err;
  r = T({"schema", db_, "orders", File("bad2.json", R"({"fields": {"id": {"type": "string"}}})")});
  EXPECT_EQ(r.exit_code, 2);
  r = T({"schema", db_, "orders", tmp_ / "missing.json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "cannot read")) << r.err;
  r = T({"schema", db_, "orders"});
  EXPECT_TRUE(Has(r.err, "version 2")) << r.err;
  // The schemas' own collection is not written directly.
  r = T({"schema", db_, "_tandem_schemas", File("s3.json", kSchema)});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(DataCli, WritesThatBreakTheSchemaExitTwoAndChangeNothing) {
  ASSERT_EQ(T({"schema", db_, "orders", File("s.json", kSchema)}).exit_code, 0);
  auto r = T(
      {"put", db_, "orders", "o1", "name=\"  Ann \"", "phone=\"(415) 555-2671\"", "state=\"new\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string stored =
      "{\"id\":\"o1\",\"name\":\"Ann\",\"phone\":\"+14155552671\",\"state\":\"new\"}\n";
  EXPECT_EQ(T({"get", db_, "orders", "o1"}).out, stored);

  r = T({"put", db_, "orders", "o1", "name=\"Bea\"", "state=\"shipped\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "state: \"shipped\" is not one of")) << r.err;
  r = T({"put", db_, "orders", "o1", "phone=\"12\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "phone:")) << r.err;
  r = T({"put", db_, "orders", "o1", "qty=3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "qty: a counter")) << r.err;
  r = T({"incr", db_, "orders", "o1", "qty", "-1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "below the minimum")) << r.err;
  r = T({"put", db_, "orders", "o2", "state=\"new\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "name is required")) << r.err;
  EXPECT_EQ(T({"get", db_, "orders", "o1"}).out, stored);
  EXPECT_EQ(T({"get", db_, "orders", "o2"}).exit_code, 1);
}

TEST_F(DataCli, ImportFollowsTheSchema) {
  ASSERT_EQ(T({"schema", db_, "orders", File("s.json", kSchema)}).exit_code, 0);
  auto in = File("in.csv",
                 "id,name,phone,qty,state\n"
                 "o1, Ann ,415-555-2671,5,new\n"
                 "o2,Bob,not a phone,1,new\n"
                 "o3,Cy,,-2,paid\n"
                 "o4,,,1,paid\n");
  auto r = T({"import", db_, "orders", in});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(Has(r.err, "line 3: phone:")) << r.err;
  EXPECT_TRUE(Has(r.err, "line 4: qty")) << r.err;
  EXPECT_TRUE(Has(r.err, "line 5:") && Has(r.err, "name is required")) << r.err;
  EXPECT_EQ(T({"ls", db_, "orders"}).out,
            "{\"id\":\"o1\",\"name\":\"Ann\",\"phone\":\"+14155552671\",\"qty\":5,\"state\":"
            "\"new\"}\n");
  // qty is a counter: the import set it, and incr adds to it.
  ASSERT_EQ(T({"incr", db_, "orders", "o1", "qty", "2"}).exit_code, 0);
  EXPECT_TRUE(Has(T({"get", db_, "orders", "o1"}).out, "\"qty\":7"));
}

// ---- stdin, files and formats -----------------------------------------------------------------

TEST_F(DataCli, StdinIsJsonLinesUnlessToldOtherwise) {
  auto jl = File("in.txt", "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\",\"n\":2}\n");
  auto r = Sh("\"$0\" import \"$1\" items - < \"$2\"", {db_, jl});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "imported 2 of 2 rows")) << r.err;
  auto csv = File("in2.txt", "id,n\nc,3\nd,x,y\n");
  r = Sh("cat \"$2\" | \"$0\" import \"$1\" items - --format csv", {db_, csv});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(Has(r.err, "line 3:")) << r.err;
  EXPECT_EQ(T({"ls", db_, "items"}).out,
            "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\",\"n\":2}\n{\"id\":\"c\",\"n\":3}\n");
  // A file given with --format whatever its name.
  r = T({"import", db_, "items", File("in3.txt", "id,n\ne,5\n"), "--format", "csv"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(T({"get", db_, "items", "e"}).out, "{\"id\":\"e\",\"n\":5}\n");
}

TEST_F(DataCli, MissingFilesAndUnknownFormatsAreClearErrors) {
  const std::string before = Dump(db_);
  auto r = T({"import", db_, "items", tmp_ / "nope.jsonl"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "cannot read") && Has(r.err, "nope.jsonl")) << r.err;
  EXPECT_EQ(CountLines(r.err), 1) << r.err;

  r = T({"import", db_, "items", File("in.jsonl", "{\"id\":\"a\"}\n"), "--format", "xml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "unknown format \"xml\"")) << r.err;

  r = T({"import", db_, "items", File("in.dat", "{\"id\":\"a\",\"n\":1}\n")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "cannot tell the format")) << r.err;

  r = T({"export", db_, "items", "--format", "xml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "unknown format \"xml\"")) << r.err;
  EXPECT_TRUE(r.out.empty());

  r = T({"import", db_, "_tandem_schemas", File("s.jsonl", "{\"id\":\"x\",\"schema\":\"{}\"}\n")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "reserved")) << r.err;

  // "*" stands for every collection in permits: no data goes there, by any command.
  r = T({"import", db_, "*", File("star.jsonl", "{\"id\":\"a\",\"n\":1}\n")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "is not a collection name")) << r.err;
  r = T({"put", db_, "*", "a", "n=1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "is not a collection name")) << r.err;
  r = T({"schema", db_, "*", File("star-schema.json", "{\"fields\":{}}")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Has(r.err, "is not a collection name")) << r.err;

  r = T({"import", tmp_ / "no-such-replica", "items", File("ok.jsonl", "{\"id\":\"a\"}\n")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(Dump(db_), before);
}

}  // namespace
}  // namespace tandem::testing
