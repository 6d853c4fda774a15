// libFuzzer target: the field-state decoder on untrusted bytes. Whatever decodes must
// re-encode and decode to the same state, and join with itself without change.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tandem/engine/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::engine;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = DecodeFieldState(in);
  if (!r.ok()) return 0;
  auto again = DecodeFieldState(EncodeFieldState(*r).value());
  if (!again.ok() || !(*again == *r)) std::abort();
  FieldState joined = *r;
  if (Join(joined, *r) || !(joined == *r)) std::abort();
  (void)Read(*r);
  (void)Siblings(*r);
  return 0;
}
