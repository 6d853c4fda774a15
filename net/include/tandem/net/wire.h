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

// What a build's decoder understands beyond the first wire format, announced in Hello
// (older builds announce nothing). A sender uses a feature only once the peer's Hello
// announced it.
inline constexpr uint32_t kFeatureColumns = 1;  // batch bodies in the columnar layout
// Field states in pieces (engine::DeltaBatch::piece): announced as engine::Hello::pieces.
inline constexpr uint32_t kFeaturePieces = 2;
// Blob references in field states, and blob transfer (BlobWant and the rest).
inline constexpr uint32_t kFeatureBlobs = 4;
// The columnar layout with logical clocks as differences (layout `columns2`).
inline constexpr uint32_t kFeatureColumns2 = 8;
// A request carried in the peer's Hello (engine::Hello::early): announced as
// engine::Hello::takes_early.
inline constexpr uint32_t kFeatureEarly = 16;
// A send policy that names the collections it leaves out, in Hello::sendFull
// (engine::Hello::send_full): announced by its presence.
inline constexpr uint32_t kFeatureExclusions = 32;
// Reads Hello::collectedIn, and so judges an early request by it too
// (engine::Hello::reads_collected_in).
inline constexpr uint32_t kFeatureCollectedIn = 64;
// Reads BlobHead::later and BlobHead::ready (engine::Hello::blob_later).
inline constexpr uint32_t kFeatureBlobLater = 128;
// Digests (engine::Hello::digests).
inline constexpr uint32_t kFeatureDigests = 256;
inline constexpr uint32_t kWireFeatures = kFeatureColumns | kFeaturePieces | kFeatureBlobs |
                                          kFeatureColumns2 | kFeatureEarly | kFeatureExclusions |
                                          kFeatureCollectedIn | kFeatureBlobLater | kFeatureDigests;

struct EncodeOptions {
  uint32_t peer_features = 0;  // from the peer's Hello (DecodeMessage's *features)
};
Result<std::string> EncodeMessage(const engine::Message& m, const EncodeOptions& opt = {});
// *features (if not null) gets the features a Hello announces (untouched for other
// messages).
Result<engine::Message> DecodeMessage(std::string_view bytes, uint32_t* features = nullptr);

}  // namespace tandem::net
