// What a field state's encoding costs, estimated without encoding it (EncodedSizeBound,
// EncodesSmall).
#include <map>
#include <variant>

#include "codec_state.h"

namespace tandem::engine {

// The encoding's own size, but for integer values (counted at their longest).
size_t EncodedSizeBound(const FieldState& s) {
  auto value = [](const Value& v) -> size_t {
    if (auto* t = std::get_if<std::string>(&v)) return 1 + VarintBytes(t->size()) + t->size();
    if (auto* b = std::get_if<Bytes>(&v)) return 1 + VarintBytes(b->data.size()) + b->data.size();
    if (auto* ref = std::get_if<BlobRef>(&v))
      return 1 + 32 + VarintBytes(ref->size) + VarintBytes(ref->type.size()) + ref->type.size();
    return 1 + 10;
  };
  const size_t position = VarintBytes(s.ctx.size());
  auto dot = [&](const Dot& d) { return position + VarintBytes(s.ctx.Get(d.replica) - d.seq); };
  auto totals = [&](const std::map<ReplicaId, PnTotals>& m) {
    size_t n = VarintBytes(m.size());
    for (const auto& [r, t] : m) n += position + VarintBytes(t.pos) + VarintBytes(t.neg);
    return n;
  };
  size_t n = VarintBytes(s.ctx.size()) + 1 + VarintBytes(s.ctx.size());  // table, header, ctx
  for (const auto& [r, seq] : s.ctx.entries()) n += 16 + position + VarintBytes(seq);
  n += VarintBytes(s.markers.size());
  for (const auto& [d, m] : s.markers)
    n += dot(d) + VarintBytes(HlcMillis(m.hlc)) +
         VarintBytes(static_cast<uint64_t>(HlcLogical(m.hlc)) << 2 | 3) + value(m.value);
  n += VarintBytes(s.elements.size());
  for (const auto& [v, dots] : s.elements) {
    n += value(v) + VarintBytes(dots.size());
    for (const Dot& d : dots) n += dot(d);
  }
  return n + totals(s.counter) + totals(s.counter_base);
}

bool EncodesSmall(const FieldState& s) {
  // Header, table and context: at most 1 + 1 + 4 * (16 + 1 + 10) + 1 + 1. Each marker: at
  // most 2 + 10 + 10 + 3 for its dot, time and kind, and its value.
  if (!s.elements.empty() || !s.counter.empty() || !s.counter_base.empty() || s.ctx.size() > 4 ||
      s.markers.size() > 2)
    return false;
  for (const auto& [d, m] : s.markers) {
    // Value tag, length and up to 128 bytes (a blob reference: 32 + 10 + 1 + its type).
    if (const auto* t = std::get_if<std::string>(&m.value); t && t->size() > 128) return false;
    if (const auto* b = std::get_if<Bytes>(&m.value); b && b->data.size() > 128) return false;
  }
  static_assert(4 + 4 * 27 + 2 * (25 + 2 + 32 + 10 + 1 + kMaxBlobTypeBytes) <= kSmallEncoding);
  return true;
}

}  // namespace tandem::engine
