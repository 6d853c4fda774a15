// A field's state handed out as its delta encoding, a window at a time, never decoded:
// a state too large for a batch travels in pieces (the sync's StartPieces), and its
// sender holds a piece of it in memory, not the state.
#include "delta_read.h"

#include "lmdb_internal.h"

namespace tandem::storage {

Status DeltaOf(const LmdbStore::Impl& impl, LmdbReader& reader, const FieldKey& key,
               std::string_view stored_key, std::string_view value, bool check, StoredDelta* out) {
  std::string_view state;
  TANDEM_RETURN_IF_ERROR(check ? SplitValue(stored_key, value, &out->seq, &state)
                               : SplitUnchecked(value, &out->seq, &state));
  if (LmdbReader::IsOutOfLine(state)) {
    // Its chunks are checked as they are read (ReadOutOfLineBytes); with `check`, all of
    // them first, as a value in line is against its checksum.
    LmdbReader::OutOfLine o;
    TANDEM_RETURN_IF_ERROR(reader.ReadOutOfLine(state, &o));
    if (check) TANDEM_RETURN_IF_ERROR(reader.CheckOutOfLine(o));
    TANDEM_ASSIGN_OR_RETURN(engine::StoredHead head, engine::ReadStoredHead(o.head, impl.table));
    out->head = engine::DeltaHead(key, head);
    out->ctx = std::move(head.ctx);
    out->out_of_line = std::move(o);
    return Status::Ok();
  }
  TANDEM_ASSIGN_OR_RETURN(engine::StoredHead head, engine::ReadStoredHead(state, impl.table));
  out->head = engine::DeltaHead(key, head);
  out->rest = state.substr(head.rest);
  out->ctx = std::move(head.ctx);
  return Status::Ok();
}

Status LmdbReader::ReadDelta(const FieldKey& key, uint64_t offset, size_t n, bool check,
                             uint64_t* size, uint64_t* seq, std::string* out) {
  std::string k;
  MDB_val v;
  TANDEM_RETURN_IF_ERROR(FindField(key, &k, &v));
  StoredDelta d;
  TANDEM_RETURN_IF_ERROR(DeltaOf(*impl_, *this, key, k, View(v), check, &d).With(key.Name()));
  *size = d.size();
  *seq = d.seq;
  if (!d.out_of_line) {
    engine::AppendWindow(d.head, d.rest, offset, n, out);
    return Status::Ok();
  }
  // The head from memory, the rest from its chunks.
  engine::AppendWindow(d.head, {}, offset, n, out);
  const uint64_t end = std::min<uint64_t>(offset + n, d.size());
  const uint64_t from = std::max<uint64_t>(offset, d.head.size());
  if (from < end)
    TANDEM_RETURN_IF_ERROR(ReadOutOfLineBytes(*d.out_of_line, from - d.head.size(),
                                              static_cast<size_t>(end - from), out)
                               .With(key.Name()));
  return Status::Ok();
}

}  // namespace tandem::storage
