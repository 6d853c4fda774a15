// LMDB values and return codes as the store's types (storage/src/ only).
#pragma once

#include <lmdb.h>

#include <string>
#include <string_view>

#include "tandem/engine/status.h"

namespace tandem::storage {

// An LMDB return code as a Status (kBusy for a full map, which grows and retries).
Status LmdbError(int rc, const std::string& what);
inline MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

}  // namespace tandem::storage
