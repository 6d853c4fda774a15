#include "tandem/engine/ids.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace tandem::engine {

bool ReplicaId::IsZero() const {
  for (uint8_t b : bytes)
    if (b) return false;
  return true;
}

std::string ReplicaId::Hex() const {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (size_t i = 0; i < 16; ++i) {
    s[2 * i] = kDigits[bytes[i] >> 4];
    s[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return s;
}

static int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<ReplicaId> ReplicaId::FromHex(std::string_view hex) {
  if (hex.size() != 32) return Status::Invalid("replica id must be 32 hex digits");
  ReplicaId id;
  for (size_t i = 0; i < 16; ++i) {
    int hi = HexDigit(hex[2 * i]), lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Status::Invalid("replica id must be 32 hex digits");
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

ReplicaId ReplicaId::FromBytes(const uint8_t* p) {
  ReplicaId id;
  std::memcpy(id.bytes.data(), p, 16);
  return id;
}

Hlc HybridClock::Tick(uint64_t physical_ms) {
  physical_ms &= 0xffffffffffffULL;
  uint64_t last_ms = HlcMillis(last_);
  if (physical_ms > last_ms) {
    last_ = MakeHlc(physical_ms, 0);
  } else {
    // Same or earlier wall time: advance the logical part; when it overflows, borrow a
    // millisecond (the clock stays monotonic, it just runs slightly ahead).
    // At the very end of the 48-bit range the clock stops rather than wrap around.
    if (last_ != UINT64_MAX) last_ += 1;
  }
  return last_;
}

bool VersionVector::Covers(const VersionVector& other) const {
  for (const auto& [r, s] : other.m_)
    if (Get(r) < s) return false;
  return true;
}

std::string VersionVector::ToString() const {
  std::string s = "{";
  bool first = true;
  for (const auto& [r, seq] : m_) {
    if (!first) s += ", ";
    first = false;
    s += r.ShortHex() + ":" + std::to_string(seq);
  }
  return s + "}";
}

VersionVector VersionVector::Meet(const VersionVector& a, const VersionVector& b) {
  VersionVector out;
  for (const auto& [r, seq] : a.m_) out.Raise(r, std::min(seq, b.Get(r)));
  return out;
}

}  // namespace tandem::engine
