// libFuzzer target: the sync message decoder (Cap'n Proto frame, batch body, field
// states, in rows or columns, pieces of field states, blob messages, digests) on untrusted
// bytes.
// Whatever decodes must re-encode, in either layout, and decode again; to a peer without
// the features it needs (pieces, blobs, digests) it must be refused instead.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "tandem/engine/blob.h"
#include "tandem/net/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto m = tandem::net::DecodeMessage(in);
  if (!m.ok()) return 0;
  // In both batch layouts; a piece of a field state only to a peer that takes pieces.
  const auto* b = std::get_if<tandem::engine::DeltaBatch>(&*m);
  using namespace tandem::engine;
  bool blobs = std::holds_alternative<BlobWant>(*m) || std::holds_alternative<BlobHead>(*m) ||
               std::holds_alternative<BlobChunk>(*m) || std::holds_alternative<BlobAck>(*m);
  const bool digests = std::holds_alternative<Digests>(*m);
  if (b)
    for (const auto& d : b->deltas)
      tandem::engine::ForEachBlobRef(d.state,
                                     [&](const tandem::engine::BlobRef&) { blobs = true; });
  for (uint32_t features : {0u, tandem::net::kWireFeatures & ~tandem::net::kFeatureColumns2,
                            tandem::net::kWireFeatures}) {
    auto bytes = tandem::net::EncodeMessage(*m, {features});
    if ((b && b->piece && !(features & tandem::net::kFeaturePieces)) ||
        (blobs && !(features & tandem::net::kFeatureBlobs)) ||
        (digests && !(features & tandem::net::kFeatureDigests))) {
      if (bytes.ok()) std::abort();
      continue;
    }
    auto again = tandem::net::DecodeMessage(bytes.value());
    if (!again.ok() || again->index() != m->index()) std::abort();
    if (b && std::get<tandem::engine::DeltaBatch>(*again).piece != b->piece) std::abort();
  }
  return 0;
}
