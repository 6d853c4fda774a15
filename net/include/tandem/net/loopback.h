// An in-process transport: runs a sync session between two replicas in this process,
// every message encoded and decoded as it would be on the network. For the demo, the
// benchmarks and tests; the network transport carries the same sessions over TCP.
#pragma once

#include <cstdint>

#include "tandem/engine/sync.h"

namespace tandem::net {

struct LoopbackResult {
  uint64_t messages = 0;
  uint64_t bytes = 0;           // encoded, both directions
  uint64_t fields_applied = 0;  // by both sides
  bool caught_up = false;       // both sessions reported caught up
};

// Syncs `a` and `b` both ways until neither has anything to say, each side on its own
// thread (as on two devices, one applies while the other reads and encodes). Fails with
// the first error either session reports.
Result<LoopbackResult> SyncLoopback(engine::Replica& a, engine::Replica& b,
                                    engine::SessionOptions options_a = {},
                                    engine::SessionOptions options_b = {});

}  // namespace tandem::net
