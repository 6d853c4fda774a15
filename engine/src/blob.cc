#include "tandem/engine/blob.h"

#include <cstring>

#include "tandem/engine/codec.h"

namespace tandem::engine {

BlobHash HashOf(ContentHash hash, std::string_view bytes) {
  bool given = false;
  return hash([&](std::string_view* part) {
    if (given) return false;
    *part = bytes;
    return given = true;
  });
}

BlobHash BlobId(ContentHash hash, uint64_t size, const std::vector<BlobHash>& chunks) {
  static constexpr char kDomain[] = "tandem blob 1";  // with its NUL: 14 bytes
  std::string in(kDomain, sizeof kDomain);
  in.reserve(sizeof kDomain + 8 + chunks.size() * sizeof(BlobHash));
  for (int i = 0; i < 8; ++i) in.push_back(static_cast<char>(size >> (8 * i)));
  for (const auto& c : chunks) in.append(reinterpret_cast<const char*>(c.data()), c.size());
  return HashOf(hash, in);
}

// info := version:u8(1) state:u8 size:varint listed:u8 [count:varint hash*] have:varint
//         requested:u8 count:varint (collection record field)* has_released:u8 [vv]
//         touched_ms:varint
std::string EncodeBlobInfo(const BlobInfo& info) {
  std::string out;
  Writer w(&out);
  w.U8(1);
  w.U8(static_cast<uint8_t>(info.state));
  w.Varint(info.size);
  w.U8(info.listed ? 1 : 0);
  if (info.listed) {
    w.Varint(info.chunks.size());
    for (const auto& c : info.chunks)
      w.Raw(std::string_view(reinterpret_cast<const char*>(c.data()), c.size()));
  }
  w.Varint(info.have);
  w.U8(info.requested ? 1 : 0);
  w.Varint(info.refs.size());
  for (const auto& k : info.refs) {
    w.LengthPrefixed(k.collection);
    w.LengthPrefixed(k.record);
    w.LengthPrefixed(k.field);
  }
  w.U8(info.released ? 1 : 0);
  if (info.released) EncodeVersionVector(*info.released, w);
  w.Varint(info.touched_ms);
  return out;
}

Result<BlobInfo> DecodeBlobInfo(std::string_view bytes) {
  Reader r(bytes);
  BlobInfo info;
  if (r.U8() != 1) r.Fail("unknown blob entry version");
  const uint8_t state = r.U8();
  if (state < 1 || state > 4) r.Fail("unknown blob state");
  info.state = static_cast<BlobInfo::State>(state);
  info.size = r.Varint();
  if (info.size > kMaxBlobBytes) r.Fail("blob larger than the limit");
  info.listed = r.U8() != 0;
  if (info.listed) {
    const uint64_t n = r.Count(32);
    if (r.ok() && n != ChunkCount(info.size)) r.Fail("chunk list does not match the size");
    info.chunks.resize(r.ok() ? n : 0);
    for (auto& c : info.chunks) {
      std::string_view h = r.Raw(32);
      if (!r.ok()) break;
      std::memcpy(c.data(), h.data(), 32);
    }
  }
  info.have = r.Varint();
  if (r.ok() && info.have > ChunkCount(info.size)) r.Fail("more chunks held than the blob has");
  info.requested = r.U8() != 0;
  const uint64_t refs = r.Count(3);
  if (r.ok() && refs > BlobInfo::kMaxWantRefs) r.Fail("too many references");
  for (uint64_t i = 0; i < refs && r.ok(); ++i) {
    FieldKey k;
    k.collection = std::string(r.LengthPrefixed(kMaxCollectionName));
    k.record = std::string(r.LengthPrefixed(kMaxRecordId));
    k.field = std::string(r.LengthPrefixed(kMaxFieldName));
    info.refs.push_back(std::move(k));
  }
  if (r.U8() != 0) info.released = DecodeVersionVector(r);
  info.touched_ms = r.Varint();
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (r.ok() && info.state != BlobInfo::State::kWanted && !info.listed)
    r.Fail("a stored blob without its chunk list");
  if (r.ok() && (info.complete() || info.state == BlobInfo::State::kState) &&
      info.have != info.chunks.size())
    r.Fail("a complete blob missing chunks");
  if (!r.ok()) return r.status().With("blob entry");
  return info;
}

void ForEachBlobRef(const FieldState& s, const std::function<void(const BlobRef&)>& fn) {
  for (const auto& [dot, m] : s.markers)
    if (const auto* b = std::get_if<BlobRef>(&m.value)) fn(*b);
  for (const auto& [v, dots] : s.elements)
    if (const auto* b = std::get_if<BlobRef>(&v)) fn(*b);
}

}  // namespace tandem::engine
