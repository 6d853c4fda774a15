// In-memory replicas and an in-process link between two sync sessions, for the engine's
// tests.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <string>

#include "tandem/engine/codec.h"
#include "tandem/engine/memory_store.h"
#include "tandem/engine/sync.h"
#include "tandem/storage/replica.h"

namespace tandem::engine {
namespace {

ReplicaId Rid(uint8_t b) {
  ReplicaId id;
  id.bytes.fill(b);
  return id;
}

struct Node {
  explicit Node(uint8_t id) : Node(std::make_unique<MemoryStore>(Rid(id))) {}
  explicit Node(std::unique_ptr<Store> store)
      : replica(
            std::move(store), [this] { return now++; }, storage::Blake2b256Parts) {}
  uint64_t now = 1'700'000'000'000;
  Replica replica;

  std::string Dump() {
    std::string out;
    auto colls = replica.Collections();
    EXPECT_TRUE(colls.ok());
    for (const auto& c : *colls)
      EXPECT_TRUE(replica
                      .Scan(c, "",
                            [&](const Record& r) {
                              out += c + "/" + r.id;
                              for (const auto& [f, v] : r.fields)
                                out += " " + f + "=" + DebugString(v.scalar) +
                                       std::to_string(v.count) + std::to_string(v.set.size());
                              out += "\n";
                              return true;
                            })
                      .ok());
    return out;
  }
  VersionVector Vv() { return replica.Meta()->vv; }
};

// Runs two sessions over an ordered in-process link until quiet. Stops early (a dropped
// link) after `max_messages` deliveries.
struct Link {
  Link(Node& a, Node& b, SessionOptions oa = {}, SessionOptions ob = {})
      : sa(a.replica, oa), sb(b.replica, ob) {}
  Session sa, sb;
  std::deque<Message> to_a, to_b;
  size_t delivered = 0;
  std::function<void(Message&)> from_b;  // rewrites what b sends (a lying peer)
  std::function<void(Message&)> from_a;  // and what a sends

  Status Run(size_t max_messages = SIZE_MAX) {
    std::vector<Message> out;
    TANDEM_RETURN_IF_ERROR(sa.Start(&out));
    for (auto& m : out) ToB(std::move(m));
    out.clear();
    TANDEM_RETURN_IF_ERROR(sb.Start(&out));
    for (auto& m : out) ToA(std::move(m));
    return Pump(max_messages);
  }
  Status Pump(size_t max_messages = SIZE_MAX) {
    while ((!to_a.empty() || !to_b.empty()) && delivered < max_messages) {
      std::vector<Message> out;
      if (!to_b.empty()) {
        Message m = std::move(to_b.front());
        to_b.pop_front();
        TANDEM_RETURN_IF_ERROR(sb.Receive(m, &out));
        for (auto& o : out) ToA(std::move(o));
      } else {
        Message m = std::move(to_a.front());
        to_a.pop_front();
        TANDEM_RETURN_IF_ERROR(sa.Receive(m, &out));
        for (auto& o : out) ToB(std::move(o));
      }
      ++delivered;
    }
    return Status::Ok();
  }
  Status Poll() {
    std::vector<Message> out;
    TANDEM_RETURN_IF_ERROR(sa.Poll(&out));
    for (auto& o : out) ToB(std::move(o));
    out.clear();
    TANDEM_RETURN_IF_ERROR(sb.Poll(&out));
    for (auto& o : out) ToA(std::move(o));
    return Pump();
  }
  void ToA(Message m) {
    if (from_b) from_b(m);
    to_a.push_back(std::move(m));
  }
  void ToB(Message m) {
    if (from_a) from_a(m);
    to_b.push_back(std::move(m));
  }
};

[[maybe_unused]] void Fill(Node& n, const std::string& coll, int records,
                           const std::string& prefix) {
  ASSERT_TRUE(n.replica
                  .Write([&](Batch& b) {
                    for (int i = 0; i < records; ++i) {
                      std::string id = prefix + std::to_string(i);
                      TANDEM_RETURN_IF_ERROR(b.Put(coll, id, "name", Value{id}));
                      TANDEM_RETURN_IF_ERROR(b.Incr(coll, id, "stock", i));
                    }
                    return Status::Ok();
                  })
                  .ok());
}

}  // namespace
}  // namespace tandem::engine
