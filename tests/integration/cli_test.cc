// The tandem CLI, run as a real program against real replica directories.
#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "process.h"
#include "raw_lmdb.h"
#include "read_only_mount.h"
#include "tandem/net/group.h"
#include "tandem/net/identity.h"
#include "tandem/storage/replica.h"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;

RunResult T(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_BIN);
  return Run(args);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = T({"init", db_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  TempDir tmp_;
  std::string db_ = tmp_ / "db";
};

TEST(CliInit, PrintsAValidDeviceIdAloneOnStdout) {
  TempDir tmp;
  auto r = T({"init", tmp / "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  std::string id = r.out.substr(0, r.out.size() - 1);
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_TRUE(net::IsValidDeviceId(id)) << id;
  // A typo in the id is caught by its check characters.
  std::string typo = id;
  typo[0] = typo[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(net::IsValidDeviceId(typo));
  // The identity key is private to the owner, and so are the data and the directory.
  for (const char* f : {"a/identity.key", "a/data.mdb", "a/lock.mdb", "a"}) {
    auto perms = fs::status(tmp / f).permissions();
    EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none) << f;
  }
  // Restored, too.
  ASSERT_EQ(T({"backup", tmp / "a", tmp / "bak"}).exit_code, 0);
  ASSERT_EQ(T({"restore", tmp / "bak", tmp / "r"}).exit_code, 0);
  auto perms = fs::status(tmp / "r/data.mdb").permissions();
  EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
}

TEST(CliInit, RefusesANonEmptyDirectoryAndChangesNothing) {
  TempDir tmp;
  fs::create_directory(tmp / "x");
  std::ofstream(tmp / "x/notes.txt") << "mine";
  auto r = T({"init", tmp / "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "x"), fs::directory_iterator()), 1);
  EXPECT_EQ(ReadFile(tmp / "x/notes.txt"), "mine");
}

TEST_F(Cli, InitRefusesAnExistingReplica) {
  auto r = T({"init", db_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already holds a replica"), std::string::npos) << r.err;
}

TEST_F(Cli, PutThenGetEveryScalarType) {
  auto r = T({"put", db_, "products", "p1", "name=\"Ann\"", "n=5", "d=2.5", "whole=5.0", "b=true",
              "z=null", "raw={\"$bytes\":\"AAEC\"}", "u=\"\xc3\xa9t\xc3\xa9\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = T({"get", db_, "products", "p1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"b\":true,\"d\":2.5,\"id\":\"p1\",\"n\":5,\"name\":\"Ann\",\"raw\":{\"$bytes\":"
            "\"AAEC\"},\"u\":\"\xc3\xa9t\xc3\xa9\",\"whole\":5.0,\"z\":null}\n");
}

// Output that cannot be written (a full disk, here /dev/full) is an error with a
// message, never a short output and status 0: a dump saved to a file must be whole.
TEST_F(Cli, OutputThatCannotBeWrittenFailsTheCommand) {
  const std::string rows = tmp_ / "rows.jsonl";
  {
    std::ofstream r(rows);
    for (int n = 0; n < 3000; ++n) r << "{\"id\":\"r" << n << "\",\"v\":" << n << "}\n";
  }
  ASSERT_EQ(T({"import", db_, "c", rows}).exit_code, 0);
  for (const char* cmd : {"dump", "ls", "changes", "info", "check"}) {
    std::string line = std::string(TANDEM_BIN) + " " + cmd + " " + db_;
    if (std::string(cmd) == "ls") line += " c";
    auto r = testing::Run({"/bin/sh", "-c", line + " > /dev/full"});
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("cannot write the output: No space left on device"), std::string::npos)
        << cmd << ": " << r.err;
  }
  auto ok = T({"ls", db_, "c"});  // and to where it can, as before
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(std::count(ok.out.begin(), ok.out.end(), '\n'), 3000);
}

// Started with its standard descriptors closed, a command must not have the replica's
// files take their numbers and print into them.
TEST_F(Cli, ClosedStandardDescriptorsNeverReachTheReplicasFiles) {
  ASSERT_EQ(T({"put", db_, "c", "keep", "v=\"precious\""}).exit_code, 0);
  const std::string run = std::string(TANDEM_BIN) + " get " + db_ + " c ";
  for (const char* closed : {" 0<&- 1>&- 2>&-", " 1>&- 2>&-", " 2>&-"}) {
    SCOPED_TRACE(closed);
    EXPECT_NE(std::system((run + "missing" + closed).c_str()), 0);
    auto r = T({"get", db_, "c", "keep"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "{\"id\":\"keep\",\"v\":\"precious\"}\n");
  }
  // Output to a closed standard output is an error, not a success that printed nothing.
  EXPECT_NE(std::system((run + "keep 1>&- 2>/dev/null").c_str()), 0);
  EXPECT_EQ(T({"check", db_}).exit_code, 0);
}

TEST_F(Cli, CountersAndSets) {
  ASSERT_EQ(T({"incr", db_, "inv", "i1", "stock", "10"}).exit_code, 0);
  ASSERT_EQ(T({"incr", db_, "inv", "i1", "stock", "-25"}).exit_code, 0);
  for (auto e : {"\"red\"", "\"blue\"", "3", "\"red\""})
    ASSERT_EQ(T({"add", db_, "inv", "i1", "tags", e}).exit_code, 0);
  ASSERT_EQ(T({"remove", db_, "inv", "i1", "tags", "\"blue\""}).exit_code, 0);
  auto r = T({"get", db_, "inv", "i1"});
  EXPECT_EQ(r.out, "{\"id\":\"i1\",\"stock\":-15,\"tags\":[3,\"red\"]}\n");
  // A removal from a field that holds nothing would bring it back as an empty set: a
  // deleted record stays deleted, a mistyped one is not made up.
  ASSERT_EQ(T({"del", db_, "inv", "i1"}).exit_code, 0);
  for (const char* rec : {"i1", "typo"}) {
    r = T({"remove", db_, "inv", rec, "tags", "\"red\""});
    EXPECT_EQ(r.exit_code, 1) << rec;
    EXPECT_NE(r.err.find("not found: inv/" + std::string(rec) + ".tags holds nothing to remove"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(T({"get", db_, "inv", rec}).exit_code, 1) << rec;
  }
  EXPECT_EQ(T({"ls", db_, "inv"}).out, "");
}

TEST_F(Cli, MissingAndDeletedRecordsAreNotFound) {
  auto r = T({"get", db_, "products", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
  ASSERT_EQ(T({"put", db_, "products", "p1", "a=1"}).exit_code, 0);
  ASSERT_EQ(T({"del", db_, "products", "p1"}).exit_code, 0);
  r = T({"get", db_, "products", "p1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not found"), std::string::npos);
  EXPECT_EQ(T({"del", db_, "products", "p1"}).exit_code, 1);
  EXPECT_EQ(T({"ls", db_, "products"}).out, "");
}

TEST_F(Cli, BadInputIsAUsageErrorWithOneLine) {
  for (std::vector<std::string> args : {
           std::vector<std::string>{"put", db_, "c", "r", "a=notjson"},
           {"put", db_, "c", "r", "a=[1,2]"},
           {"put", db_, "c", "r", "a={\"x\":1}"},
           {"put", db_, "c", "r", "noequals"},
           {"put", db_, "c", "r", "id=1"},
           {"put", db_, "c", "r", "a=99999999999999999999"},
           {"put", db_, "c", "r"},
           {"incr", db_, "c", "r", "f", "abc"},
           {"incr", db_, "c", "r", "f", "1.5"},
           {"add", db_, "c", "r", "f", "{"},
           {"put", db_, "c", "r", "b={\"$bytes\":\"AQ==\",\"$bytes\":\"Ag==\"}"},
           {"add", db_, "c", "r", "f", "{\"$bytes\":\"AQ==\",\"$bytes\":\"Ag==\"}"},
           {"get", db_, "c"},
           {"frobnicate", db_},
           {},
       }) {
    auto r = T(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err.find("tandem: "), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // Nothing was written by any of them.
  EXPECT_EQ(T({"dump", db_}).out, "");
  // Tagged objects say what is wrong with them.
  const std::string hex(64, 'a');
  for (const auto& [arg, says] : std::vector<std::pair<std::string, std::string>>{
           {"f={\"$blob\":123,\"size\":5}", "\"$blob\" must be a string"},
           {"f={\"$blob\":\"" + hex + "\",\"size\":5,\"type\":5}", "\"type\" must be a string"},
           {"f={\"$bytes\":\"" + std::string(22369624, 'A') + "\"}", "over the 16 MiB"}}) {
    const std::string file = tmp_ / "v.json";
    std::ofstream(file) << arg.substr(2);
    auto r = T({"put", db_, "c", "r", "f=@" + file});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err.substr(0, 300);
  }
}

// Counters take decimal integers only: "010" is ten (not eight), "0x10" and values past
// int64 are usage errors (they used to be read as octal, hex, or clamped, with exit 0).
TEST_F(Cli, IncrTakesDecimalIntegersOnly) {
  ASSERT_EQ(T({"incr", db_, "c", "r", "n", "010"}).exit_code, 0);
  ASSERT_EQ(T({"incr", db_, "c", "r", "n", "-3"}).exit_code, 0);
  ASSERT_EQ(T({"incr", db_, "c", "r", "n", "+1"}).exit_code, 0);
  for (const char* bad :
       {"0x10", "99999999999999999999", "-99999999999999999999", "1e3", "", "10 ", "--5"}) {
    auto r = T({"incr", db_, "c", "r", "n", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
  }
  EXPECT_EQ(T({"get", db_, "c", "r"}).out, "{\"id\":\"r\",\"n\":8}\n");
}

// Echoed input is quoted, cut short and escaped: one readable line, nothing for the
// terminal to interpret.
TEST_F(Cli, ErrorsQuoteAndEscapeWhatTheyEcho) {
  auto r = T({"put", db_, "c", "r", "x=\x1b[31mred\nline"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\\x1b[31mred\\nline"), std::string::npos) << r.err;
  r = T({"put", db_, "c", "r", "x=\"" + std::string(120000, 'y')});  // bad JSON, 120 KB
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_LT(r.err.size(), 300u) << r.err.size();
  EXPECT_NE(r.err.find("(120001 bytes)"), std::string::npos) << r.err;
  r = T({"get", db_, "c", "\x1b]0;title\x07"});  // a record id is echoed too
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x07'), std::string::npos) << r.err;
  r = T({"changes", db_, "--since", "-1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

// Values too large for a command line come from a file or stdin.
TEST_F(Cli, PutReadsAValueFromAFileOrStdin) {
  const std::string path = tmp_ / "value.json";
  std::ofstream(path) << "\"" << std::string(300000, 'z') << "\"\n";
  auto r = T({"put", db_, "c", "r", "big=@" + path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto got = T({"get", db_, "c", "r"});
  EXPECT_NE(got.out.find(std::string(300000, 'z')), std::string::npos);
  r = T({"put", db_, "c", "r", "big=@" + (tmp_ / "missing")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot read"), std::string::npos) << r.err;
  r = T({"put", db_, "c", "r", "big=@" + tmp_.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("a directory"), std::string::npos) << r.err;
  // An endless file: refused once past what a value can be, not read to the end.
  r = T({"put", db_, "c", "r", "big=@/dev/zero"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("more than a value can be"), std::string::npos) << r.err;
  // Of several assignments, the one that is wrong is named.
  std::ofstream(tmp_ / "bad.json") << "{not json";
  r = T({"put", db_, "c", "r", "ok=1", "bad=@" + (tmp_ / "bad.json")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("\"bad\": not valid JSON"), std::string::npos) << r.err;
  // A field given twice is refused rather than the last taken silently.
  r = T({"put", db_, "c", "r", "x=1", "x=2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("\"x\" is assigned twice"), std::string::npos) << r.err;
  r = testing::Run(
      {"/bin/sh", "-c",
       std::string("echo '\"from stdin\"' | ") + TANDEM_BIN + " put " + db_ + " c r2 w=@-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(T({"get", db_, "c", "r2"}).out, "{\"id\":\"r2\",\"w\":\"from stdin\"}\n");
  // A string that starts with @ is written as JSON, quoted.
  ASSERT_EQ(T({"put", db_, "c", "r3", "at=\"@home\""}).exit_code, 0);
}

// `del DIR COLL -` deletes the ids on stdin in transactions of 1,000: every line is
// checked first, repeats count once, and ids it cannot delete are counted and make the
// exit status 1 without stopping the others. CRLF line ends are dropped only when every
// line has one: an id may end in CR.
TEST_F(Cli, DelReadsIdsFromStdinInBatches) {
  const std::string rows = tmp_ / "rows.jsonl", ids = tmp_ / "ids";
  {
    std::ofstream r(rows), i(ids);
    for (int n = 0; n < 2500; ++n) {
      r << "{\"id\":\"r" << n << "\",\"x\":" << n << "}\n";
      if (n % 2 == 0) i << "r" << n << "\r\n";
    }
    i << "r0\r\n";  // again
  }
  ASSERT_EQ(T({"import", db_, "c", rows}).exit_code, 0);
  auto del = [&](const std::string& input_file) {
    return testing::Run(
        {"/bin/sh", "-c", std::string(TANDEM_BIN) + " del " + db_ + " c - < " + input_file});
  };
  auto r = del(ids);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("deleted 1250 records"), std::string::npos) << r.err;
  auto ls = T({"ls", db_, "c"});
  EXPECT_EQ(std::count(ls.out.begin(), ls.out.end(), '\n'), 1250);
  EXPECT_EQ(ls.out.find("\"id\":\"r0\""), std::string::npos);
  EXPECT_NE(ls.out.find("\"id\":\"r1\""), std::string::npos);
  // Already deleted and never there: counted, the rest still deleted, exit status 1.
  std::ofstream(tmp_ / "some") << "r0\nr1\nnope\nr3\n";
  r = del(tmp_ / "some");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("deleted 2 records"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 ids not found or already deleted (the first: r0)"), std::string::npos)
      << r.err;
  EXPECT_EQ(T({"get", db_, "c", "r3"}).exit_code, 1);
  // A bad line anywhere: nothing is deleted.
  std::ofstream(tmp_ / "bad") << "r5\n\nr7\n";
  r = del(tmp_ / "bad");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("stdin line 2: record id is empty (nothing was deleted)"), std::string::npos)
      << r.err;
  EXPECT_EQ(T({"get", db_, "c", "r5"}).exit_code, 0);
  // An id that ends in CR, among lines that do not: the CR is part of it.
  ASSERT_EQ(T({"put", db_, "c", "x\r", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "c", "x", "v=2"}).exit_code, 0);
  std::ofstream(tmp_ / "cr") << "x\r\nr5\n";
  r = del(tmp_ / "cr");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(T({"get", db_, "c", "x\r"}).exit_code, 1);
  EXPECT_EQ(T({"get", db_, "c", "x"}).exit_code, 0);
  EXPECT_EQ(T({"get", db_, "c", "r5"}).exit_code, 1);
  // Alone on its line, "y\r" may be a CRLF file's "y": with both records live, refused.
  ASSERT_EQ(T({"put", db_, "c", "y\r", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "c", "y", "v=2"}).exit_code, 0);
  std::ofstream(tmp_ / "either") << "y\r\n";
  r = del(tmp_ / "either");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("stdin line 1: records y and y<CR> both live here"), std::string::npos)
      << r.err;
  EXPECT_EQ(T({"get", db_, "c", "y\r"}).exit_code, 0);
  EXPECT_EQ(T({"get", db_, "c", "y"}).exit_code, 0);
  EXPECT_EQ(T({"check", db_}).exit_code, 0);
}

TEST(CliErrors, MissingReplicaIsARuntimeError) {
  TempDir tmp;
  auto r = T({"get", tmp / "nothing", "c", "r"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no such directory"), std::string::npos) << r.err;
  r = T({"get", tmp.path(), "c", "r"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a Tandem replica"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "lock.mdb"));
}

TEST(CliErrors, EmptyPathsAndNonNumbersAreNamedForWhatTheyAre) {
  TempDir tmp;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"init", ""}, {"gc", ""}, {"ls", "", "c"}, {"info", ""}}) {
    auto r = T(args);
    EXPECT_EQ(r.exit_code, 2) << args[0];
    EXPECT_NE(r.err.find("DIR: an empty path"), std::string::npos) << r.err;
  }
  EXPECT_NE(T({"backup", tmp / "a", ""}).err.find("DEST: an empty path"), std::string::npos);
  auto r = T({"gc", tmp / "a", "--horizon", "abc"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--horizon: not a whole number: abc"), std::string::npos) << r.err;
  r = T({"gc", tmp / "a", "--horizon", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--horizon: 0 is out of range: 1 to 3650"), std::string::npos) << r.err;
  r = T({"invite", tmp / "a", "--expires", "99999999999999999999"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is out of range"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  // Leading zeros are decimal, as the check read them (not octal, nor refused later).
  ASSERT_EQ(T({"init", tmp / "a"}).exit_code, 0);
  r = T({"gc", tmp / "a", "--horizon", "09"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = T({"sync", tmp / "a", "--peer", "127.0.0.1:9", "--blobs", "lazy="});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--blobs lazy= names no collection"), std::string::npos) << r.err;
}

TEST(CliErrors, DamagedDataFileIsRefusedAndLeftAlone) {
  TempDir tmp;
  fs::create_directory(tmp / "x");
  std::string junk(10000, 'j');
  std::ofstream(tmp / "x/data.mdb", std::ios::binary) << junk;
  auto r = T({"dump", tmp / "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("damaged"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(tmp / "x/data.mdb"), junk);
  EXPECT_FALSE(fs::exists(tmp / "x/lock.mdb"));
}

TEST(CliErrors, TruncatedDataFileIsRefused) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  ASSERT_EQ(T({"put", tmp / "db", "c", "r", "a=1"}).exit_code, 0);
  std::string data = ReadFile(tmp / "db/data.mdb");
  std::ofstream(tmp / "db/data.mdb", std::ios::binary | std::ios::trunc) << data.substr(0, 100);
  auto r = T({"get", tmp / "db", "c", "r"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ReadFile(tmp / "db/data.mdb"), data.substr(0, 100));
}

// tmp/db, a replica of 2,000 records (several pages of data), and tmp/bk, its backup.
void ReplicaAndBackupOfSeveralPages(const TempDir& tmp) {
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  {
    std::ofstream rows(tmp / "rows.jsonl");
    for (int i = 0; i < 2000; ++i) rows << "{\"id\":\"r" << i << "\",\"v\":" << i << "}\n";
  }
  ASSERT_EQ(T({"import", tmp / "db", "c", tmp / "rows.jsonl"}).exit_code, 0);
  ASSERT_EQ(T({"backup", tmp / "db", tmp / "bk"}).exit_code, 0);
}

// Cut past its meta pages, the file still opens in LMDB; the first page read beyond its
// end would kill the process (SIGBUS) before it could say anything.
TEST(CliErrors, DataFileCutShortIsRefusedByEveryCommand) {
  TempDir tmp;
  ASSERT_NO_FATAL_FAILURE(ReplicaAndBackupOfSeveralPages(tmp));
  for (const std::string dir : {"db", "bk"}) {
    const std::string data = ReadFile(tmp / (dir + "/data.mdb"));
    ASSERT_GT(data.size(), 65536u);
    std::ofstream(tmp / (dir + "/data.mdb"), std::ios::binary | std::ios::trunc)
        << data.substr(0, 65536);
  }
  for (const std::vector<std::string>& args : {std::vector<std::string>{"check", tmp / "db"},
                                               {"get", tmp / "db", "c", "r1"},
                                               {"put", tmp / "db", "c", "r1", "v=1"},
                                               {"dump", tmp / "db"},
                                               {"restore", tmp / "bk", tmp / "rs"}}) {
    auto r = T(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("data.mdb is truncated"), std::string::npos) << args[0] << ": " << r.err;
    // Restore names the backup the user gave, not the copy it checked.
    if (args[0] == "restore") {
      EXPECT_NE(r.err.find(tmp / "bk/data.mdb is truncated"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("no replica made: restore another backup"), std::string::npos) << r.err;
      EXPECT_EQ(r.err.find("restoring"), std::string::npos) << r.err;
    }
  }
  EXPECT_FALSE(fs::exists(tmp / "rs/data.mdb"));
  EXPECT_EQ(fs::file_size(tmp / "db/data.mdb"), 65536u);
}

// A restore killed by its own process id alone (a supervisor, `kill PID`, the OOM killer)
// takes its worker with it: no work goes on to publish a replica nobody waits for.
// What a killed backup left beside its target goes at the next backup made there, under
// whatever name (dated backups never reuse one); a live process's build stays.
TEST(CliErrors, ABackupSweepsWhatKilledBackupsLeftUnderOtherNames) {
  TempDir tmp;
  const std::string db = tmp / "db", bks = tmp / "bks";
  ASSERT_EQ(T({"init", db}).exit_code, 0);
  fs::create_directories(fs::path(bks) / ".monday.backup.999999999");  // no such process
  std::ofstream(fs::path(bks) / ".monday.backup.999999999" / "identity.key") << "secret";
  const std::string live = ".sunday.backup." + std::to_string(::getpid());
  fs::create_directories(fs::path(bks) / live);
  fs::create_directories(fs::path(bks) / ".mine");  // not a build
  ASSERT_EQ(T({"backup", db, bks + "/tuesday"}).exit_code, 0);
  EXPECT_FALSE(fs::exists(fs::path(bks) / ".monday.backup.999999999"));
  EXPECT_TRUE(fs::exists(fs::path(bks) / live));
  EXPECT_TRUE(fs::exists(fs::path(bks) / ".mine"));
  EXPECT_TRUE(fs::exists(fs::path(bks) / "tuesday" / "data.mdb"));
}

TEST(CliErrors, AKilledRestoreLeavesNoWorkerBehind) {
  TempDir tmp;
  ASSERT_NO_FATAL_FAILURE(ReplicaAndBackupOfSeveralPages(tmp));
  // The worker waits at the backup's data file: a pipe nobody writes to yet.
  fs::remove(tmp / "bk/data.mdb");
  ASSERT_EQ(::mkfifo((tmp / "bk/data.mdb").c_str(), 0600), 0);
  Child restore({TANDEM_BIN, "restore", tmp / "bk", tmp / "rs"});
  auto worker_of = [](pid_t parent) {
    for (const auto& e : fs::directory_iterator("/proc")) {
      std::ifstream stat(e.path() / "stat");
      std::string line;
      if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) continue;
      std::istringstream rest(line.substr(line.rfind(')') + 2));
      char state;
      pid_t ppid = 0;
      if (rest >> state >> ppid && ppid == parent && state != 'Z')
        return static_cast<pid_t>(std::stol(e.path().filename().string()));
    }
    return pid_t{-1};
  };
  pid_t worker = -1;
  for (int i = 0; i < 2000 && worker < 0; ++i) {
    worker = worker_of(restore.pid());
    if (worker < 0) ::usleep(5000);
  }
  ASSERT_GT(worker, 0) << "the restore's worker never started";
  restore.Kill(SIGKILL);
  restore.Wait();
  bool gone = false;
  for (int i = 0; i < 2000 && !gone; ++i) {
    gone = ::kill(worker, 0) != 0 && errno == ESRCH;
    if (!gone) {
      std::ifstream stat("/proc/" + std::to_string(worker) + "/stat");
      std::string line;
      gone = !std::getline(stat, line) || line.find(") Z") != std::string::npos;
    }
    if (!gone) ::usleep(5000);
  }
  if (!gone) {  // let it go on, and end it: a worker left waiting must not outlive the test
    const int fd = ::open((tmp / "bk/data.mdb").c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
    ::kill(worker, SIGKILL);
  }
  EXPECT_TRUE(gone) << "the worker of a killed restore kept running";
}

// Bits flipped inside data.mdb: LMDB trusts its pages and may crash reading them, but
// check and restore (what a user runs on a suspect replica or backup) never die of it:
// they pass or fail with a message, and a failed restore leaves nothing behind.
TEST(CliErrors, CheckAndRestoreOfAFileWithFlippedBitsNeverCrash) {
  TempDir tmp;
  ASSERT_NO_FATAL_FAILURE(ReplicaAndBackupOfSeveralPages(tmp));
  const std::string good = ReadFile(tmp / "bk/data.mdb");
  ASSERT_GT(good.size(), 3 * 4096u);
  fs::create_directory(tmp / "keep");  // a directory restore refuses: left as it is
  std::ofstream(tmp / "keep/precious") << "mine";
  int failed = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    std::string bad = good;
    uint32_t x = seed * 2654435761u;
    for (int i = 0; i < 20; ++i) {  // past the two meta pages
      x = x * 1664525u + 1013904223u;
      const size_t at = 2 * 4096 + x % (bad.size() - 2 * 4096);
      bad[at] = static_cast<char>(bad[at] ^ (1 << (x >> 29)));
    }
    std::ofstream(tmp / "bk/data.mdb", std::ios::binary | std::ios::trunc) << bad;
    auto r = T({"check", tmp / "bk"});
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << "seed " << seed << ": " << r.err;
    if (r.exit_code != 0) ++failed;
    const std::string target = tmp / ("rs" + std::to_string(seed));
    r = T({"restore", tmp / "bk", target});
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << "seed " << seed << ": " << r.err;
    if (r.exit_code != 0) {
      EXPECT_FALSE(fs::exists(target)) << "seed " << seed;
      EXPECT_EQ(r.err.find("restoring"), std::string::npos) << "seed " << seed << ": " << r.err;
    }
    // Nor a copy of the backup's data hidden beside it, crashed or not.
    for (const auto& e : fs::directory_iterator(tmp.path()))
      EXPECT_EQ(e.path().filename().string().find(".restoring."), std::string::npos)
          << "seed " << seed << ": " << e.path();
    // Other commands may still crash on it, but say what to run.
    r = T({"dump", tmp / "bk"});
    if (r.exit_code >= 128) {
      EXPECT_NE(r.err.find("`tandem check " + tmp / "bk" + "`"), std::string::npos)
          << "seed " << seed << ": " << r.err;
    }
    r = T({"restore", tmp / "bk", tmp / "keep"});  // refused before the backup is read
    EXPECT_EQ(r.exit_code, 2) << "seed " << seed << ": " << r.err;
    EXPECT_NE(r.err.find("is not empty"), std::string::npos) << "seed " << seed << ": " << r.err;
    EXPECT_EQ(ReadFile(tmp / "keep/precious"), "mine") << "seed " << seed;
  }
  EXPECT_GT(failed, 0);  // the flips were found at least sometimes
}

// A damaged key file leaves a replica that cannot pair or sync: check says so.
TEST(CliErrors, CheckFindsADamagedKeyFile) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  ASSERT_EQ(T({"check", tmp / "db"}).exit_code, 0);
  for (const std::string name : {"group.root", "group.key", "identity.key"}) {
    const std::string path = tmp / ("db/" + name);
    const std::string good = ReadFile(path);
    for (const std::string& bad : {std::string(), std::string("garbage\n")}) {
      std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
      auto r = T({"check", tmp / "db"});
      EXPECT_EQ(r.exit_code, 1) << name << ": " << r.err;
      EXPECT_NE(r.err.find(name), std::string::npos) << name << ": " << r.err;
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << good;
    EXPECT_EQ(T({"check", tmp / "db"}).exit_code, 0) << name;
  }
}

// A reference to a blob held here must give its size: a wrong one would be believed by
// every device that fetches it.
// A count imported (or put) as a plain number is a value, not a counter: incr refuses to
// replace it with N unless told, and says what to give to count on from it.
TEST(CliErrors, IncrDoesNotSilentlyReplaceAValue) {
  TempDir tmp;
  const std::string db = tmp / "db";
  ASSERT_EQ(T({"init", db}).exit_code, 0);
  std::ofstream(tmp / "stock.csv") << "id,stock\np1,7\n";
  ASSERT_EQ(T({"import", db, "products", tmp / "stock.csv"}).exit_code, 0);
  auto r = T({"incr", db, "products", "p1", "stock", "5"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("products/p1.stock holds 7, not a counter"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("give 12 with --replace-value"), std::string::npos) << r.err;
  EXPECT_EQ(T({"get", db, "products", "p1"}).out, "{\"id\":\"p1\",\"stock\":7}\n");
  ASSERT_EQ(T({"incr", db, "products", "p1", "stock", "12", "--replace-value"}).exit_code, 0);
  ASSERT_EQ(T({"incr", db, "products", "p1", "stock", "-2"}).exit_code, 0);
  EXPECT_EQ(T({"get", db, "products", "p1"}).out, "{\"id\":\"p1\",\"stock\":10}\n");
  // A set too; a field that holds nothing yet, or a counter, takes increments as before.
  ASSERT_EQ(T({"add", db, "products", "p1", "tags", "\"blue\""}).exit_code, 0);
  EXPECT_EQ(T({"incr", db, "products", "p1", "tags", "1"}).exit_code, 2);
  ASSERT_EQ(T({"incr", db, "products", "p2", "stock", "3"}).exit_code, 0);
}

TEST(CliErrors, ABlobReferenceWithAWrongSizeIsRefused) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  std::ofstream(tmp / "f.bin", std::ios::binary) << std::string(1000, 'b');
  auto att = T({"attach", tmp / "db", "c", "r", "doc", tmp / "f.bin"});
  ASSERT_EQ(att.exit_code, 0) << att.err;
  const std::string at = att.out.find("\"$blob\":\"") != std::string::npos ? "\"$blob\":\"" : "";
  ASSERT_FALSE(at.empty()) << att.out;
  const std::string hash = att.out.substr(att.out.find(at) + at.size(), 64);
  auto ref = [&](const std::string& size) {
    return "x={\"$blob\":\"" + hash + "\",\"size\":" + size + "}";
  };
  auto r = T({"put", tmp / "db", "c", "r2", ref("1001")});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("holds 1000 bytes, not the 1001 its reference says"), std::string::npos)
      << r.err;
  r = T({"put", tmp / "db", "c", "r2", ref("-1")});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("\"size\" must be a whole number of bytes"), std::string::npos) << r.err;
  EXPECT_EQ(T({"get", tmp / "db", "c", "r2"}).exit_code, 1);
  EXPECT_EQ(T({"put", tmp / "db", "c", "r2", ref("1000")}).exit_code, 0);
}

TEST(CliErrors, QuarantineReleaseTakesOnlyIdsThatCanBe) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  auto r = T({"quarantine", tmp / "db", "--release", "-1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err.find("18446744073709551615"), std::string::npos) << r.err;
  r = T({"quarantine", tmp / "db", "--release", "5"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("no quarantined change 5"), std::string::npos) << r.err;
}

TEST(CliErrors, NewerFormatIsRefused) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  uint32_t v = 99;
  RawPut(tmp / "db", "meta", "format", std::string(reinterpret_cast<char*>(&v), 4));
  auto r = T({"dump", tmp / "db"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("newer Tandem"), std::string::npos) << r.err;
}

TEST(CliErrors, ForeignLmdbEnvironmentIsRefused) {
  TempDir tmp;
  RawPut(tmp.path(), "other", "k", "v");
  auto r = T({"dump", tmp.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a Tandem replica"), std::string::npos) << r.err;
}

// Tandem's tables without `meta` (what a copy taken mid-write may leave) are a damaged
// replica, not another program's environment.
TEST(CliErrors, AReplicaWithoutItsMetaTableIsDamagedNotForeign) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  ASSERT_EQ(T({"put", tmp / "db", "c", "r", "a=1"}).exit_code, 0);
  {
    RawWriter w(tmp / "db");
    ASSERT_EQ(mdb_drop(w.txn, w.Open("meta"), 1), 0);
    w.Commit();
  }
  for (const char* cmd : {"dump", "check"}) {
    auto r = T({cmd, tmp / "db"});
    EXPECT_EQ(r.exit_code, 1) << cmd;
    EXPECT_NE(r.err.find("data.mdb is damaged"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("restore it from a backup"), std::string::npos) << r.err;
  }
}

// A device whose identity.key is gone has whole data but cannot pair or sync: check and
// status say so.
TEST(CliErrors, AMissingIdentityKeyIsNamed) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  auto r = T({"check", tmp / "db"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"identity\":true"), std::string::npos) << r.out;
  fs::remove(fs::path(tmp / "db") / "identity.key");
  r = T({"check", tmp / "db"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("\"identity\":false"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("identity.key is missing: this device cannot pair or sync"),
            std::string::npos)
      << r.err;
  r = T({"status", tmp / "db"});
  EXPECT_NE(r.out.find("device unknown: identity.key is missing"), std::string::npos) << r.out;
}

// A permit that would change nothing is not signed (every statement is kept for good):
// said so, exit 1; another level, or the same one for another collection, is signed.
TEST(CliErrors, APermitThatChangesNothingIsNotSigned) {
  TempDir tmp;
  ASSERT_EQ(T({"init", tmp / "db"}).exit_code, 0);
  ASSERT_EQ(T({"permit", tmp / "db", "orders", "reader", "none"}).exit_code, 0);
  const std::string before = T({"dump", tmp / "db", "--system"}).out;
  auto r = T({"permit", tmp / "db", "orders", "reader", "none"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is none already, signed by this device: nothing to do"), std::string::npos)
      << r.err;
  EXPECT_EQ(T({"dump", tmp / "db", "--system"}).out, before);
  EXPECT_EQ(T({"permit", tmp / "db", "orders", "reader", "read"}).exit_code, 0);
  EXPECT_EQ(T({"permit", tmp / "db", "notes", "reader", "read"}).exit_code, 0);
  EXPECT_EQ(T({"permit", tmp / "db", "orders", "member", "read"}).exit_code, 0);
}

TEST(CliErrors, CorruptFieldStateIsReported) {
  TempDir tmp;
  // Made with the library, not `init`, so that "c" and "a" are the first names interned.
  ASSERT_TRUE(tandem::storage::CreateReplica(tmp / "db").ok());
  ASSERT_EQ(T({"put", tmp / "db", "c", "r", "a=1"}).exit_code, 0);
  // Stored key: varint(name index of "c") "r" \0 varint(name index of "a"), see format.md.
  RawPut(tmp / "db", "fields", std::string("\0r\0\x01", 4), std::string("\x01\x10\xff\xff", 4));
  auto r = T({"get", tmp / "db", "c", "r"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("corrupt"), std::string::npos) << r.err;
  r = T({"check", tmp / "db"});
  EXPECT_EQ(r.exit_code, 1);
}

// A status file no daemon of ours wrote (fields of other types, a FIFO that would never
// end, a directory) is not read as one: status says no daemon runs, in full.
TEST_F(Cli, StatusIgnoresAStatusFileItCannotTrust) {
  const std::string file = db_ + "/daemon.json";
  for (const std::string& text :
       {std::string(R"({"running":true,"pid":"x"})"), std::string(R"({"running":"yes"})"),
        std::string(R"({"running":true,"pid":1,"peers":"x"})"), std::string("[1,2]")}) {
    std::ofstream(file) << text;
    auto r = T({"status", db_});
    EXPECT_EQ(r.exit_code, 0) << text << ": " << r.err;
    EXPECT_NE(r.out.find("daemon: not running"), std::string::npos) << text << ": " << r.out;
    EXPECT_NE(r.out.find("replicas synced with: 0"), std::string::npos) << r.out;
  }
  std::filesystem::remove(file);
  ASSERT_EQ(::mkfifo(file.c_str(), 0644), 0);
  auto r = T({"status", db_});  // does not wait for a writer that never comes
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("daemon: not running"), std::string::npos) << r.out;
}

TEST_F(Cli, LsIsSortedByIdAsJsonLines) {
  for (auto id : {"b", "a", "c10", "c2"})
    ASSERT_EQ(T({"put", db_, "things", id, "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "other", "x", "v=1"}).exit_code, 0);
  EXPECT_EQ(T({"ls", db_, "things"}).out,
            "{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":1}\n{\"id\":\"c10\",\"v\":1}\n"
            "{\"id\":\"c2\",\"v\":1}\n");
}

TEST_F(Cli, DumpIsCanonicalAndIndependentOfWriteOrder) {
  TempDir tmp;
  std::string other = tmp / "other";
  ASSERT_EQ(T({"init", other}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "b", "2", "x=1", "y=\"s\""}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "a", "1", "z=true"}).exit_code, 0);
  ASSERT_EQ(T({"put", other, "a", "1", "z=true"}).exit_code, 0);
  ASSERT_EQ(T({"put", other, "b", "2", "y=\"s\""}).exit_code, 0);
  ASSERT_EQ(T({"put", other, "b", "2", "x=1"}).exit_code, 0);
  auto a = T({"dump", db_}), b = T({"dump", other});
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out,
            "{\"collection\":\"a\",\"record\":{\"id\":\"1\",\"z\":true}}\n"
            "{\"collection\":\"b\",\"record\":{\"id\":\"2\",\"x\":1,\"y\":\"s\"}}\n");
}

// The "cursor" of each line of a change feed, in order.
std::vector<uint64_t> FeedCursors(const std::string& out) {
  std::vector<uint64_t> cursors;
  const std::string name = "\"cursor\":";
  for (size_t at = out.find(name); at != std::string::npos; at = out.find(name, at + 1))
    cursors.push_back(std::stoull(out.substr(at + name.size())));
  return cursors;
}

TEST_F(Cli, ChangesFeedEachRecordOnceWithCursors) {
  ASSERT_EQ(T({"put", db_, "c", "r1", "a=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "c", "r2", "a=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "c", "r1", "a=2"}).exit_code, 0);
  // `init` wrote this device's trust-set record, which the feed leaves out unless asked
  // with --system. Cursors are change-log positions: they grow, not one by one.
  auto r = T({"changes", db_});
  const auto c = FeedCursors(r.out);
  ASSERT_EQ(c.size(), 2u) << r.out;
  EXPECT_LT(c[0], c[1]);
  EXPECT_EQ(r.out, "{\"collection\":\"c\",\"cursor\":" + std::to_string(c[0]) +
                       ",\"deleted\":false,\"id\":\"r2\",\"record\":{\"a\":1,\"id\":\"r2\"}}\n"
                       "{\"collection\":\"c\",\"cursor\":" +
                       std::to_string(c[1]) +
                       ",\"deleted\":false,\"id\":\"r1\",\"record\":{\"a\":2,\"id\":\"r1\"}}\n");
  ASSERT_EQ(T({"del", db_, "c", "r2"}).exit_code, 0);
  r = T({"changes", db_, "--since", std::to_string(c[1])});
  const auto d = FeedCursors(r.out);
  ASSERT_EQ(d.size(), 1u) << r.out;
  EXPECT_GT(d[0], c[1]);
  EXPECT_EQ(r.out, "{\"collection\":\"c\",\"cursor\":" + std::to_string(d[0]) +
                       ",\"deleted\":true,\"id\":\"r2\"}\n");
  EXPECT_EQ(T({"changes", db_, "--since", std::to_string(d[0])}).out, "");
  r = T({"changes", db_, "--system"});
  EXPECT_EQ(r.out.find("{\"collection\":\"_tandem_devices\",\"cursor\":"), 0u) << r.out;
  EXPECT_NE(r.out.find("{\"collection\":\"_tandem_bindings\",\"cursor\":"), std::string::npos)
      << r.out;
  const auto all = FeedCursors(r.out);
  ASSERT_EQ(all.size(), 4u) << r.out;
  EXPECT_LT(all[0], c[1]);
}

// Joining merges both ways: a replica that holds data, or trusts devices of another
// group, joins only when told to.
TEST_F(Cli, JoinRefusesAReplicaWithDataOrOtherDevicesUnlessToldToMerge) {
  const std::string other = tmp_ / "other", fresh = tmp_ / "fresh", trusting = tmp_ / "trusting";
  for (const auto& d : {other, fresh, trusting}) ASSERT_EQ(T({"init", d}).exit_code, 0);
  auto code = T({"invite", other, "--address", "127.0.0.1:9"});
  ASSERT_EQ(code.exit_code, 0) << code.err;
  EXPECT_EQ(T({"join", fresh, code.out}).exit_code, 0) << "a new replica joins";

  ASSERT_EQ(T({"put", db_, "notes", "n1", "text=\"mine\""}).exit_code, 0);
  auto r = T({"join", db_, code.out});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already holds records in 1 collection (notes)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("--merge"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(db_ + "/join.code"));

  {
    auto rep = storage::OpenReplica(trusting);
    auto self = net::LoadIdentity(trusting + "/identity.key");
    ASSERT_TRUE(rep.ok() && self.ok());
    const net::GroupPaths files{trusting + "/group.key",        trusting + "/invites",
                                trusting + "/join.code",        trusting + "/group.root",
                                trusting + "/replica.bindings", ""};
    ASSERT_TRUE(
        net::Grant(**rep, files, *self, net::GenerateIdentity().public_key, net::Role::kMember, 1)
            .ok());
  }
  r = T({"join", trusting, code.out});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("1 other device it trusts"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(trusting + "/join.code"));
  // With --merge, said plainly: the devices it trusted stay out of the new group.
  r = T({"join", trusting, code.out, "--merge"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("the 1 other device(s) this replica trusts do not become members"),
            std::string::npos)
      << r.err;

  r = T({"join", db_, code.out, "--merge"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("joining with --merge: at the first sync, records in 1 collection(s)"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(fs::exists(db_ + "/join.code"));

  // Schemas this replica set as its own founder: a member may not bring them (the group
  // would refuse them while this replica kept applying them); an admin may.
  const std::string shaped = tmp_ / "shaped";
  ASSERT_EQ(T({"init", shaped}).exit_code, 0);
  const std::string schema = tmp_ / "s.json";
  std::ofstream(schema) << R"({"fields":{"t":{"type":"int"}}})";
  ASSERT_EQ(T({"schema", shaped, "notes", schema}).exit_code, 0);
  r = T({"join", shaped, code.out, "--merge"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("holds schemas (for notes)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(shaped + "/join.code"));
  auto admin = T({"invite", other, "--address", "127.0.0.1:9", "--role", "admin"});
  ASSERT_EQ(admin.exit_code, 0) << admin.err;
  EXPECT_EQ(T({"join", shaped, admin.out, "--merge"}).exit_code, 0);
}

TEST_F(Cli, ConflictsOfASingleWriterAreEmpty) {
  ASSERT_EQ(T({"put", db_, "c", "r", "a=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", db_, "c", "r", "a=2"}).exit_code, 0);
  auto r = T({"conflicts", db_, "c", "r"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "{}\n");
}

TEST_F(Cli, BackupAndRestoreGiveANewReplicaWithTheSameData) {
  ASSERT_EQ(T({"put", db_, "c", "r", "a=1"}).exit_code, 0);
  ASSERT_EQ(T({"incr", db_, "c", "r", "n", "7"}).exit_code, 0);
  std::string bk = tmp_ / "bk", restored = tmp_ / "restored";
  // Never inside the replica's directory, however it is named.
  for (const std::string& inside : {db_ + "/bk", db_ + "/x/../y", db_ + "/"}) {
    auto in = T({"backup", db_, inside});
    EXPECT_EQ(in.exit_code, 2) << inside;
    EXPECT_NE(in.err.find("inside the replica's directory"), std::string::npos) << in.err;
  }
  EXPECT_FALSE(fs::exists(db_ + "/bk"));
  ASSERT_EQ(T({"backup", db_, bk}).exit_code, 0);
  EXPECT_NE(T({"backup", db_, bk}).exit_code, 0);  // never over an existing backup
  auto r = T({"restore", bk, restored});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(T({"dump", restored}).out, T({"dump", db_}).out);
  auto a = T({"info", db_}).out, b = T({"info", restored}).out;
  auto id_of = [](const std::string& info) {
    return info.substr(info.find("\"replica_id\":\"") + 14, 32);
  };
  EXPECT_NE(id_of(a), id_of(b));
  // Written alone, the replica is of the format its checksums need.
  EXPECT_NE(a.find("\"format\":" + std::to_string(storage::kFormatFastSums)), std::string::npos)
      << a;
  // The restored replica knows the old one's events, and issues its own under its new id:
  // its binding (published at the first open), then the increment.
  EXPECT_NE(b.find(id_of(a)), std::string::npos);
  EXPECT_NE(b.find("\"" + id_of(b) + "\":1"), std::string::npos) << b;
  ASSERT_EQ(T({"incr", restored, "c", "r", "n", "1"}).exit_code, 0);
  EXPECT_NE(T({"info", restored}).out.find("\"" + id_of(b) + "\":2"), std::string::npos);
  EXPECT_EQ(T({"check", restored}).exit_code, 0);
  // The same device, still in its group: identity and group key come along.
  EXPECT_EQ(T({"devices", restored}).out, T({"devices", db_}).out);
  std::ifstream g1(db_ + "/group.key"), g2(restored + "/group.key");
  std::stringstream k1, k2;
  k1 << g1.rdbuf();
  k2 << g2.rdbuf();
  EXPECT_EQ(k1.str().size(), 32u);
  EXPECT_EQ(k1.str(), k2.str());
  EXPECT_EQ(T({"restore", bk, restored}).exit_code, 2);  // not over a replica
  EXPECT_EQ(T({"restore", tmp_ / "nobackup", tmp_ / "r3"}).exit_code, 1);
  EXPECT_FALSE(fs::exists(tmp_ / "r3"));
}

// Reading a backup, or any copy of a replica, leaves it as it is: no replica id of its
// own (which a copy takes when opened to write), no binding, no event. The first write
// gives it its own id, as before.
TEST_F(Cli, CommandsThatOnlyReadLeaveACopyAsItIs) {
  ASSERT_EQ(T({"put", db_, "c", "r", "a=1"}).exit_code, 0);
  const std::string bk = tmp_ / "bk";
  ASSERT_EQ(T({"backup", db_, bk}).exit_code, 0);
  const std::string info_db = T({"info", db_}).out;
  const std::string data = ReadFile(bk + "/data.mdb");
  for (std::vector<std::string> cmd : {std::vector<std::string>{"ls", bk, "c"},
                                       {"get", bk, "c", "r"},
                                       {"conflicts", bk, "c", "r"},
                                       {"dump", bk},
                                       {"changes", bk},
                                       {"export", bk, "c"},
                                       {"check", bk},
                                       {"info", bk},
                                       {"devices", bk},
                                       {"permissions", bk},
                                       {"where", bk, "c", "r"},
                                       {"quarantine", bk},
                                       {"status", bk},
                                       {"blobs", bk}}) {
    auto r = T(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd[0] << ": " << r.err;
    EXPECT_TRUE(ReadFile(bk + "/data.mdb") == data) << cmd[0] << " changed the backup";
  }
  EXPECT_FALSE(fs::exists(bk + "/replica.bindings"));
  EXPECT_FALSE(fs::exists(bk + "/lock.mdb"));
  // It reads as the replica it copies: the same id and version vector.
  EXPECT_EQ(T({"info", bk}).out, info_db);
  EXPECT_EQ(T({"dump", bk}).out, T({"dump", db_}).out);
  // A backup is kept as it was made: every command that writes is refused, and a backup
  // of it is another backup.
  for (std::vector<std::string> cmd : {std::vector<std::string>{"put", bk, "c", "r2", "a=2"},
                                       {"del", bk, "c", "r"},
                                       {"gc", bk},
                                       {"quarantine", bk, "--release-all"},
                                       {"serve", bk, "--listen", "127.0.0.1:0"}}) {
    auto r = T(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd[0];
    EXPECT_NE(r.err.find("is a backup, kept as it was made"), std::string::npos) << r.err;
    EXPECT_TRUE(ReadFile(bk + "/data.mdb") == data) << cmd[0] << " changed the backup";
  }
  ASSERT_EQ(T({"backup", bk, tmp_ / "bk2"}).exit_code, 0);
  EXPECT_EQ(T({"put", tmp_ / "bk2", "c", "r2", "a=2"}).exit_code, 2);
  EXPECT_EQ(T({"dump", tmp_ / "bk2"}).out, T({"dump", db_}).out);
  EXPECT_TRUE(ReadFile(bk + "/data.mdb") == data);
  // A lock file made in it (by an older build, say) is read through, as any replica's.
  {
    std::ofstream(bk + "/lock.mdb");
    EXPECT_EQ(T({"dump", bk}).out, T({"dump", db_}).out);
    EXPECT_EQ(T({"put", bk, "c", "r2", "a=2"}).exit_code, 2);
    fs::remove(bk + "/lock.mdb");
  }
  // A file or directory named BACKUP that tandem did not write marks nothing.
  fs::create_directory(db_ + "/BACKUP");
  EXPECT_EQ(T({"put", db_, "c", "r3", "a=3"}).exit_code, 0);
  fs::remove(db_ + "/BACKUP");
  std::ofstream(db_ + "/BACKUP") << "my notes\n";
  EXPECT_EQ(T({"put", db_, "c", "r4", "a=4"}).exit_code, 0);
  fs::remove(db_ + "/BACKUP");
  // Restored, it writes under an id of its own.
  ASSERT_EQ(T({"restore", bk, tmp_ / "back"}).exit_code, 0);
  ASSERT_EQ(T({"put", tmp_ / "back", "c", "r2", "a=2"}).exit_code, 0);
  EXPECT_NE(T({"info", tmp_ / "back"}).out, info_db);
}

// A blob held whole is read from a backup like any data; one not held whole there would
// have to be asked for, which a backup refuses.
TEST_F(Cli, ABlobIsReadFromABackup) {
  const std::string file = tmp_ / "photo.bin";
  std::string bytes(700000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 % 251);
  std::ofstream(file, std::ios::binary) << bytes;
  ASSERT_EQ(T({"attach", db_, "c", "r", "img", file}).exit_code, 0);
  auto listed = T({"blobs", db_, "--json"});
  const size_t at = listed.out.find("\"hash\":\"");
  ASSERT_NE(at, std::string::npos) << listed.out;
  const std::string hash = listed.out.substr(at + 8, 64);
  const std::string bk = tmp_ / "bk";
  ASSERT_EQ(T({"backup", db_, bk}).exit_code, 0);
  auto r = T({"blob", bk, hash});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == bytes);
  EXPECT_FALSE(fs::exists(bk + "/lock.mdb"));
}

// A copy of a replica made with cp (a phone migration, a file-level restore) reads as
// its original until a command writes; that write takes an id of its own first, and
// leaves the original's events as they were.
TEST_F(Cli, ACopiedReplicaTakesAnIdOfItsOwnAtItsFirstWrite) {
  ASSERT_EQ(T({"put", db_, "c", "r", "a=1"}).exit_code, 0);
  ASSERT_EQ(T({"invite", db_}).exit_code, 0);
  const auto invites = [](const std::string& dir) {
    std::error_code ec;
    return std::distance(fs::directory_iterator(dir + "/invites", ec), fs::directory_iterator());
  };
  ASSERT_EQ(invites(db_), 1);
  const std::string info_db = T({"info", db_}).out;
  const std::string cp = tmp_ / "cp";
  fs::copy(db_, cp, fs::copy_options::recursive);
  EXPECT_EQ(T({"info", cp}).out, info_db);
  ASSERT_EQ(T({"put", cp, "c", "r2", "a=2"}).exit_code, 0);
  EXPECT_NE(T({"info", cp}).out, info_db);
  EXPECT_EQ(T({"check", cp}).exit_code, 0);
  EXPECT_EQ(T({"get", db_, "c", "r2"}).exit_code, 1);
  // The copy does not honour its original's invites (a code works once, and the original
  // may burn it): they are dropped as it takes its id.
  EXPECT_EQ(invites(cp), 0);
  EXPECT_EQ(invites(db_), 1);
}

// A backup on a read-only medium (a snapshot, a write-protected stick) reads as the
// replica it copies; a write fails naming the cause.
TEST_F(Cli, ABackupOnAReadOnlyMediumIsRead) {
  ASSERT_EQ(T({"put", db_, "c", "r", "a=1"}).exit_code, 0);
  const std::string bk = tmp_ / "bk", ro = tmp_ / "ro";
  ASSERT_EQ(T({"backup", db_, bk}).exit_code, 0);
  ReadOnlyMount mount(bk, ro);
  if (!mount.Mounted()) GTEST_SKIP() << "a read-only bind mount needs root";
  for (std::vector<std::string> cmd : {std::vector<std::string>{"ls", ro, "c"},
                                       {"get", ro, "c", "r"},
                                       {"dump", ro},
                                       {"check", ro},
                                       {"info", ro},
                                       {"devices", ro},
                                       {"permissions", ro},
                                       {"where", ro, "c", "r"},
                                       {"status", ro}}) {
    auto r = T(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd[0] << ": " << r.err;
  }
  EXPECT_EQ(T({"info", ro}).out, T({"info", db_}).out);
  EXPECT_EQ(T({"dump", ro}).out, T({"dump", db_}).out);
  auto w = T({"put", ro, "c", "r2", "a=2"});
  EXPECT_NE(w.exit_code, 0);
  EXPECT_NE(w.err.find("is a backup"), std::string::npos) << w.err;
  // A plain copy there reads alike, and a write names the medium.
  const std::string cp = tmp_ / "cp", ro2 = tmp_ / "ro2";
  fs::copy(db_, cp, fs::copy_options::recursive);
  ReadOnlyMount copy_mount(cp, ro2);
  ASSERT_TRUE(copy_mount.Mounted());
  EXPECT_EQ(T({"dump", ro2}).out, T({"dump", db_}).out);
  w = T({"put", ro2, "c", "r2", "a=2"});
  EXPECT_NE(w.exit_code, 0);
  EXPECT_NE(w.err.find("read-only file system"), std::string::npos) << w.err;
}

TEST(CliHelp, EveryCommandHasHelp) {
  for (auto cmd :
       {"init",      "put",     "incr",    "add",    "remove",  "del",   "get",  "ls",
        "conflicts", "dump",    "changes", "backup", "restore", "check", "info", "invite",
        "join",      "devices", "revoke",  "serve",  "sync",    "status"}) {
    auto r = T({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd;
  }
}

}  // namespace
}  // namespace tandem::testing
