// A state in pieces joined into a field this replica holds: where the join leaves the
// incoming state as it came, it takes ours' place without either being decoded whole.
#include <algorithm>

#include "tandem/engine/replica.h"
#include "tandem/engine/take_over.h"

namespace tandem::engine {

namespace {

bool AtLeast(const std::map<ReplicaId, PnTotals>& a, const std::map<ReplicaId, PnTotals>& b) {
  for (const auto& [r, t] : b) {
    auto it = a.find(r);
    if (it == a.end() || it->second.pos < t.pos || it->second.neg < t.neg) return false;
  }
  return true;
}

}  // namespace

StateItems ItemHashes(ContentHash hash, std::function<void(const Dot&, const BlobHash&)> fn) {
  auto buf = std::make_shared<std::string>();
  StateItems items;
  items.marker = [hash, fn, buf](const Dot& d, const Marker& m) {
    buf->clear();
    Writer w(buf.get());
    w.U8('m');
    EncodeWholeMarker(d, m, w);
    fn(d, HashOf(hash, *buf));
  };
  items.element = [hash, fn, buf](const Value& v, const std::set<Dot>& dots) {
    buf->clear();
    Writer w(buf.get());
    w.U8('e');
    EncodeValue(v, w);
    const size_t value_end = buf->size();
    for (const Dot& d : dots) {
      buf->resize(value_end);
      EncodeWholeDot(d, w);
      fn(d, HashOf(hash, *buf));
    }
  };
  return items;
}

StateItems TakeOver::Ours() {
  return ItemHashes(hash_, [this](const Dot& d, const BlobHash& h) {
    items_.push_back(h);
    dots_.push_back(d);
  });
}

bool TakeOver::Compare(const FieldState& ours, const FieldState& theirs) {
  ours_ = &ours;
  theirs_ = &theirs;
  // Having seen all ours has, its context covers ours: each item of ours is one it holds
  // or removed.
  joins_to_theirs_ = theirs.ctx.Covers(ours.ctx) && AtLeast(theirs.counter, ours.counter) &&
                     AtLeast(theirs.counter_base, ours.counter_base);
  // The other way round: ours has seen all it has, and keeps each item of ours it holds.
  joins_to_ours_ = ours.ctx.Covers(theirs.ctx) && AtLeast(ours.counter, theirs.counter) &&
                   AtLeast(ours.counter_base, theirs.counter_base);
  if (joins_to_ours_)
    for (const Dot& d : dots_) ours_seen_ += theirs.ctx.Covers(d);
  dots_ = {};
  std::sort(items_.begin(), items_.end());
  return joins_to_theirs_ || joins_to_ours_;
}

StateItems TakeOver::Theirs() {
  // Each of its items that ours' context covers, ours holds exactly so (else ours removed
  // it, or holds another content under its dot). Each other one is new here, and must not
  // be one this replica collected. For the join to be ours, it holds each item of ours
  // its context covers: the items both hold (each a hash, and within its context) are
  // as many (those ours does not hold, ours removed).
  StateItems items = ItemHashes(hash_, [this](const Dot& dot, const BlobHash& h) {
    const bool seen = ours_->ctx.Covers(dot);
    const bool ours_holds = (joins_to_ours_ || (joins_to_theirs_ && seen)) &&
                            std::binary_search(items_.begin(), items_.end(), h);
    both_ += ours_holds;
    if (!joins_to_theirs_) return;
    if (seen) {
      joins_to_theirs_ = ours_holds;
      ++held_;
    } else {
      joins_to_theirs_ = !gone_.Covers(dot);
      ++fresh_;
    }
  });
  items.only = true;  // its outline is held already
  return items;
}

std::optional<bool> TakeOver::Result() const {
  if (!joins_to_theirs_) return std::nullopt;
  // It changes ours if it brings an item or an event ours has not seen, or removes one.
  return !(theirs_->ctx == ours_->ctx) || fresh_ > 0 || held_ < items_.size() ||
         !(theirs_->counter == ours_->counter) || !(theirs_->counter_base == ours_->counter_base);
}

}  // namespace tandem::engine
