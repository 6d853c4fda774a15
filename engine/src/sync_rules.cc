// What a session asks for and takes: collection filters, requests, and the rules both
// sides of a session apply alike to them (docs/design.md#sync).
#include <set>

#include "tandem/engine/sync.h"

namespace tandem::engine {

Result<CollectionFilter> CollectionFilter::Parse(std::string_view list) {
  std::set<std::string> names;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    TANDEM_RETURN_IF_ERROR(ValidateCollection(name));
    names.emplace(name);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return Only(std::move(names));
}

CollectionFilter CollectionFilter::Both(const CollectionFilter& a, const CollectionFilter& b) {
  if (a.all && b.all) {
    CollectionFilter out = a;  // every one but those either leaves out
    out.names.insert(b.names.begin(), b.names.end());
    return out;
  }
  const CollectionFilter& only = a.all ? b : a;
  const CollectionFilter& other = a.all ? a : b;
  CollectionFilter out = None();
  for (const auto& n : only.names)
    if (other.Allows(n)) out.names.insert(n);
  return out;
}

bool CollectionFilter::Within(const CollectionFilter& wider) const {
  if (wider.all) {
    // Every one `wider` leaves out, this leaves out too.
    for (const auto& n : wider.names)
      if (Allows(n)) return false;
    return true;
  }
  return !all && std::includes(wider.names.begin(), wider.names.end(), names.begin(), names.end());
}

Result<SyncRequest> Session::RequestFor(const ReplicaId& peer, const VersionVector& vv,
                                        uint64_t cursor, uint64_t mark) {
  TANDEM_ASSIGN_OR_RETURN(const uint64_t held, replica_.Held(peer));
  SyncRequest req{vv, cursor, held, mark};
  // Pieces of a state at that cursor into its log, stored by an earlier session.
  TANDEM_ASSIGN_OR_RETURN(auto pieces, replica_.PiecesHeld(peer));
  if (pieces && pieces->from == cursor) {
    req.piece_offset = pieces->held;
    req.piece_digest = pieces->digest;
  }
  return req;
}

Status Session::AdoptRequest(const SyncRequest& req) {
  requested_ = true;
  recv_cursor_ = req.cursor;
  from_zero_ = req.cursor == 0;
  TANDEM_ASSIGN_OR_RETURN(auto pieces, replica_.PiecesHeld(*peer_));
  if (pieces && pieces->from == req.cursor && req.piece_offset == pieces->held &&
      req.piece_digest == pieces->digest) {
    in_piece_held_ = pieces->held;
    in_piece_total_ = pieces->total;
    in_piece_digest_ = pieces->digest;
  } else if (pieces) {
    TANDEM_RETURN_IF_ERROR(replica_.DropPieces(*peer_));  // the peer will not resume them
  }
  return Status::Ok();
}

bool Session::EarlyTaken(const SyncRequest& req, const ReplicaId& expect, bool takes_early,
                         const ReplicaId& receiver, const VersionVector& receiver_collected,
                         const ReadTxn::CollectedIn* receiver_collected_in) {
  if (!takes_early || !(expect.IsZero() || expect == receiver) || req.whole ||
      !req.vv.Covers(receiver_collected))
    return false;
  if (receiver_collected_in)
    for (const auto& [collection, vv] : *receiver_collected_in)
      if (!req.vv.Covers(vv)) return false;
  return true;
}

bool Session::Absorbed(const ReplicaMeta& meta, const VersionVector& collected) const {
  if (meta.vv.Covers(collected)) return true;
  // What sessions that left collections out bore out holds for the collections they took.
  return taken_.Within(meta.scope) && meta.Holding().Covers(collected);
}

bool Session::AbsorbedIn(const ReplicaMeta& meta, const ReadTxn::CollectedIn& own,
                         const ReadTxn::CollectedIn& peer) const {
  for (const auto& [collection, vv] : peer) {
    if (!taken_.Allows(collection) || meta.vv.Covers(vv)) continue;
    if (meta.scope.Allows(collection) && meta.Holding().Covers(vv)) continue;
    // What a rebase took in there, or this replica removed there itself.
    if (auto it = own.find(collection); it != own.end() && it->second.Covers(vv)) continue;
    return false;
  }
  return true;
}

CollectionFilter Session::SendOlder() const {
  if (!opt_.send.Excludes()) return opt_.send;
  if (opt_.send_older && !opt_.send_older->Excludes()) return *opt_.send_older;
  return CollectionFilter::None();
}

bool Session::Sendable(const FieldKey& k) const {
  return opt_.send.Allows(k.collection) && peer_accept_.Allows(k.collection);
}

}  // namespace tandem::engine
