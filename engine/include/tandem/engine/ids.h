// Identity and causality: replica ids, dots, hybrid logical clocks, version vectors.
#pragma once

#include <array>
#include <bit>
#include <compare>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include "tandem/engine/status.h"

namespace tandem::engine {

// A replica's 16-byte random id. A restored or cloned replica gets a new one, so no
// two replicas ever issue the same dot.
struct ReplicaId {
  std::array<uint8_t, 16> bytes{};

  // The bytes' lexicographic order, as two 8-byte words read big-endian: ids are keys of
  // every context, dot and version vector, and a call to memcmp for each comparison
  // costs more than the comparison.
  std::strong_ordering operator<=>(const ReplicaId& o) const {
    const uint64_t a = Word(0), b = o.Word(0);
    if (a != b) return a <=> b;
    return Word(8) <=> o.Word(8);
  }
  bool operator==(const ReplicaId& o) const { return Word(0) == o.Word(0) && Word(8) == o.Word(8); }
  bool IsZero() const;
  std::string Hex() const;  // 32 lowercase hex digits
  std::string ShortHex() const { return Hex().substr(0, 8); }
  static Result<ReplicaId> FromHex(std::string_view hex);
  static ReplicaId FromBytes(const uint8_t* p);  // copies 16 bytes

 private:
  uint64_t Word(size_t at) const {
    uint64_t w;
    std::memcpy(&w, bytes.data() + at, 8);
    if constexpr (std::endian::native == std::endian::little) w = __builtin_bswap64(w);
    return w;
  }
};

// One mutation event: the replica that made it and that replica's event number (>= 1).
struct Dot {
  ReplicaId replica;
  uint64_t seq = 0;
  auto operator<=>(const Dot&) const = default;
};

// Hybrid logical clock timestamp: 48-bit milliseconds since the Unix epoch in the high
// bits, a 16-bit logical counter in the low bits. Totally ordered as an integer.
using Hlc = uint64_t;
inline uint64_t HlcMillis(Hlc h) { return h >> 16; }
inline uint16_t HlcLogical(Hlc h) { return static_cast<uint16_t>(h & 0xffff); }
inline Hlc MakeHlc(uint64_t ms, uint16_t logical) {
  return ((ms & 0xffffffffffffULL) << 16) | logical;
}

// Kulkarni et al.'s hybrid logical clock. The physical time is passed in: the engine
// never reads a clock itself.
// How far ahead of our own physical clock a remote timestamp may pull our clock. A peer
// whose clock is wrong by more (a device set to 2099) still syncs, and its writes keep
// their timestamps, but it cannot drag every replica's clock into its future.
inline constexpr uint64_t kMaxClockDriftMs = 5 * 60 * 1000;

class HybridClock {
 public:
  explicit HybridClock(Hlc last = 0) : last_(last) {}
  // A timestamp greater than every one issued or observed so far.
  Hlc Tick(uint64_t physical_ms);
  // Folds in a timestamp seen from another replica.
  void Observe(Hlc remote) {
    if (remote > last_) last_ = remote;
  }
  Hlc last() const { return last_; }

 private:
  Hlc last_;
};

// Replica -> highest event number seen. Used both as "everything a replica has" and,
// per field, as the causal context of that field: every event of replica r with a
// number <= vv[r] that touched the field is reflected in the field's state.
class VersionVector {
 public:
  uint64_t Get(const ReplicaId& r) const {
    auto it = m_.find(r);
    return it == m_.end() ? 0 : it->second;
  }
  // Raises r's entry to at least seq.
  void Raise(const ReplicaId& r, uint64_t seq) {
    if (seq == 0) return;
    auto& e = m_[r];
    if (seq > e) e = seq;
  }
  // Lowers r's entry to at most seq (0 removes it).
  void Cap(const ReplicaId& r, uint64_t seq) {
    auto it = m_.find(r);
    if (it == m_.end() || it->second <= seq) return;
    if (seq == 0)
      m_.erase(it);
    else
      it->second = seq;
  }
  bool Covers(const Dot& d) const { return d.seq <= Get(d.replica); }
  // True when every entry of other is covered by this.
  bool Covers(const VersionVector& other) const;
  void Merge(const VersionVector& other) {
    for (const auto& [r, s] : other.m_) Raise(r, s);
  }
  bool empty() const { return m_.empty(); }
  size_t size() const { return m_.size(); }
  const std::map<ReplicaId, uint64_t>& entries() const { return m_; }
  bool operator==(const VersionVector&) const = default;
  std::string ToString() const;  // {ab12cd34:5, ...}
  // Entry by entry, the smaller of the two: what both cover.
  static VersionVector Meet(const VersionVector& a, const VersionVector& b);

 private:
  std::map<ReplicaId, uint64_t> m_;
};

}  // namespace tandem::engine
