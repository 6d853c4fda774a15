// Typed scalars: null, bool, int64, double, string (UTF-8), bytes, and references to
// blobs (attachments: content stored apart from the field, see blob.h).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "tandem/engine/status.h"

namespace tandem::engine {

// Opaque binary data; distinct from a string, which must be valid UTF-8.
struct Bytes {
  std::string data;
  bool operator==(const Bytes&) const = default;
};

// A blob's content address (BlobId in blob.h): 32 bytes of BLAKE2b.
using BlobHash = std::array<uint8_t, 32>;
std::string HexOf(const BlobHash& h);
Result<BlobHash> BlobHashFromHex(std::string_view hex);

// A reference to a blob: its content address, its size and a media type ("image/png",
// or empty). The field holds the reference; the bytes live in the replica's blob store
// and travel separately (docs/design.md#attachments).
struct BlobRef {
  BlobHash hash{};
  uint64_t size = 0;
  std::string type;
  bool operator==(const BlobRef&) const = default;
};
// The largest blob: its chunk list must fit one message (kMaxBlobChunks in blob.h).
inline constexpr uint64_t kMaxBlobBytes = uint64_t{8} << 30;
inline constexpr size_t kMaxBlobTypeBytes = 127;

using Value = std::variant<std::monostate, bool, int64_t, double, std::string, Bytes, BlobRef>;

enum class ValueType : uint8_t { kNull, kBool, kInt, kDouble, kString, kBytes, kBlob };
inline ValueType TypeOf(const Value& v) { return static_cast<ValueType>(v.index()); }
const char* TypeName(ValueType t);

// A strict total order over values: by type, then by value. Doubles are ordered by
// IEEE 754 totalOrder, so NaNs and signed zeros have a place and sets stay well formed.
int CompareValues(const Value& a, const Value& b);
struct ValueLess {
  bool operator()(const Value& a, const Value& b) const { return CompareValues(a, b) < 0; }
};
// Bitwise equality (so -0.0 != 0.0 and NaN == the same NaN), consistent with ValueLess.
inline bool SameValue(const Value& a, const Value& b) { return CompareValues(a, b) == 0; }

// A short human-readable rendering, for logs and the demo ("Ann", 5, 2.5, null).
std::string DebugString(const Value& v);

bool IsValidUtf8(std::string_view s);

// Limits on names. Keys are collection \0 record \0 field and must fit LMDB's 511-byte
// key limit, so each part is bounded.
inline constexpr size_t kMaxCollectionName = 64;
inline constexpr size_t kMaxRecordId = 256;
inline constexpr size_t kMaxFieldName = 128;
// Largest string or bytes value. A field state larger than a frame travels in pieces
// (sync.h); larger content belongs in a blob.
inline constexpr size_t kMaxValueBytes = size_t{16} << 20;

// Non-empty, valid UTF-8, no NUL, within the limit. `what` names the thing in errors.
Status ValidateName(std::string_view name, size_t max_len, const char* what);
Status ValidateCollection(std::string_view c);
Status ValidateRecordId(std::string_view id);
// Field names also may not be "id" (a record renders as {"id": ..., fields...}).
Status ValidateFieldName(std::string_view f);
// Strings must be valid UTF-8 and values within kMaxValueBytes; a blob reference within
// kMaxBlobBytes, its type printable ASCII of at most kMaxBlobTypeBytes.
Status ValidateValue(const Value& v);

}  // namespace tandem::engine
