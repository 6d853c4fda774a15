// Records the store keeps in `meta` beside the replica's own: changes held by
// quarantine, and fields whose incoming state was refused for good (refused_record.h).
#include "lmdb_internal.h"
#include "refused_record.h"

namespace tandem::storage {

Status LmdbReader::ListQuarantine(const engine::ReadTxn::QuarantineFn& fn) {
  const std::string_view prefix = "quarantine/";
  return ScanMeta(
      prefix,
      [&](std::string_view key, std::string_view value, Status* st) {
        if (key.size() != prefix.size() + 8) {
          *st = Status::Corrupt("malformed quarantine key");
          return false;
        }
        uint64_t id = 0;
        for (size_t i = prefix.size(); i < key.size(); ++i)
          id = (id << 8) | static_cast<uint8_t>(key[i]);
        return fn(id, value);
      },
      "read quarantine");
}

// A damaged record (one that does not decode, or sits under another field's key) is
// passed over, and counted in *damaged (if not null) for Check: it must not stop every
// watermark merge, and so every sync, for good. So is one of a later version.
Status LmdbReader::ListRefused(const engine::ReadTxn::RefusedFn& fn, uint64_t* damaged) {
  return ScanMeta(
      "refused/",
      [&](std::string_view key, std::string_view value, Status*) {
        if (!value.empty() && static_cast<uint8_t>(value[0]) > kRefusedRecordVersion) return true;
        FieldKey field;
        engine::VersionVector unseen;
        if (!DecodeRefusedRecord(value, &field, &unseen).ok() || key != RefusedRecordKey(field)) {
          if (damaged) ++*damaged;
          return true;
        }
        return fn(field, unseen);
      },
      "read refused fields");
}
// A damaged record under the field's key reads as none, so the next refusal of the
// field writes a sound one over it.
Status LmdbReader::GetRefused(const FieldKey& field, std::optional<engine::VersionVector>* out) {
  out->reset();
  const std::string k = RefusedRecordKey(field);
  MDB_val kv = Val(k), v;
  int rc = mdb_get(txn_, impl_->meta, &kv, &v);
  if (rc == MDB_NOTFOUND) return Status::Ok();
  if (rc) return LmdbError(rc, "read refused field");
  FieldKey stored;
  engine::VersionVector unseen;
  if (!DecodeRefusedRecord(View(v), &stored, &unseen).ok()) return Status::Ok();
  if (stored == field) *out = std::move(unseen);  // else another key's (128-bit) hash
  return Status::Ok();
}

}  // namespace tandem::storage
