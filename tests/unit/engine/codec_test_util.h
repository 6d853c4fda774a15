// Replica ids, values and byte strings for the codec's tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "tandem/engine/codec.h"

namespace tandem::engine {
namespace {

inline ReplicaId Rid(uint8_t n) {
  ReplicaId id;
  id.bytes[0] = 0x10;
  id.bytes[15] = n;
  return id;
}

const ReplicaId kA = Rid(1);
const ReplicaId kB = Rid(2);
const ReplicaId kC = Rid(3);

inline Value S(const char* s) { return Value{std::string(s)}; }

inline double BitsToDouble(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

inline std::string VarintBytes(uint64_t v) {
  std::string s;
  Writer(&s).Varint(v);
  return s;
}

inline std::string IdBytes(const ReplicaId& id) {
  return std::string(reinterpret_cast<const char*>(id.bytes.data()), 16);
}

}  // namespace
}  // namespace tandem::engine
