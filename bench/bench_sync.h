// The sync benchmarks' one step: a whole session over the in-process transport, every
// message encoded as on the wire.
#pragma once

#include "bench_util.h"
#include "tandem/net/loopback.h"

namespace tandem::bench {

struct SyncPhase {
  double seconds = 0;
  uint64_t messages = 0, bytes = 0, fields = 0;
};

inline SyncPhase SyncOnce(engine::Replica& a, engine::Replica& b) {
  const double t0 = Now();
  auto r = net::SyncLoopback(a, b);
  Must(r.status(), "sync");
  if (!r->caught_up) Must(Status::Corrupt("not caught up"), "sync");
  return SyncPhase{Now() - t0, r->messages, r->bytes, r->fields_applied};
}

}  // namespace tandem::bench
