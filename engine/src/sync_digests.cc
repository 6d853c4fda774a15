// Comparing states within a sync session (see sync.h and
// docs/protocol.md#comparing-states).
#include <algorithm>

#include "tandem/engine/sync.h"

namespace tandem::engine {

Status Session::SendDigests(std::vector<Message>* out) {
  if (digests_sent_ || !peer_digests_ || !Settled()) return Status::Ok();
  // Each side holds what the other had. Only where nothing was left out or refused
  // either way do the two states have to agree where their vectors do.
  digests_sent_ = true;
  our_digests_.emplace();
  if ((opt_.compare_states || peer_asks_compare_) && !filtered_in_ && !filtered_any_ &&
      !refused_any_ && !judged_out_ && withheld_.empty() && !stats_.fields_withheld &&
      CollectionFilter::Both(opt_.send, peer_accept_).Everything()) {
    TANDEM_ASSIGN_OR_RETURN(Replica::StateDigests d, replica_.Digests());
    // Within a frame (a replica of many thousand collections or replicas says nothing).
    size_t bytes = 32 * (d.vv.entries().size() + d.hull.entries().size());
    for (const auto& [c, sum] : d.sums) bytes += c.size() + 24;
    if (d.exact && bytes <= kMaxBatchBodyBound)
      our_digests_ = Digests{true, std::move(d.vv), std::move(d.hull), false, std::move(d.sums)};
  }
  TANDEM_RETURN_IF_ERROR(CompareDigests(false));
  // Seen here first: the peer ends the session, whether it noted the difference or not.
  our_digests_->repair = repair_due_;
  out->emplace_back(std::in_place_type<Digests>, *our_digests_);
  return Status::Ok();
}

Status Session::CompareDigests(bool end) {
  if (!our_digests_ || !peer_digests_in_) return Status::Ok();
  if (!our_digests_->comparable || !peer_digests_in_->comparable) return Status::Ok();
  stats_.states_compared = true;
  const Digests& ours = *our_digests_;
  const Digests& theirs = *peer_digests_in_;
  // Where one holds states beyond its vector (part of a session's changes, say), the
  // hulls differ: the sums need not agree.
  if (!(ours.vv == theirs.vv) || !(ours.hull == theirs.hull)) return Status::Ok();
  // Per collection that differs, both sums (zero where a side has none).
  Replica::Difference differ;
  for (const auto& [c, sum] : ours.sums) differ[c].first = sum;
  for (const auto& [c, sum] : theirs.sums) differ[c].second = sum;
  std::erase_if(differ, [](const auto& d) { return d.second.first == d.second.second; });
  if (differ.empty()) return Status::Ok();
  for (const auto& [c, sums] : differ) stats_.states_differ.push_back(c);
  // Noted once per difference: one that the last repair with this peer left as it was
  // is not repaired again.
  const bool noted = replica_.NoteDifference(*peer_, differ);
  // Our Digests goes out after this: the peer ends the session once it sees the difference.
  if (!end) {
    repair_due_ = noted;
    return Status::Ok();
  }
  if (!noted && !theirs.repair) return Status::Ok();
  repair_due_ = true;
  std::string list;
  for (const auto& c : stats_.states_differ) list += (list.empty() ? "" : ", ") + c;
  return Status::Busy(
      "this replica and the peer hold the same events by their version vectors, but their "
      "data differs in " +
      list + ": sync again, to exchange whole states");
}

}  // namespace tandem::engine
