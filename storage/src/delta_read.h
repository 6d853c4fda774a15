// A stored field value read as its delta encoding, for the readers in log.cc and
// delta_read.cc.
#pragma once

#include "lmdb_internal.h"

namespace tandem::storage {

// A stored field value as its delta encoding (EncodeDelta's bytes), not decoded: `head`
// (engine::DeltaHead), then `rest`, the stored state's bytes past its context.
// A state stored out of line has its rest there instead (`out_of_line`).
struct StoredDelta {
  std::string head;
  std::string_view rest;
  std::optional<LmdbReader::OutOfLine> out_of_line;
  uint64_t seq = 0;  // the field's change-log position
  engine::VersionVector ctx;
  uint64_t size() const { return head.size() + (out_of_line ? out_of_line->size() : rest.size()); }
};
// `key` is the field's, `stored_key` the bytes it is stored under (its checksum's key,
// when `check`ed) and `value` the stored value (delta_read.cc); `reader` reads what lies
// out of line.
Status DeltaOf(const LmdbStore::Impl& impl, LmdbReader& reader, const FieldKey& key,
               std::string_view stored_key, std::string_view value, bool check, StoredDelta* out);

}  // namespace tandem::storage
