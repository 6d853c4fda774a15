// Several processes on one replica: a writer process commits while a `tandem changes
// --follow` process prints the feed; every change appears, in order, none missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "process.h"
#include "tandem/storage/replica.h"

namespace tandem::testing {
namespace {

// A follower whose replica is removed says so and ends, instead of waiting for ever.
TEST(MultiProcess, FollowerEndsWhenItsReplicaIsRemoved) {
  TempDir tmp;
  const std::string db = tmp / "db";
  ASSERT_TRUE(storage::CreateReplica(db).ok());
  ASSERT_EQ(testing::Run({WRITER_BIN, db, "1"}).exit_code, 0);
  Child follower({TANDEM_BIN, "changes", db, "--follow"});
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline)
    ASSERT_TRUE(follower.ReadSome(&out, 50));  // it is following
  std::filesystem::remove_all(db);
  bool ended = false;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!ended && std::chrono::steady_clock::now() < deadline)
    ended = !follower.ReadSome(&out, 50);
  if (!ended) follower.Kill(SIGKILL);
  auto r = follower.Finish();
  ASSERT_TRUE(ended) << "still following a removed replica";
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("was removed or replaced while following its changes"), std::string::npos)
      << r.err;
}

TEST(MultiProcess, FollowerSeesEveryChangeInOrder) {
  TempDir tmp;
  const std::string db = tmp / "db";
  ASSERT_TRUE(storage::CreateReplica(db).ok());
  Child follower({TANDEM_BIN, "changes", db, "--follow"});
  constexpr int kWrites = 300;
  auto w = testing::Run({WRITER_BIN, db, std::to_string(kWrites)});
  ASSERT_EQ(w.exit_code, 0) << w.err;

  // Read until the follower has shown the last write (a generous bound, not a timing
  // assertion: the feed polls every 20 ms).
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  const std::string last = "\"id\":\"r" + std::to_string(kWrites - 1) + "\"";
  // Until the whole line of the last write has arrived (a read can end mid-line).
  auto complete = [&] {
    size_t at = out.find(last);
    return at != std::string::npos && out.find('\n', at) != std::string::npos;
  };
  while (!complete() && std::chrono::steady_clock::now() < deadline)
    ASSERT_TRUE(follower.ReadSome(&out, 50));
  follower.Kill(SIGTERM);
  out += follower.Finish().out;

  std::istringstream lines(out.substr(0, out.rfind('\n') + 1));
  int next = 0;
  uint64_t last_cursor = 0;
  int64_t last_total = 0;
  for (std::string l; std::getline(lines, l);) {
    auto j = nlohmann::json::parse(l);
    uint64_t cursor = j["cursor"];
    EXPECT_GT(cursor, last_cursor);  // strictly ascending
    last_cursor = cursor;
    std::string id = j["id"];
    if (id == "total") {
      int64_t n = j["record"]["n"];
      EXPECT_GE(n, last_total);
      last_total = n;
      continue;
    }
    // Each record once, in commit order.
    EXPECT_EQ(id, "r" + std::to_string(next)) << l;
    EXPECT_EQ(j["record"]["v"], next);
    ++next;
  }
  EXPECT_EQ(next, kWrites);
}

}  // namespace
}  // namespace tandem::testing
