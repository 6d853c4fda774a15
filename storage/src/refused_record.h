// How a record of a refused field (engine::ReadTxn::ListRefused) is stored: in `meta`
// under "refused/" + the first 16 bytes of BLAKE2b-256 of the field's names (so a peer's
// names never enter the name table); the value is u8 1, collection, record, field (each
// varint length + bytes) and the version vector of what the field had not seen.
#pragma once

#include <string>
#include <string_view>

#include "tandem/engine/codec.h"
#include "tandem/engine/field.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {

inline void PutFieldNames(engine::Writer& w, const engine::FieldKey& field) {
  w.LengthPrefixed(field.collection);
  w.LengthPrefixed(field.record);
  w.LengthPrefixed(field.field);
}

inline std::string RefusedRecordKey(const engine::FieldKey& field) {
  std::string names;
  engine::Writer w(&names);
  PutFieldNames(w, field);
  const engine::BlobHash h = Blake2b256(names);
  return "refused/" + std::string(reinterpret_cast<const char*>(h.data()), 16);
}

inline constexpr uint8_t kRefusedRecordVersion = 1;

inline std::string EncodeRefusedRecord(const engine::FieldKey& field,
                                       const engine::VersionVector& unseen) {
  std::string v;
  engine::Writer w(&v);
  w.U8(kRefusedRecordVersion);
  PutFieldNames(w, field);
  engine::EncodeVersionVector(unseen, w);
  return v;
}

inline Status DecodeRefusedRecord(std::string_view bytes, engine::FieldKey* field,
                                  engine::VersionVector* unseen) {
  engine::Reader r(bytes);
  if (r.U8() != kRefusedRecordVersion) r.Fail("unknown version");
  field->collection = std::string(r.LengthPrefixed(1 << 16));
  field->record = std::string(r.LengthPrefixed(1 << 16));
  field->field = std::string(r.LengthPrefixed(1 << 16));
  *unseen = engine::DecodeVersionVector(r);
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  return r.ok() ? Status::Ok() : r.status().With("refused field");
}

}  // namespace tandem::storage
