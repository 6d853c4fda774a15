// A replica over a MemoryStore with a clock the test sets, and helpers, for the
// replica's tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/engine/memory_store.h"
#include "tandem/engine/replica.h"
#include "tandem/storage/replica.h"

namespace tandem::engine {
namespace {

ReplicaId Rid(uint8_t n) {
  ReplicaId id;
  id.bytes[0] = 0xaa;
  id.bytes[15] = n;
  return id;
}

Value S(const char* s) { return Value{std::string(s)}; }
Value I(int64_t i) { return Value{i}; }

// A replica over a MemoryStore whose physical clock the test sets.
struct Node {
  explicit Node(uint8_t n, uint64_t start_ms = 1000)
      : id(Rid(n)),
        now(std::make_shared<uint64_t>(start_ms)),
        replica(
            std::make_unique<MemoryStore>(id), [clock = now] { return *clock; },
            storage::Blake2b256Parts) {}
  ReplicaId id;
  std::shared_ptr<uint64_t> now;
  Replica replica;

  ReplicaMeta Meta() {
    auto m = replica.Meta();
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : ReplicaMeta{};
  }
  Record Get(const std::string& c, const std::string& record) {
    auto r = replica.Get(c, record);
    EXPECT_TRUE(r.ok()) << c << "/" << record << ": " << r.status().ToString();
    return r.ok() ? *r : Record{};
  }
  std::vector<std::string> ScanIds(const std::string& c, const std::string& after = "") {
    std::vector<std::string> ids;
    Status st = replica.Scan(c, after, [&](const Record& r) {
      ids.push_back(r.id);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return ids;
  }
  std::vector<FieldDelta> AllDeltas(const VersionVector* skip = nullptr) {
    auto page = replica.CollectDeltas(0, 1 << 20, skip);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) return {};
    EXPECT_TRUE(page->done);
    return page->deltas;
  }
};

// Sends everything `from` has to `to`, then lets `to` adopt `from`'s version vector.
void Sync(Node& from, Node& to) {
  Status st = to.replica.ApplyDeltas(from.AllDeltas());
  ASSERT_TRUE(st.ok()) << st.ToString();
  st = to.replica.MergeVersionVector(from.Meta().vv);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

Value Scalar(const Record& r, const std::string& f) {
  auto it = r.fields.find(f);
  EXPECT_NE(it, r.fields.end()) << "no field " << f;
  if (it == r.fields.end()) return Value{};
  EXPECT_EQ(it->second.kind, Kind::kRegister);
  return it->second.scalar;
}

}  // namespace
}  // namespace tandem::engine
