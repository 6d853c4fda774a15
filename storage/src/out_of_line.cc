// Field states stored out of line: a state that arrived in pieces is kept as it came, its
// bytes in the chunks that held the pieces, so that neither applying it nor sending it on
// holds it in memory (docs/format.md).
#include "lmdb_internal.h"

namespace tandem::storage {

Status LmdbReader::ReadOutOfLine(std::string_view state, OutOfLine* out) {
  std::string copy(state);
  copy[0] = static_cast<char>(static_cast<uint8_t>(copy[0]) & ~engine::kOutOfLine);
  TANDEM_ASSIGN_OR_RETURN(engine::StoredHead head, engine::ReadStoredHead(copy, impl_->table));
  engine::Reader r(std::string_view(copy).substr(head.rest));
  const std::string_view entry = r.Raw(32);
  const uint64_t at = r.Varint();
  if (!r.ok() || r.remaining() != 0) return Status::Corrupt("field state out of line: malformed");
  std::memcpy(out->entry.data(), entry.data(), 32);
  out->at = at;
  out->ctx = std::move(head.ctx);
  copy.resize(head.rest);
  out->head = std::move(copy);
  std::optional<engine::BlobInfo> info;
  TANDEM_RETURN_IF_ERROR(GetBlob(out->entry, &info));
  if (!info || info->state != engine::BlobInfo::State::kState || !info->listed || info->size < at)
    return Status::Corrupt("field state out of line: its chunks are not listed");
  out->info = std::move(*info);
  return Status::Ok();
}

std::string EncodeOutOfLine(uint8_t header, const engine::VersionVector& ctx,
                            engine::ReplicaTable& table, const engine::BlobHash& entry,
                            uint64_t at) {
  std::string encoded;
  engine::Writer w(&encoded);
  w.U8(header | engine::kOutOfLine);
  w.Varint(ctx.size());
  for (const auto& [r, seq] : ctx.entries()) {
    w.Varint(table.IndexOf(r));
    w.Varint(seq);
  }
  w.Raw(std::string_view(reinterpret_cast<const char*>(entry.data()), entry.size()));
  w.Varint(at);
  return encoded;
}

std::optional<engine::BlobHash> OutOfLineEntry(std::string_view value) {
  uint64_t seq = 0;
  std::string_view state;
  if (!SplitUnchecked(value, &seq, &state).ok() || !LmdbReader::IsOutOfLine(state))
    return std::nullopt;
  engine::Reader r(state);
  r.U8();
  const uint64_t n = r.Count(2);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    r.Varint();
    r.Varint();
  }
  const std::string_view raw = r.Raw(32);
  if (!r.ok()) return std::nullopt;
  engine::BlobHash h;
  std::memcpy(h.data(), raw.data(), 32);
  return h;
}

Status LmdbReader::LoadOutOfLineChunk(const OutOfLine& o, uint64_t i) {
  if (o.chunk_index == i) return Status::Ok();
  o.chunk_index = UINT64_MAX;
  bool found = false;
  TANDEM_RETURN_IF_ERROR(GetChunk(o.info.chunks[i], &o.chunk, &found));
  if (!found || Blake2b256(o.chunk) != o.info.chunks[i])
    return Status::Corrupt("field state out of line: chunk " + std::to_string(i) +
                           " is missing or damaged");
  o.chunk_index = i;
  return Status::Ok();
}

Status LmdbReader::CheckOutOfLine(const OutOfLine& o) {
  for (uint64_t i = 0; i < o.info.chunks.size(); ++i)
    TANDEM_RETURN_IF_ERROR(LoadOutOfLineChunk(o, i));
  return Status::Ok();
}

Status LmdbReader::ReadOutOfLineBytes(const OutOfLine& o, uint64_t offset, size_t n,
                                      std::string* out) {
  uint64_t pos = o.at + offset;
  const uint64_t end = std::min<uint64_t>(o.info.size, pos + n);
  std::string& chunk = o.chunk;
  while (pos < end) {
    const uint64_t i = pos / engine::kBlobChunkBytes;
    if (i >= o.info.chunks.size()) return Status::Corrupt("field state out of line: cut short");
    TANDEM_RETURN_IF_ERROR(LoadOutOfLineChunk(o, i));
    const uint64_t from = pos - i * engine::kBlobChunkBytes;
    if (from >= chunk.size()) return Status::Corrupt("field state out of line: cut short");
    const size_t take = static_cast<size_t>(std::min<uint64_t>(chunk.size() - from, end - pos));
    out->append(chunk, static_cast<size_t>(from), take);
    pos += take;
  }
  return Status::Ok();
}

namespace {
// What lies out of line, a chunk at a time.
class OutOfLineBytes : public engine::Reader::More {
 public:
  OutOfLineBytes(LmdbReader& reader, const LmdbReader::OutOfLine& o) : reader_(reader), o_(o) {}
  bool Append(std::string* out) override {
    if (!status_.ok() || pos_ >= o_.size()) return false;
    const size_t before = out->size();
    status_ = reader_.ReadOutOfLineBytes(o_, pos_, engine::kBlobChunkBytes, out);
    if (!status_.ok()) return false;
    pos_ += out->size() - before;
    return out->size() > before;
  }
  size_t left() const override { return static_cast<size_t>(o_.size() - pos_); }
  const Status& status() const { return status_; }

 private:
  LmdbReader& reader_;
  const LmdbReader::OutOfLine& o_;
  uint64_t pos_ = 0;
  Status status_;
};
}  // namespace

Status LmdbReader::DecodeOutOfLine(std::string_view state, FieldState* out, bool outline,
                                   const engine::StateItems* items) {
  OutOfLine o;
  TANDEM_RETURN_IF_ERROR(ReadOutOfLine(state, &o));
  OutOfLineBytes more(*this, o);
  engine::Reader r(o.head, &more);
  uint8_t header = 0;
  uint64_t body_left = 0;
  *out = outline ? engine::OutlineFieldState(r, impl_->table, items, &header, &body_left)
                 : engine::DecodeFieldState(r, impl_->table);
  TANDEM_RETURN_IF_ERROR(more.status());
  if (r.ok() && r.remaining() != 0) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("field state out of line");
  return Status::Ok();
}

Status LmdbReader::ReadFieldItems(const FieldKey& key, const engine::StateItems& items) {
  engine::StateItems alone = items;
  alone.only = true;  // the outline is not kept
  FieldState s;
  return ReadFieldOutline(key, &alone, &s);
}

Status LmdbReader::OutlineInLine(std::string_view state, const engine::StateItems* items,
                                 FieldState* out) {
  engine::Reader r(state);  // the stored bytes, in the map: nothing copied
  uint8_t header = 0;
  uint64_t body_left = 0;
  *out = engine::OutlineFieldState(r, impl_->table, items, &header, &body_left);
  if (r.ok() && r.remaining() != 0) r.Fail("trailing bytes");
  return r.ok() ? Status::Ok() : r.status().With("field state");
}

Status LmdbReader::ReadFieldOutline(const FieldKey& key, const engine::StateItems* items,
                                    FieldState* out) {
  std::string k;
  MDB_val v;
  TANDEM_RETURN_IF_ERROR(FindField(key, &k, &v));
  uint64_t seq = 0;
  std::string_view state;
  TANDEM_RETURN_IF_ERROR(SplitValue(k, View(v), &seq, &state).With(key.Name()));
  if (IsOutOfLine(state)) return DecodeOutOfLine(state, out, true, items).With(key.Name());
  return OutlineInLine(state, items, out).With(key.Name());
}

}  // namespace tandem::storage
