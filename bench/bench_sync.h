// The sync benchmarks' one step: a whole session over the in-process transport, every
// message encoded as on the wire.
#pragma once

#include "bench_util.h"
#include "tandem/net/loopback.h"
#include "tandem/storage/replica.h"

namespace tandem::bench {

struct SyncPhase {
  double seconds = 0;
  uint64_t messages = 0, bytes = 0, fields = 0;
};

// A durable replica created afresh in `dir` (whatever was there is removed).
inline std::unique_ptr<engine::Replica> FreshReplica(const std::string& dir) {
  std::filesystem::remove_all(dir);
  auto r = storage::CreateReplica(dir);
  Must(r.status(), "create");
  return std::move(r).value();
}

inline SyncPhase SyncOnce(engine::Replica& a, engine::Replica& b) {
  const double t0 = Now();
  auto r = net::SyncLoopback(a, b);
  Must(r.status(), "sync");
  if (!r->caught_up) Must(Status::Corrupt("not caught up"), "sync");
  return SyncPhase{Now() - t0, r->messages, r->bytes, r->fields_applied};
}

}  // namespace tandem::bench
