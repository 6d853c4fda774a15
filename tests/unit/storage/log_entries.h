// How many entries a replica's change log holds, for the storage tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "tandem/engine/replica.h"

namespace tandem::storage {

// The change log's entries, live or stale.
inline uint64_t LogEntries(engine::Replica& r) {
  auto txn = r.store().BeginRead();
  EXPECT_TRUE(txn.ok());
  uint64_t n = 0;
  if (txn.ok()) {
    EXPECT_TRUE((*txn)->CountLog(0, UINT64_MAX, &n).ok());
  }
  return n;
}

}  // namespace tandem::storage
