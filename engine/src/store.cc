#include "tandem/engine/store.h"

namespace tandem::engine {

Status ReadTxn::GetFieldOrDamaged(const FieldKey& key, std::optional<FieldState>* out,
                                  Status* damage) {
  Status st = GetField(key, out);
  if (damage) *damage = Status::Ok();
  if (st.code() != Code::kCorrupt) return st;
  out->reset();
  if (damage) *damage = std::move(st);
  return Status::Ok();
}

Status ReadTxn::ScanLogFields(uint64_t since, const LogFieldFn& fn) {
  Status damaged;
  TANDEM_RETURN_IF_ERROR(ScanLogDeltas(
      since, UINT64_MAX,
      [&](uint64_t seq, const FieldKey& key, FieldState* state, const LargeState* large) {
        if (large && large->damaged) {
          damaged = Status::Corrupt("field " + key.Name() + ": its stored state is damaged");
          return false;
        }
        return fn(seq, key, state);
      }));
  return damaged;
}

Status ReadTxn::CountLog(uint64_t since, uint64_t cap, uint64_t* out) {
  *out = 0;
  if (cap == 0) return Status::Ok();
  return ScanLog(since, [&](uint64_t, const FieldKey&) { return ++*out < cap; });
}

void LogHull::Checkpoint(uint64_t seq) {
  if (seq <= base) return;  // nothing the hull knows of
  if (!checkpoints.empty()) {
    auto& last = checkpoints.back();
    if (seq < last.seq) return;
    // The same hull further on says strictly more.
    if (last.hull == hull || seq == last.seq) {
      last.seq = seq;
      last.hull = hull;
      return;
    }
  }
  checkpoints.push_back(LogCheckpoint{seq, hull});
  if (checkpoints.size() <= kMaxCheckpoints) return;
  // Drop one from the middle: the one whose neighbours are closest together, so the
  // checkpoints left stay spread over the log (the first and the newest always stay).
  size_t drop = 1;
  uint64_t best = UINT64_MAX;
  for (size_t i = 1; i + 1 < checkpoints.size(); ++i) {
    const uint64_t span = checkpoints[i + 1].seq - checkpoints[i - 1].seq;
    if (span < best) best = span, drop = i;
  }
  checkpoints.erase(checkpoints.begin() + static_cast<std::ptrdiff_t>(drop));
}

uint64_t LogHull::SkipFor(const VersionVector& vv, uint64_t cursor) const {
  // What lies at or before `base` is unknown, so the skipped range must start after it.
  if (cursor < base) return cursor;
  uint64_t to = cursor;
  // Hulls grow with the position: the ones vv covers are a prefix.
  for (const auto& c : checkpoints) {
    if (!vv.Covers(c.hull)) break;
    to = std::max(to, c.seq);
  }
  return to;
}

}  // namespace tandem::engine
