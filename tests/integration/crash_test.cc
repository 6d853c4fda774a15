// Crash safety: a writer is killed with SIGKILL at random moments; after every kill the
// replica opens, passes the integrity check, and every write the writer reported as
// committed is there. Zero tolerance. TANDEM_CRASH_ITERATIONS sets the count (200).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "process.h"
#include "tandem/storage/replica.h"

namespace tandem::testing {
namespace {

TEST(Crash, KilledWritersLoseNothingThatCommitted) {
  int iterations = 200;
  if (const char* e = std::getenv("TANDEM_CRASH_ITERATIONS")) iterations = std::atoi(e);
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TempDir tmp;
  const std::string db = tmp / "db";
  ASSERT_TRUE(storage::CreateReplica(db).ok());
  std::set<int64_t> acknowledged;
  for (int it = 0; it < iterations; ++it) {
    {
      Child writer({WRITER_BIN, db});
      std::string out;
      // Kill at a random moment. Usually after a random number of acknowledged commits
      // (an event, so a slow machine, such as a sanitizer build, kills as late in the
      // stream as a fast one), plus a random fraction of a commit; sometimes at a random
      // time from the start, which may be before the first commit.
      auto acks = [&] { return std::count(out.begin(), out.end(), '\n'); };
      if (rng() % 4 != 0) {
        const long want = 1 + static_cast<long>(rng() % 8);
        const auto bound = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (acks() < want && std::chrono::steady_clock::now() < bound) writer.ReadSome(&out, 10);
        ASSERT_GE(acks(), want) << "the writer acknowledged nothing within 60 s";
      }
      auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 4000);
      while (std::chrono::steady_clock::now() < deadline) writer.ReadSome(&out, 1);
      writer.Kill(SIGKILL);
      auto rest = writer.Finish();
      out += rest.out;
      ASSERT_TRUE(rest.err.empty()) << rest.err;
      // Only complete lines were acknowledged (printed after commit returned).
      std::istringstream lines(out.substr(0, out.rfind('\n') + 1));
      for (std::string l; std::getline(lines, l);) acknowledged.insert(std::stoll(l));
    }
    auto r = storage::OpenReplica(db);
    ASSERT_TRUE(r.ok()) << "iteration " << it << ": " << r.status().ToString();
    storage::CheckReport rep;
    Status st = storage::Check(storage::StoreOf(**r), &rep);
    ASSERT_TRUE(st.ok()) << "iteration " << it << ": " << st.ToString();
    int64_t total = 0;
    if (auto t = (*r)->Get("w", "total"); t.ok()) total = t->fields.at("n").count;
    int64_t records = 0;
    ASSERT_TRUE((*r)->Scan("w", "",
                           [&](const engine::Record& rec) {
                             if (rec.id != "total") ++records;
                             return true;
                           })
                    .ok());
    ASSERT_EQ(total, records) << "a transaction was applied in part, iteration " << it;
    for (int64_t i : acknowledged) {
      auto rec = (*r)->Get("w", "r" + std::to_string(i));
      ASSERT_TRUE(rec.ok()) << "acknowledged write " << i << " lost, iteration " << it;
      ASSERT_TRUE(engine::SameValue(rec->fields.at("v").scalar, engine::Value{i}));
    }
  }
  EXPECT_GT(acknowledged.size(), 0u);
}

}  // namespace
}  // namespace tandem::testing
