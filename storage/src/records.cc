// Reads of records and collections from the field tables (lmdb_internal.h).
#include "lmdb_internal.h"

namespace tandem::storage {

Status LmdbReader::GetRecord(std::string_view c, std::string_view r, RecordState* out,
                             uint64_t* latest) {
  if (out) out->fields.clear();
  if (latest) *latest = 0;
  auto prefix = impl_->RecordPrefix(c, r);
  if (!prefix) return Status::Ok();
  return ScanPrefix(*prefix, *prefix, [&](std::string_view key, const MDB_val& v, bool*) {
    if (!out) {  // the seqs alone
      uint64_t seq = 0;
      TANDEM_RETURN_IF_ERROR(ValueSeq(View(v), &seq));
      if (latest) *latest = std::max(*latest, seq);
      return Status::Ok();
    }
    FieldKey k;
    if (!impl_->DecodeKey(key, &k)) return Status::Corrupt("malformed field key");
    FieldState s;
    uint64_t seq = 0;
    TANDEM_RETURN_IF_ERROR(DecodeField(key, v, &s, &seq).With(k.Name()));
    if (latest) *latest = std::max(*latest, seq);
    out->fields.emplace(std::move(k.field), std::move(s));
    return Status::Ok();
  });
}

Status LmdbReader::ScanRecords(std::string_view c, std::string_view after,
                               const engine::ReadTxn::RecordFn& fn,
                               const engine::ReadTxn::DamagedFn* damaged,
                               const engine::ReadTxn::OutlineFn* outlines) {
  auto coll = impl_->names.Find(c);
  if (!coll) return Status::Ok();
  std::string prefix = impl_->CollectionPrefix(*coll);
  // Past every field of `after`: after \x01 sorts above after \0 ...
  std::string start = prefix + std::string(after) + (after.empty() ? "" : "\x01");
  std::string current;
  RecordState state;
  bool stopped = false;
  TANDEM_RETURN_IF_ERROR(
      ScanPrefix(prefix, start, [&](std::string_view key, const MDB_val& v, bool* go) {
        FieldKey k;
        if (!impl_->DecodeKey(key, &k)) return Status::Corrupt("malformed field key");
        if (k.record != current && !state.fields.empty()) {
          if (!fn(current, state)) {
            stopped = true;
            *go = false;
            return Status::Ok();
          }
          state.fields.clear();
        }
        FieldState s;
        Status st;
        if (outlines && (OutOfLineValue(View(v)) || v.mv_size > kOutlineInLinePast)) {
          uint64_t seq = 0;
          std::string_view stored;
          st = SplitValue(key, View(v), &seq, &stored);
          if (st.ok() && IsOutOfLine(stored)) {
            st = DecodeOutOfLine(stored, &s, true);
            if (st.ok()) (*outlines)(k);
          } else if (st.ok()) {
            // A large state in line: its outline where its lists are in canonical order
            // (every encoder writes them so), else decoded whole.
            if (OutlineInLine(stored, nullptr, &s).ok())
              (*outlines)(k);
            else
              st = DecodeState(stored, &s);
          }
        } else {
          st = DecodeField(key, v, &s);
        }
        if (damaged && st.code() == Code::kCorrupt) {
          (*damaged)(k, st.With(k.Name()));
          current = std::move(k.record);
          return Status::Ok();
        }
        TANDEM_RETURN_IF_ERROR(st.With(k.Name()));
        current = std::move(k.record);
        state.fields.emplace(std::move(k.field), std::move(s));
        return Status::Ok();
      }));
  if (!stopped && !state.fields.empty()) fn(current, state);
  return Status::Ok();
}

Status LmdbReader::ListCollections(std::vector<std::string>* out) {
  out->clear();
  FieldsCursor cur(txn_, impl_->fresh, impl_->fields);
  // Names are few: probe each one as a collection prefix.
  const uint64_t n = impl_->names.size();
  for (uint64_t i = 0; i < n; ++i) {
    std::string prefix = impl_->CollectionPrefix(i);
    int rc = cur.Seek(prefix);
    if (rc == 0 && View(cur.key()).substr(0, prefix.size()) == prefix) {
      std::string name;
      impl_->names.At(i, &name);
      out->push_back(std::move(name));
    } else if (rc && rc != MDB_NOTFOUND) {
      return LmdbError(rc, "list collections");
    }
  }
  std::sort(out->begin(), out->end());
  return Status::Ok();
}

}  // namespace tandem::storage
