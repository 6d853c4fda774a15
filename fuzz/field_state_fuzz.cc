// libFuzzer target: the field-state decoder on untrusted bytes. Read in parts (as a
// state in pieces is), it must decide as it does on the whole. Whatever decodes must
// re-encode and decode to the same state, be normal, join with itself without change,
// and join into the empty state as itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "../tests/unit/engine/reader_parts.h"
#include "tandem/engine/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::engine;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = DecodeFieldState(in);
  // The same state as a delta, whole and in parts of 1 to 7 bytes.
  const std::string delta = std::string{1, 1, 'c', 1, 'r', 1, 'f'} + std::string(in);
  auto whole = DecodeDelta(delta);
  Parts parts(delta, 1 + size % 7);
  Reader reader({}, &parts);
  auto in_parts = DecodeDelta(reader);
  if (whole.ok() != r.ok() || in_parts.ok() != r.ok()) std::abort();
  if (r.ok() && (!(whole->second == *r) || !(in_parts->second == *r))) std::abort();
  if (!r.ok()) return 0;
  auto again = DecodeFieldState(EncodeFieldState(*r).value());
  if (!again.ok() || !(*again == *r)) std::abort();
  FieldState joined = *r;
  if (Join(joined, *r) || !(joined == *r)) std::abort();
  // Normal, so a replica holding nothing of the field may write it as it came: joined
  // into the empty state it is itself.
  FieldState from_empty;
  if (!IsNormal(*r) || Join(from_empty, *r) != !(*r == FieldState{}) || !(from_empty == *r))
    std::abort();
  (void)Read(*r);
  (void)Siblings(*r);
  return 0;
}
