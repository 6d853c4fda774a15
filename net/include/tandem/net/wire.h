// Engine sync messages <-> Cap'n Proto bytes (net/sync.capnp).
//
// Decoding treats its input as hostile: the frame size is capped, the reader has a
// traversal limit sized to the frame and a small nesting limit, and every field is
// validated (ids, names, UTF-8, counts, field states) before a Message is returned.
// Any violation is a kCorrupt status and no Message. Batch bodies are compressed with
// zstd when that makes them smaller.
#pragma once

#include <string>
#include <string_view>

#include "tandem/engine/sync.h"

namespace tandem::net {

inline constexpr size_t kMaxFrameBytes = 1 << 20;
inline constexpr uint16_t kWireVersion = 1;
// Largest batch body once decompressed (guards against decompression bombs).
// Senders keep bodies under engine::kMaxBatchBodyBound, so 1 MiB is generous.
inline constexpr size_t kMaxBatchBodyBytes = 1 << 20;
// Most entries one batch may carry (SessionOptions::batch_fields must not exceed it):
// bounds the memory a small, highly compressible frame can make the receiver allocate.
inline constexpr size_t kMaxBatchEntries = 16384;

Result<std::string> EncodeMessage(const engine::Message& m);
Result<engine::Message> DecodeMessage(std::string_view bytes);

}  // namespace tandem::net
