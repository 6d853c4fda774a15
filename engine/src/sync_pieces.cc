// Field states too large for a batch, sent and received in pieces (see sync.h and
// docs/protocol.md#field-states-in-pieces).
#include <algorithm>

#include "tandem/engine/codec.h"
#include "tandem/engine/sync.h"

namespace tandem::engine {

Result<Session::Large> Session::StartPieces(const DeltaPage& page) {
  const DeltaPage::Large& l = *page.large;
  const std::string name = l.key.Name();
  std::optional<Replica::DeltaInfo> info;
  std::string why;
  if (l.damaged) {
    why = "its stored state is damaged here (see tandem check)";
  } else if (!peer_pieces_) {
    why =
        "too large for one message, and the peer's version of tandem cannot take it in "
        "pieces: upgrade it";
  } else {
    const uint64_t most = std::min<uint64_t>(opt_.max_state_bytes, kMaxPieceTotal);
    const uint64_t items = std::min(opt_.max_state_items, Replica::kMaxStateItems);
    auto read = replica_.SpoolDelta(l.key, l.seq, most, items);
    if (!read.ok()) return read.status().With("field " + name);
    if (!*read) return Large::kGone;
    info = std::move(**read);
    if (info->size > most)
      why = std::to_string(info->size) + " bytes, more than the " + std::to_string(most) +
            " a field state may have to sync";
    else if (info->items > items)
      why = std::to_string(info->items) + " markers and set elements, more than the " +
            std::to_string(items) + " a field state may have to sync (many items belong in " +
            "records of their own)";
  }
  // A peer rebasing on our whole state drops what we collected from every field we did
  // not send: a withheld field's live values would go with it. The rebase waits.
  if (!why.empty() && whole_)
    return Status::Unsupported("the peer asked for our whole state to rebase on, and field " +
                               name + " cannot go (" + why +
                               "): its rebase waits until every field can");
  if (!why.empty()) {
    // Withheld, and every other field goes on. Our CaughtUp must not claim its events,
    // or the peer would count it held and never ask again.
    ++stats_.fields_withheld;
    if (stats_.withheld.size() < SessionStats::kMaxWithheldNamed)
      stats_.withheld.push_back("field " + name + " withheld: " + why);
    // The state's context covers every event of each replica up to its entry, and any
    // of those the peer lacks may be this state's: no more than the peer had of them.
    // A damaged state's context is bounded by the log's hull (it was written at this
    // entry or, its position bytes damaged, later); before the hull knew anything, it
    // may hold any event the peer lacks.
    std::optional<VersionVector> bound;
    if (l.damaged) {
      TANDEM_ASSIGN_OR_RETURN(bound, replica_.HeldAfter(l.seq - 1));
    }
    Withheld& w = withheld_[l.key];
    w.cap.clear();
    w.unbounded = l.damaged && !bound;
    for (const auto& [r, n] : (bound ? *bound : l.ctx).entries()) {
      const uint64_t had = peer_vv_.Get(r);
      if (n > had) w.cap[r] = had;
    }
    return Large::kWithheld;
  }
  out_pieces_ = std::move(info->spool);
  out_piece_key_ = l.key;
  out_piece_total_ = info->size;
  out_piece_digest_ = info->digest;
  out_piece_offset_ = 0;
  // The peer holds its first pieces already (an earlier session was cut): from there.
  if (resume_offset_ && send_cursor_ == resume_cursor_ && out_piece_digest_ == resume_digest_ &&
      resume_offset_ < out_piece_total_ && resume_offset_ % kPieceBytes == 0)
    out_piece_offset_ = resume_offset_;
  resume_offset_ = 0;
  out_piece_cursor_ = page.next_cursor;
  out_piece_mark_ = page.log_end;
  stats_.log_entries_scanned += page.scanned;
  return Large::kPieces;
}

Status Session::SendPiece(std::vector<Message>* out) {
  DeltaBatch batch;
  std::string bytes;
  TANDEM_RETURN_IF_ERROR(out_pieces_->Read(out_piece_offset_, kPieceBytes, &bytes));
  const size_t n = std::min<uint64_t>(kPieceBytes, out_piece_total_ - out_piece_offset_);
  if (bytes.size() != n)
    return Status::Corrupt("field " + out_piece_key_.collection + "/" + out_piece_key_.record +
                           "." + out_piece_key_.field + " read short while sent in pieces");
  batch.piece =
      StatePiece{out_piece_total_, out_piece_offset_, std::move(bytes), out_piece_digest_};
  out_piece_offset_ += n;
  const bool last = out_piece_offset_ == out_piece_total_;
  if (last) {
    read_cursor_ = out_piece_cursor_;
    if (withheld_.erase(out_piece_key_)) Rehold();
  }
  batch.cursor = last && !hold_ ? out_piece_cursor_ : send_cursor_;
  batch.mark = out_piece_mark_;
  if (last) {
    out_pieces_.reset();
    out_piece_offset_ = 0;
    ++stats_.fields_sent;
  }
  Send(std::move(batch), out);
  return Status::Ok();
}

Status Session::DropHeldPieces() {
  in_piece_held_ = in_piece_total_ = 0;
  in_piece_digest_ = BlobHash{};
  in_piece_live_ = false;
  return replica_.DropPieces(*peer_);
}

Status Session::ReceivePiece(const DeltaBatch& b, std::vector<Message>* out) {
  const StatePiece& p = *b.piece;
  if (!b.deltas.empty()) return Status::Invalid("a DeltaBatch with both deltas and a piece");
  // A first piece starts over, whatever an earlier session left; a later one must follow
  // what is held (from this session, or from one the peer resumes).
  if (p.offset == 0 && in_piece_held_ && !in_piece_live_) TANDEM_RETURN_IF_ERROR(DropHeldPieces());
  const bool last = p.offset + p.bytes.size() == p.total;
  if (p.bytes.empty() || p.bytes.size() > kPieceBytes || p.total > kMaxPieceTotal ||
      p.offset != in_piece_held_ || p.offset > p.total || p.bytes.size() > p.total - p.offset ||
      (p.offset > 0 && (p.total != in_piece_total_ || p.digest != in_piece_digest_)) ||
      (!last && p.bytes.size() != kPieceBytes))
    return Status::Invalid("a field state piece of " + std::to_string(p.bytes.size()) +
                           " bytes at " + std::to_string(p.offset) + " of " +
                           std::to_string(p.total) + " does not follow the " +
                           std::to_string(in_piece_held_) + " bytes held");
  if (!last && b.cursor != b.from)
    return Status::Invalid("a field state piece before the last moves the cursor");
  in_piece_total_ = p.total;
  in_piece_digest_ = p.digest;
  in_piece_live_ = true;
  if (!last) {
    // Stored as it comes: a cut resumes here (PeerState::pieces).
    TANDEM_RETURN_IF_ERROR(replica_.HoldPiece(
        *peer_, PieceProgress{b.from, p.total, in_piece_held_, p.digest}, p.bytes));
    in_piece_held_ += p.bytes.size();
    received_caught_up_ = false;
    out->push_back(Ack{b.cursor});
    return Status::Ok();
  }
  // Read to its outline, and stored as it came where that is all it needs (a field that
  // holds nothing here, or a state it has seen all of), or joined a part at a time;
  // else decoded whole, below. One this replica may not decode whole is held in the
  // quarantine in its pieces instead where it would have to be (to be judged by its
  // values, or joined), to be released by hand.
  const uint64_t size = in_piece_held_ + p.bytes.size();
  const bool too_large = size > replica_.max_whole_state();
  const bool outlines =
      opt_.judges_outlines || (!opt_.admit && !opt_.proves_itself && !opt_.changes_judgement);
  std::string name;    // of the field, once read
  std::string unread;  // why its outline could not be read
  if (outlines || too_large) {
    auto o = replica_.OutlinePieces(*peer_, in_piece_held_, p.bytes, p.digest);
    if (!o.ok()) unread = o.status().message();
    const bool valid = o.ok() && ValidateKey(o->key).ok();
    if (valid) name = o->key.Name();
    const bool judged =
        valid && outlines && (!opt_.judges_outlines || opt_.judges_outlines(o->key.collection));
    if (valid && (judged || too_large)) {  // else judged by its values, decoded whole
      std::shared_ptr<StateInPieces> in = o->pieces;
      DeltaBatch one;
      one.from = b.from;
      one.cursor = b.cursor;
      one.mark = b.mark;
      auto apply = [&](const std::vector<FieldDelta>& ds) {
        one.deltas = ds;
        return Apply(one, out);
      };
      const std::string why = std::to_string(size) + " bytes, more than the " +
                              std::to_string(replica_.max_whole_state()) +
                              " a state is decoded whole for here, to be ";
      if (!judged) in->hold_why = why + "judged by its values";
      bool joined = false;
      Status st = replica_.ApplyJoining(*o, apply, &joined);
      if (joined) ++stats_.pieces_joined;
      if (!st.ok() && in->whole && too_large && in->hold_why.empty()) {
        in->hold_why = why + "joined with the field's state here";
        st = apply({*o});
      }
      if (st.ok() && !in->hold_why.empty()) ++stats_.pieces_held;
      if (st.ok() || !in->whole) {
        Status dropped = DropHeldPieces();
        TANDEM_RETURN_IF_ERROR(st);
        return dropped;
      }
    }
  }
  // Too many items to outline (a peer of this version withholds it), or otherwise not
  // to be joined or held in pieces: the pieces go, and so does the session.
  if (too_large) TANDEM_RETURN_IF_ERROR(DropHeldPieces());
  if (too_large)
    return Status::Unsupported("a field state in pieces" + (name.empty() ? "" : " (" + name + ")") +
                               " of " + std::to_string(size) + " bytes, more than the " +
                               std::to_string(replica_.max_whole_state()) +
                               " decoded whole here, can be neither joined nor held in its "
                               "pieces here: " +
                               (unread.empty() ? "another process has the replica open, or its "
                                                 "format is older than 16"
                                               : unread));
  auto d = replica_.DecodePieces(*peer_, in_piece_held_, p.bytes, p.digest);
  Status st = d.ok() ? ValidateKey(d->first).With("field state in pieces") : d.status();
  if (st.ok()) {
    DeltaBatch one;
    one.from = b.from;
    one.cursor = b.cursor;
    one.mark = b.mark;
    one.deltas.push_back(FieldDelta{std::move(d->first), std::move(d->second)});
    // Taken apart as it is written, so held once; decoded again from the pieces (held
    // until it is applied) for an attempt that must be made again.
    Replica::Consumable consume{&one.deltas, [&]() -> Status {
                                  one.deltas[0].state = FieldState{};  // what is left of it
                                  auto again = replica_.DecodePieces(*peer_, in_piece_held_,
                                                                     p.bytes, p.digest);
                                  if (!again.ok()) return again.status();
                                  one.deltas[0].state = std::move(again->second);
                                  return Status::Ok();
                                }};
    st = Apply(one, out, &consume);
    if (st.ok()) ++stats_.pieces_decoded;
  }
  Status dropped = DropHeldPieces();
  TANDEM_RETURN_IF_ERROR(st);
  return dropped;
}

}  // namespace tandem::engine
