// libFuzzer target: the sync message decoder (Cap'n Proto frame, batch body, field
// states, in rows or columns) on untrusted bytes. Whatever decodes must re-encode, in
// either layout, and decode again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tandem/net/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto m = tandem::net::DecodeMessage(in);
  if (!m.ok()) return 0;
  // In both batch layouts.
  for (uint32_t features : {0u, tandem::net::kWireFeatures}) {
    auto again = tandem::net::DecodeMessage(tandem::net::EncodeMessage(*m, {features}).value());
    if (!again.ok() || again->index() != m->index()) std::abort();
  }
  return 0;
}
