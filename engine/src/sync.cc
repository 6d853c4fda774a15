#include "tandem/engine/sync.h"

#include <algorithm>

#include "tandem/engine/codec.h"

namespace tandem::engine {

const char* MessageName(const Message& m) {
  static const char* kNames[] = {"Hello",    "SyncRequest", "DeltaBatch", "CaughtUp", "Ack",
                                 "BlobWant", "BlobHead",    "BlobChunk",  "BlobAck",  "Digests"};
  return kNames[m.index()];
}

Session::~Session() {
  // A repair that did not get the peer's whole state in: the next comparison that finds
  // the difference asks for it again.
  if (repairing_ && peer_) replica_.ForgetDifference(*peer_);
}

Session::Session(Replica& replica, SessionOptions options)
    : replica_(replica), opt_(std::move(options)) {
  // Zero limits would make Pump spin without ever filling a batch.
  if (opt_.batch_fields == 0) opt_.batch_fields = 1;
  set_window(opt_.window);
  if (opt_.batch_bytes == 0) opt_.batch_bytes = 1;
}

Status Session::Start(std::vector<Message>* out) {
  if (started_) return Status::Invalid("session already started");
  TANDEM_ASSIGN_OR_RETURN(ReplicaMeta meta, replica_.Meta());
  self_ = meta.id;
  started_ = true;
  Hello hello;
  hello.replica = self_;
  hello.send = SendOlder();
  hello.send_full = opt_.send;
  hello.accept = opt_.accept;
  hello.pieces = true;
  hello.blobs = true;
  hello.blob_later = true;
  hello.digests = true;
  hello.compare = opt_.compare_states;
  TANDEM_ASSIGN_OR_RETURN(hello.collected, replica_.Collected(&collected_in_));
  collected_ = hello.collected;
  for (const auto& [collection, vv] : collected_in_)
    if (!collected_.Covers(vv)) hello.collected_in.emplace(collection, vv);
  hello.takes_early = true;
  hello.reads_collected_in = true;
  // A repair due rebases, which the early request would skip.
  if (opt_.early_request && !replica_.RepairDue(opt_.expect.IsZero() ? nullptr : &opt_.expect)) {
    if (opt_.expect.IsZero()) {
      // From the start of any replica's log. Only while our version vector covers every
      // event our states have seen: else what we hold of the peer's events beyond it
      // (SyncRequest::holds_of_yours) could show the peer it was rolled back.
      TANDEM_ASSIGN_OR_RETURN(const VersionVector held, replica_.HeldAll());
      if (meta.vv.Covers(held)) early_ = SyncRequest{meta.vv};
    } else {
      // What we hold of the expected replica's log. A filtered pass over it waits for
      // the peer's Hello (whether this session is filtered decides where it starts), and
      // so do pieces of a state held from it (another session may add to them meanwhile).
      TANDEM_ASSIGN_OR_RETURN(PeerState ps, replica_.Peer(opt_.expect));
      TANDEM_ASSIGN_OR_RETURN(auto pieces, replica_.PiecesHeld(opt_.expect));
      if (!ps.filtered && !pieces) {
        TANDEM_ASSIGN_OR_RETURN(early_, RequestFor(opt_.expect, meta.vv, ps.cursor, ps.mark));
      }
    }
    hello.early = early_;
    hello.expect = opt_.expect;
  }
  out->emplace_back(std::in_place_type<Hello>, std::move(hello));
  return Status::Ok();
}

Status Session::RolledBack() {
  rolled_back_ = true;
  return Status::Busy(
      "this replica was rolled back or copied (the peer holds events of it that it lacks); "
      "it took a new replica id: sync again");
}

bool Session::caught_up() const {
  return sent_caught_up_ && received_caught_up_ && unacked_ == 0 && !streaming_ &&
         (!peer_blobs_ || (!in_blob_ && idle_sent_ && !out_blob_ && peer_idle_)) &&
         (!peer_digests_ || (digests_sent_ && peer_digests_in_));
}

bool Session::complete() const {
  return Settled() && (!peer_digests_ || (digests_sent_ && peer_digests_in_));
}

bool Session::Settled() const {
  return sent_caught_up_ && received_caught_up_ &&
         stats_.batches_sent - unacked_ >= batches_before_caught_up_ &&
         (!peer_blobs_ || (!in_blob_ && idle_sent_ && !out_blob_ && peer_idle_));
}

Status Session::Receive(const Message& in, std::vector<Message>* out) {
  TANDEM_RETURN_IF_ERROR(ReceiveOne(in, out));
  return SendDigests(out);
}

Status Session::ReceiveOne(const Message& in, std::vector<Message>* out) {
  if (!started_) return Status::Invalid("message before Start");
  if (const auto* h = std::get_if<Hello>(&in)) {
    if (peer_) return Status::Invalid("second Hello");
    if (h->protocol != kProtocolVersion)
      return Status::Unsupported("peer speaks protocol " + std::to_string(h->protocol) +
                                 ", this build speaks " + std::to_string(kProtocolVersion));
    // Not taken as evidence of a copy (a node dialling its own address looks the same).
    if (h->replica == self_)
      return Status::Invalid(
          "peer has our own replica id: this device dialled itself, or the two are copies "
          "of one replica cloned with their disk (see docs/design.md, copies and rollbacks)");
    if (h->replica.IsZero()) return Status::Invalid("peer replica id is zero");
    peer_ = h->replica;
    // Each side follows its whole policy when both read it, else what the older build
    // reads (both sides decide alike).
    if (h->send_full) {
      peer_send_ = *h->send_full;
    } else {
      peer_send_ = h->send;
      opt_.send = SendOlder();
    }
    peer_accept_ = h->accept;
    peer_pieces_ = h->pieces;
    peer_blobs_ = h->blobs;
    peer_blob_later_ = h->blobs && h->blob_later;
    peer_digests_ = h->digests;
    peer_asks_compare_ = h->digests && h->compare;
    peer_collected_ = h->collected;
    // Ask for what we lack: our version vector, and where we left off in its log.
    taken_ = CollectionFilter::Both(peer_send_, opt_.accept);
    filtered_in_ = !taken_.Everything();
    if (early_ &&
        EarlyTaken(*early_, opt_.expect, h->takes_early, *peer_, h->collected, &h->collected_in)) {
      // Our request went with our Hello, and the peer takes it.
      TANDEM_RETURN_IF_ERROR(AdoptRequest(*early_));
    } else {
      TANDEM_ASSIGN_OR_RETURN(ReplicaMeta meta, replica_.Meta());
      TANDEM_ASSIGN_OR_RETURN(PeerState ps, replica_.Peer(*peer_));
      // An earlier filtered session moved the cursor past data we never received: a
      // session that takes more than it did starts over, so that it gets that data (and
      // an unfiltered one, so that its CaughtUp may merge the watermark).
      uint64_t cursor = (ps.filtered && !taken_.Within(ps.received)) ? 0 : ps.cursor;
      // The peer collected deletions we have not all seen: we may hold what it removed.
      // Its whole state, from the start, shows which fields it holds at all.
      // Or our state and the peer's differed at equal version vectors (Digests): its
      // whole state mends what ours lacks. That alone drops nothing: the peer's collected
      // vector is what such a difference puts in doubt (a lie it took may have made it
      // collect what it never held), so it is not taken as proof of what it removed.
      repairing_ = replica_.TakeRepair(*peer_);
      const bool collected_due =
          !Absorbed(meta, h->collected) || !AbsorbedIn(meta, collected_in_, h->collected_in);
      if (collected_due || repairing_) {
        repair_only_ = !collected_due;
        rebase_ = repair_only_ ? VersionVector() : h->collected;
        rebase_in_ = repair_only_ ? ReadTxn::CollectedIn() : h->collected_in;
        for (auto& [collection, vv] : rebase_in_) vv.Merge(*rebase_);
        rebase_keys_.clear();
        rebase_dropped_ = 0;
        cursor = 0;
      }
      TANDEM_ASSIGN_OR_RETURN(SyncRequest req, RequestFor(*peer_, meta.vv, cursor, ps.mark));
      req.whole = rebase_.has_value();
      TANDEM_RETURN_IF_ERROR(AdoptRequest(req));
      out->emplace_back(std::in_place_type<SyncRequest>, std::move(req));
    }
    // The peer's request, if it came with its Hello and counts (by the same rule).
    if (h->early && EarlyTaken(*h->early, h->expect, true, self_, collected_,
                               h->reads_collected_in ? &collected_in_ : nullptr))
      return TakeRequest(*h->early, out);
    return Status::Ok();
  }
  if (!peer_) return Status::Invalid(std::string(MessageName(in)) + " before Hello");
  if (std::holds_alternative<BlobWant>(in) || std::holds_alternative<BlobHead>(in) ||
      std::holds_alternative<BlobChunk>(in) || std::holds_alternative<BlobAck>(in))
    return ReceiveBlob(in, out);

  if (const auto* r = std::get_if<SyncRequest>(&in)) return TakeRequest(*r, out);
  if (const auto* d = std::get_if<Digests>(&in)) {
    if (!peer_digests_)
      return Status::Invalid("Digests from a peer whose Hello did not offer them");
    if (peer_digests_in_) return Status::Invalid("second Digests");
    peer_digests_in_ = *d;
    return CompareDigests(true);
  }
  if (const auto* b = std::get_if<DeltaBatch>(&in)) {
    if (!requested_) return Status::Invalid("DeltaBatch before our SyncRequest");
    // Batches must be contiguous: applying one after a gap would store a cursor past
    // changes never received, and they would never be sent again.
    if (b->from != recv_cursor_ || b->cursor < b->from)
      return Status::Invalid("DeltaBatch covers (" + std::to_string(b->from) + ", " +
                             std::to_string(b->cursor) + "] but " + std::to_string(recv_cursor_) +
                             " was applied last");
    if (b->piece) return ReceivePiece(*b, out);
    if (in_piece_live_)
      return Status::Invalid("a DeltaBatch before the last piece of a field state");
    // Pieces left by an earlier session that the peer does not resume: stale.
    if (in_piece_held_) TANDEM_RETURN_IF_ERROR(DropHeldPieces());
    return Apply(*b, out);
  }
  if (const auto* c = std::get_if<CaughtUp>(&in)) {
    if (!requested_) return Status::Invalid("CaughtUp before our SyncRequest");
    if (in_piece_live_) return Status::Invalid("CaughtUp before the last piece of a field state");
    if (in_piece_held_) TANDEM_RETURN_IF_ERROR(DropHeldPieces());
    if (c->cursor != recv_cursor_)
      return Status::Invalid("CaughtUp cursor " + std::to_string(c->cursor) +
                             " does not match the last batch " + std::to_string(recv_cursor_));
    // Merge the watermark only if the peer sent us everything it had: nothing filtered
    // by either side's policy, nothing refused.
    const bool merge = !filtered_in_ && !refused_any_ && !judged_out_;
    // What the peer collected while it streamed, it can no longer deliver either: a field
    // the stream had not reached when collection removed it was never sent. A rebase
    // drops that too; else the entries that moved past its Hello's vector are held back
    // as a vector left aside is (below), so that this replica's vector does not cover
    // what the peer collected and the next session rebases on it.
    const bool dropping = rebase_ && !repair_only_;
    if (dropping) {
      rebase_->Merge(c->collected);
      for (auto& [collection, vv] : rebase_in_) vv.Merge(c->collected);
    }
    // A rebase takes the peer's collected vector in only if it received the peer's whole
    // state: that vector covers the values the peer's states replaced, and where one of
    // those states was filtered out or refused here, a value it replaced may still live,
    // and would be dropped as collected when it came. Nor if the peer may not write
    // everywhere (SessionOptions::peer_writes_everywhere).
    const bool take_collected =
        dropping && merge && (!opt_.peer_writes_everywhere || opt_.peer_writes_everywhere());
    if (dropping && !take_collected) left_aside_ = *rebase_;
    bool moved = false;
    if (!dropping)
      for (const auto& [r, n] : c->collected.entries())
        if (n > peer_collected_.Get(r)) {
          if (!left_aside_) left_aside_.emplace();
          left_aside_->Raise(r, n);
          moved = true;
        }
    peer_collected_.Merge(c->collected);
    // What we hold, before this CaughtUp moves it.
    TANDEM_ASSIGN_OR_RETURN(const ReplicaMeta meta, replica_.Meta());
    // Past what we hold, that is a rebase due: the session ends (kBusy) so that the next
    // one, at once, does it.
    if (moved) rebase_due_ = !Absorbed(meta, c->collected);
    // A revoked replica's events past its cutoff are never taken in, whatever the peer
    // holds: our watermark must not claim them (a later session refuses nothing new, yet
    // the peer's vector still covers what an earlier one refused).
    VersionVector peer_vv = c->vv;
    if (opt_.revoked)
      for (const auto& [r, cutoff] : opt_.revoked()) peer_vv.Cap(r, cutoff);
    // A session that left collections out, and refused nothing, bears out as much for the
    // collections it took (ReplicaMeta::absorbed); a rebase's collected vector too, since
    // the rebase dropped what it covers there, unless the peer may not write everywhere.
    const bool absorb = !merge && !refused_any_ && !judged_out_;
    const bool absorb_collected =
        absorb && dropping && (!opt_.peer_writes_everywhere || opt_.peer_writes_everywhere());
    VersionVector bore = peer_vv;
    // Nor events of third replicas the peer only claims: each entry is taken as far as
    // what we held already, or the states it delivered in this session, bear it out. A
    // peer that claims what it never sent would otherwise have honest replicas skip
    // those events for good. (Our own entry is the peer's to claim: more than we have
    // is evidence of a rollback, CheckClaim. Its own events are its to withhold anyway.)
    for (const auto& [r, n] : c->vv.entries()) {
      if (r == meta.id || r == *peer_) continue;
      auto d = delivered_max_.find(r);
      uint64_t proven =
          std::max(meta.vv.Get(r), d == delivered_max_.end() ? uint64_t{0} : d->second);
      // In a rebase, what the peer collected stands for what it can no longer deliver.
      if (take_collected) proven = std::max(proven, rebase_->Get(r));
      // And what the states we hold have seen bears it out as well as what was just
      // delivered (an earlier session may have delivered it: a replica that never
      // writes again would otherwise stay behind for good).
      if (n > proven) {
        TANDEM_ASSIGN_OR_RETURN(const uint64_t held, replica_.Held(r));
        proven = std::max(proven, held);
      }
      if (n > proven) peer_vv.Cap(r, proven);
      if (absorb_collected) proven = std::max(proven, rebase_->Get(r));
      if (n > proven) bore.Cap(r, proven);
    }
    // A rebase: the peer's whole state has arrived; what it collected and we still hold
    // outside the fields it sent goes, before the watermark merges (a rebase cut short
    // is done again at the next session).
    if (rebase_ && repair_only_) {
      stats_.rebased = true;  // the whole state joined in; nothing to drop
      rebase_.reset();
      rebase_keys_.clear();
    } else if (rebase_) {
      TANDEM_ASSIGN_OR_RETURN(
          stats_.rebased_fields,
          replica_.Rebase(*rebase_, take_collected, rebase_keys_,
                          CollectionFilter::Both(peer_send_, opt_.accept), opt_.may_rebase,
                          &rebase_in_, !refused_any_ && !judged_out_));
      stats_.rebased_fields += rebase_dropped_;  // and the fields it sent
      stats_.rebased = true;
      rebase_.reset();
      rebase_in_.clear();
      rebase_keys_.clear();
    }
    bool rekeyed = false;
    // And what the peer has acknowledged of our log so far, for delivery status.
    std::optional<std::pair<uint64_t, CollectionFilter>> delivered;
    if (have_request_)
      delivered.emplace(peer_acked_, CollectionFilter::Both(opt_.send, peer_accept_));
    // A rebase that left the collected vector aside, or a collection during the peer's
    // stream, may leave here what the peer removed and collected: the entries those
    // vectors cover beyond ours do not move, for the rest of the session, so that what
    // removed it comes again, or a rebase that takes a vector in repairs it.
    std::optional<Replica::Absorb> absorbing;
    if (absorb)
      absorbing.emplace(
          Replica::Absorb{std::move(bore), taken_, from_zero_,
                          left_aside_ && !absorb_collected ? &*left_aside_ : nullptr});
    TANDEM_RETURN_IF_ERROR(replica_.CompletePeerSync(
        *peer_, peer_vv, merge, filtered_in_ || filtered_any_, &rekeyed, delivered, c->cursor,
        left_aside_ ? &*left_aside_ : nullptr, absorbing ? &*absorbing : nullptr));
    if (rekeyed) return RolledBack();
    if (repairing_ && stats_.rebased) {
      repairing_ = false;
      stats_.repaired = true;
    }
    if (rebase_due_)
      return Status::Busy(
          "the peer collected deletions this replica lacks while it sent its changes: sync "
          "again, to rebase on them");
    received_caught_up_ = true;
    // The peer holds everything its version vector covers (a watermark never runs ahead
    // of data), so what it sent us need not be offered back to it in live mode; but a
    // whole state (a rebase) goes out whole.
    (whole_ ? held_back_vv_ : peer_vv_).Merge(c->vv);
    ++stats_.caught_up_received;
    return PumpWants(out);
  }
  if (const auto* a = std::get_if<Ack>(&in)) {
    if (unacked_ == 0) return Status::Invalid("Ack without a batch in flight");
    if (a->cursor != inflight_.front())
      return Status::Invalid("Ack for " + std::to_string(a->cursor) + ", expected " +
                             std::to_string(inflight_.front()));
    peer_acked_ = a->cursor;
    inflight_.pop_front();
    --unacked_;
    TANDEM_RETURN_IF_ERROR(Pump(out));
    // Everything we had is acknowledged: remember how far the peer has our log (one write
    // per round, for delivery status; see PeerState::delivered).
    if (sent_caught_up_ && unacked_ == 0 && !streaming_)
      TANDEM_RETURN_IF_ERROR(replica_.RecordDelivery(
          *peer_, peer_acked_, CollectionFilter::Both(opt_.send, peer_accept_)));
    return Status::Ok();
  }
  return Status::Invalid("unknown message");
}

Status Session::TakeRequest(const SyncRequest& r, std::vector<Message>* out) {
  if (have_request_) return Status::Invalid("second SyncRequest");
  // The peer holds events of ours we never issued, or has read our log past its end:
  // this replica was rolled back (restored in place from a snapshot), and the peer's
  // cursor into our log reads a different log now.
  bool rekeyed = false;
  TANDEM_RETURN_IF_ERROR(replica_.RekeyIfBehind(self_, std::max(r.vv.Get(self_), r.holds_of_yours),
                                                &rekeyed, r.cursor, r.mark));
  if (rekeyed) return RolledBack();
  TANDEM_ASSIGN_OR_RETURN(ReplicaMeta meta, replica_.Meta());
  have_request_ = true;
  peer_acked_ = r.cursor;
  peer_vv_ = r.vv;
  send_cursor_ = read_cursor_ = r.cursor;
  TANDEM_ASSIGN_OR_RETURN(skip_to_, replica_.SkipHeld(r.vv, r.cursor));
  if (r.whole) {
    if (r.cursor != 0) return Status::Invalid("a whole SyncRequest starts at cursor 0");
    peer_vv_ = VersionVector();  // every field state, whatever the peer holds
    skip_to_ = 0;
    whole_ = true;
    stats_.whole_sent = true;
  }
  snapshot_vv_ = meta.vv;  // read before the log: everything it covers gets sent
  resume_offset_ = r.piece_offset;
  resume_digest_ = r.piece_digest;
  resume_cursor_ = r.cursor;
  streaming_ = true;
  return Pump(out);
}

void Session::Send(DeltaBatch batch, std::vector<Message>* out) {
  // Any other batch makes the peer drop the pieces it held: they cannot resume after it
  // (a withheld state keeps the cursor where the resumed state starts).
  if (!batch.piece) resume_offset_ = 0;
  batch.from = send_cursor_;
  send_cursor_ = batch.cursor;
  stats_.fields_sent += batch.deltas.size();
  ++stats_.batches_sent;
  ++unacked_;
  inflight_.push_back(batch.cursor);
  out->emplace_back(std::in_place_type<DeltaBatch>, std::move(batch));
}

Status Session::Apply(const DeltaBatch& b, std::vector<Message>* out,
                      const Replica::Consumable* consume) {
  if (rebase_)
    for (const auto& d : b.deltas) rebase_keys_.insert(Replica::KeyHash(d.key));
  for (const auto& d : b.deltas)
    for (const auto& [r, n] : d.state.ctx.entries()) {
      uint64_t& m = delivered_max_[r];
      m = std::max(m, n);
    }
  size_t applied = 0, refused = 0, filtered_out = 0;
  bool rekeyed = false;
  auto revoked = opt_.revoked ? opt_.revoked() : std::map<ReplicaId, uint64_t>{};
  // What this batch takes whole: no collection, once the application's judgement leaves
  // a state out (kFilter): it may take it later, and the peer's log is read again then.
  CollectionFilter batch_taken = taken_;
  auto admit = [this, &revoked, &batch_taken](const FieldDelta& d, const FieldState* ours) {
    if (!opt_.accept.Allows(d.key.collection) || !peer_send_.Allows(d.key.collection))
      return Admission::kFilter;
    // A state ours has seen all of changes nothing, whoever wrote it: refused, it would
    // keep this session from merging for nothing (a peer whose vector lags is sent again
    // what it holds, and its context may well cover a limited writer's later events).
    if (ours && !JoinChanges(*ours, d.state)) return Admission::kAccept;
    // A value from a revoked replica's later events, or a removal only they explain
    // (a record deletion shows only in the context).
    if (!opt_.proves_itself || !opt_.proves_itself(d))
      for (const auto& [r, cutoff] : revoked)
        if (ReliesOnEventsAfter(d.state, ours, r, cutoff)) return Admission::kRefuse;
    const Admission a = opt_.admit ? opt_.admit(d, ours) : Admission::kAccept;
    if (a == Admission::kFilter) {
      batch_taken = CollectionFilter::None();
      judged_out_ = true;
    }
    return a;
  };
  // A writer's binding may come in the batch that brings its changes, or after them
  // (asked before the batch is applied, which may take its states apart).
  bool proves = false;
  for (size_t i = 0; i < b.deltas.size() && !proves && opt_.judge_held && opt_.proves_itself; ++i)
    proves = opt_.proves_itself(b.deltas[i]);
  size_t quarantined = 0;
  // What changes the judgement goes first (SessionOptions::changes_judgement): a
  // permission given back travels with the device's next write, one taken away with the
  // writes it made before it heard, which come first in its log.
  const bool judgement = opt_.changes_judgement && opt_.judgement_changed &&
                         std::any_of(b.deltas.begin(), b.deltas.end(), opt_.changes_judgement);
  const std::vector<FieldDelta>* deltas = &b.deltas;
  std::vector<FieldDelta> rest;
  size_t first_applied = 0, first_refused = 0, first_filtered = 0, first_held = 0;
  if (judgement && !std::all_of(b.deltas.begin(), b.deltas.end(), opt_.changes_judgement)) {
    std::vector<FieldDelta> first;
    for (const auto& d : b.deltas) (opt_.changes_judgement(d) ? first : rest).push_back(d);
    TANDEM_RETURN_IF_ERROR(replica_.ApplyBatch(*peer_, first, recv_cursor_, admit, &first_applied,
                                               &first_refused, nullptr, &first_filtered, &rekeyed,
                                               &first_held));
    if (rekeyed) return RolledBack();
    TANDEM_RETURN_IF_ERROR(opt_.judgement_changed());
    if (opt_.revoked) revoked = opt_.revoked();
    deltas = &rest;
    consume = nullptr;  // it takes apart the batch's own states
  }
  std::optional<Replica::RebaseOn> rebase;
  if (rebase_) rebase.emplace(Replica::RebaseOn{&*rebase_, opt_.may_rebase, 0, &rebase_in_});
  TANDEM_RETURN_IF_ERROR(replica_.ApplyBatch(
      *peer_, *deltas, b.cursor, admit, &applied, &refused, &batch_taken, &filtered_out, &rekeyed,
      &quarantined, b.mark, consume, from_zero_, rebase ? &*rebase : nullptr));
  applied += first_applied;
  refused += first_refused;
  filtered_out += first_filtered;
  quarantined += first_held;
  if (judgement && deltas == &b.deltas && !rekeyed)
    TANDEM_RETURN_IF_ERROR(opt_.judgement_changed());  // statements alone: for the next
  if (rebase) rebase_dropped_ += rebase->dropped;
  stats_.fields_quarantined += quarantined;
  if (rekeyed) return RolledBack();
  if (opt_.judge_held && (proves || quarantined > 0)) TANDEM_RETURN_IF_ERROR(opt_.judge_held());
  recv_cursor_ = b.cursor;
  received_caught_up_ = false;
  ++stats_.batches_received;
  stats_.fields_applied += applied;
  stats_.fields_refused += refused;
  if (refused) refused_any_ = true;
  if (filtered_out) filtered_any_ = true;
  out->push_back(Ack{b.cursor});
  return Status::Ok();
}

void Session::set_window(size_t batches) {
  opt_.window = std::clamp<size_t>(batches, 1, kMaxWindow);
}

Status Session::Poll(std::vector<Message>* out) {
  TANDEM_RETURN_IF_ERROR(PollOne(out));
  return SendDigests(out);
}

Status Session::PollOne(std::vector<Message>* out) {
  // Blobs promised to the peer that arrived since.
  TANDEM_RETURN_IF_ERROR(PumpOwed(out));
  // Blobs wanted since (a field that arrived, a reader's request).
  if (received_caught_up_) TANDEM_RETURN_IF_ERROR(PumpWants(out));
  if (!have_request_) return Status::Ok();
  if (!streaming_) {
    // One snapshot: the version vector it shows is covered by the log up to `last`.
    TANDEM_ASSIGN_OR_RETURN(auto txn, replica_.store().BeginRead());
    uint64_t last = 0;
    TANDEM_RETURN_IF_ERROR(txn->LastLogSeq(&last));
    if (last <= read_cursor_) return Status::Ok();
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    // Another session (or process) found this replica rolled back: our peer's cursor
    // into our log predates that, so this session must end too.
    if (meta.id != self_) return RolledBack();
    snapshot_vv_ = meta.vv;
    streaming_ = true;
  }
  return Pump(out);
}

void Session::Rehold() {
  hold_.reset();
  withheld_cap_.clear();
  withheld_unbounded_ = false;
  for (const auto& [key, w] : withheld_) {
    withheld_unbounded_ |= w.unbounded;
    hold_ = std::min(hold_.value_or(w.hold), w.hold);
    for (const auto& [r, n] : w.cap) {
      auto [it, fresh] = withheld_cap_.emplace(r, n);
      if (!fresh) it->second = std::min(it->second, n);
    }
  }
}

Status Session::Pump(std::vector<Message>* out) {
  while (streaming_ && unacked_ < opt_.window) {
    if (out_pieces_) {
      if (unacked_ >= kPiecesInFlight) break;
      TANDEM_RETURN_IF_ERROR(SendPiece(out));
      continue;
    }
    DeltaBatch batch;
    size_t bytes = 0;
    // The first batch still starts at the peer's cursor (batches are contiguous), but
    // reads the log only past what the peer is known to hold.
    uint64_t cursor = std::max(read_cursor_, skip_to_);
    bool done = false, capped = false;
    VersionVector collected;  // as the page that reached the log's end saw it
    ReadTxn::CollectedIn collected_in;
    const size_t budget = std::min(opt_.batch_bytes, kMaxBatchBodyBound);
    const uint64_t upto = opt_.send_upto ? opt_.send_upto() : UINT64_MAX;
    // Fill one batch, reading the log in pages; skipped fields still advance the cursor.
    while (batch.deltas.size() < opt_.batch_fields && bytes < budget) {
      const size_t room = opt_.batch_fields - batch.deltas.size();
      TANDEM_ASSIGN_OR_RETURN(DeltaPage page,
                              replica_.CollectDeltas(cursor, room, &peer_vv_, budget - bytes,
                                                     kMaxBatchBodyBound, upto));
      if (page.large) {
        // Too large for any batch: it goes in pieces, after the batch that ends here
        // (the log entries skipped before it); or, withheld, not at all.
        if (!batch.deltas.empty()) break;
        Large how = Large::kGone;
        if (Sendable(page.large->key)) {
          TANDEM_ASSIGN_OR_RETURN(how, StartPieces(page));
        }
        if (how == Large::kPieces) break;
        if (how == Large::kWithheld) {
          withheld_[page.large->key].hold = cursor;  // the peer's cursor stays before it
          Rehold();
        }
        stats_.log_entries_scanned += page.scanned;
        batch.mark = std::max(batch.mark, page.log_end);
        cursor = page.next_cursor;
        // Gone from that position, the field was written again after the page was read:
        // the log is read on (to its later entry), never taken as done from this page.
        if (page.done && how != Large::kGone) {
          done = true;
          collected = std::move(page.collected);
          collected_in = std::move(page.collected_in);
          break;
        }
        continue;
      }
      // A page of one field over the budget: it starts the next batch, or goes alone.
      if (page.deltas.size() == 1 && bytes + WireSizeBound(page.deltas[0]) > budget &&
          !batch.deltas.empty())
        break;
      stats_.log_entries_scanned += page.scanned;
      batch.mark = std::max(batch.mark, page.log_end);
      for (auto& d : page.deltas) {
        if (!Sendable(d.key)) continue;
        if (withheld_.erase(d.key)) Rehold();  // it goes now
        bytes += WireSizeBound(d);
        batch.deltas.push_back(std::move(d));
      }
      cursor = page.next_cursor;
      if (page.done) {
        done = true;
        collected = std::move(page.collected);
        collected_in = std::move(page.collected_in);
        break;
      }
      if (page.capped) {
        capped = true;
        break;
      }
    }
    if (cursor != read_cursor_ || !batch.deltas.empty()) {
      read_cursor_ = cursor;
      batch.cursor = hold_ ? *hold_ : cursor;
      if (batch.cursor != send_cursor_ || !batch.deltas.empty()) Send(std::move(batch), out);
    }
    if (done) {
      VersionVector claim = snapshot_vv_;
      for (const auto& [r, n] : withheld_cap_) claim.Cap(r, n);
      if (withheld_unbounded_)  // as of now: what the peer has grows, so may our vector
        for (const auto& [r, n] : snapshot_vv_.entries()) claim.Cap(r, peer_vv_.Get(r));
      // What collection removed before the last page may have been skipped; read with
      // it, so that it covers nothing that reached this replica after (and was not sent).
      // Of what it removed in single collections, what our vector covered when the
      // request came: we held every effect of those events in every collection.
      Replica::JoinCollectedIn(collected_in, snapshot_vv_, &collected);
      out->emplace_back(std::in_place_type<CaughtUp>,
                        CaughtUp{send_cursor_, std::move(claim), std::move(collected)});
      ++stats_.caught_up_sent;
      if (!sent_caught_up_) batches_before_caught_up_ = stats_.batches_sent;
      sent_caught_up_ = true;
      streaming_ = false;
      if (whole_) {  // the whole state went out: from now on, only what it lacks
        whole_ = false;
        peer_vv_.Merge(held_back_vv_);
      }
    }
    capped_at_ = capped ? upto : 0;
    if (capped) break;  // the rest waits for a Poll that may send past `upto`
  }
  return Status::Ok();
}

}  // namespace tandem::engine
