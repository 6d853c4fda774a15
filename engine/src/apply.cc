// Field states from elsewhere (a peer's batch, ApplyDeltas) joined into this replica's:
// admitted, judged, cut by what either side collected, and written, or (a state in
// pieces) stored as it came, joined a part at a time, or decoded whole (JoinInto).
#include <algorithm>
#include <cassert>
#include <map>
#include <optional>
#include <set>

#include "tandem/engine/replica.h"
#include "tandem/engine/take_over.h"

namespace tandem::engine {

Status Replica::ApplyDeltas(const std::vector<FieldDelta>& deltas, size_t* changed) {
  for (const auto& d : deltas) TANDEM_RETURN_IF_ERROR(ValidateKey(d.key).With("delta"));
  Status st = Retrying([&] { return ApplyDeltasOnce(deltas, changed); });
  if (st.ok()) Committed();
  return st;
}

namespace {
// A state in pieces that must be decoded whole after all (StateInPieces::whole).
Status DecodeWhole(const FieldDelta& d) {
  d.pieces->whole = true;
  return Status::Unsupported("a field state in pieces to decode whole");
}
// The same where only the join with ours (at log position `at`) stands in the way: it
// may be made a part at a time instead (Replica::JoinPieces), dropping beside what the
// cuts cover (JoinCuts).
Status JoinFirst(const FieldDelta& d, uint64_t at, const VersionVector* cut_theirs = nullptr,
                 const VersionVector* cut_ours = nullptr) {
  d.pieces->joins = true;
  d.pieces->judged_at = at;
  if (cut_theirs) d.pieces->cut_theirs = *cut_theirs;
  if (cut_ours) d.pieces->cut_ours = *cut_ours;
  return DecodeWhole(d);
}
}  // namespace

Status Replica::JoinInto(WriteTxn& txn, ReplicaMeta& meta, const std::vector<FieldDelta>& deltas,
                         const AdmitFn* admit, size_t* applied, size_t* refused,
                         size_t* filtered_out, bool* rekeyed, const ReplicaId* from,
                         size_t* quarantined, Consume* consume, RebaseOn* rebase) {
  HybridClock clock(meta.clock);
  const Hlc drift_bound = MakeHlc(now_() + kMaxClockDriftMs, 0);
  size_t n = 0, r = 0, f = 0, q = 0;
  std::map<std::string, std::shared_ptr<const CollectionRules>> rules;
  std::optional<VersionVector> collected;        // read at the first field
  ReadTxn::CollectedIn collected_in;             // and per collection, joined with it
  std::optional<std::set<BlobHash>> quarantine;  // read at the first state held (Hold)
  // What this replica collected in a collection (and in all): read once, when first needed.
  auto gone_in = [&](const std::string& collection) -> Result<const VersionVector*> {
    if (!collected) {
      collected.emplace();
      TANDEM_RETURN_IF_ERROR(txn.GetCollected(&*collected));
      TANDEM_RETURN_IF_ERROR(txn.GetCollectedIn(&collected_in));
      for (auto& [c, vv] : collected_in) vv.Merge(*collected);
    }
    auto in = collected_in.empty() ? collected_in.end() : collected_in.find(collection);
    return in == collected_in.end() ? &*collected : &in->second;
  };
  for (size_t i = 0; i < deltas.size(); ++i) {
    const FieldDelta& d = deltas[i];
    // Events of ours we never issued: this replica was rolled back or copied.
    TANDEM_RETURN_IF_ERROR(CheckClaim(meta, d.state.ctx.Get(meta.id), rekeyed));
    std::optional<FieldState> s;
    Status damage;
    // A state in pieces is stored as it came where nothing is refused, held or dropped of
    // it, and the join leaves it as it came (into a field that holds nothing, or whose
    // state it has seen all of: TakeOver); its outline (`d.state`) and ours are all the
    // rest of this needs. Where the join is ours, nothing changes; where it is neither,
    // the join is made first, a part at a time (JoinFirst, Replica::JoinPieces), as it is
    // where what either side collected cuts it, of ours at the log position it was judged
    // against; that join takes ours' place while the field is still there (`replaces`),
    // what came admitted and judged again against it. Else it is decoded whole, and the
    // whole batch applied again so.
    std::optional<TakeOver> over;
    bool join_first = false;  // the join is neither state: made first, once the rest holds
    bool replaces = false;
    uint64_t at = 0;  // of a state in pieces, the field's log position here (0: none)
    const bool joined = d.pieces && d.pieces->joined;
    // A join made anew: what it holds beside what came, ours, was judged here already.
    auto stale = [&]() {
      d.pieces->stale = true;
      return DecodeWhole(d);
    };
    // A state in pieces held in the quarantine as it came (Hold); where the store cannot
    // hold it so, it is decoded whole.
    auto hold = [&](std::string why, bool held) -> Status {
      const Status st = Hold(txn, d, from ? *from : ReplicaId{}, std::move(why), held, quarantine);
      if (st.code() == Code::kUnsupported) return DecodeWhole(d);
      ++q;
      ++r;
      return st;
    };
    if (d.pieces) {
      // What an earlier attempt at it found is found again.
      StateInPieces& p = *d.pieces;
      p.whole = p.joins = p.stale = false;
      p.cut_theirs.reset();
      p.cut_ours.reset();
      if (!p.hold_why.empty()) {  // too large to judge or join here
        if (!from) return DecodeWhole(d);
        TANDEM_RETURN_IF_ERROR(hold(p.hold_why, false));
        continue;
      }
      uint64_t size = 0;
      std::string none;
      const Status pos = txn.ReadDelta(d.key, 0, 0, false, &size, &at, &none);
      if (pos.code() == Code::kCorrupt && from && !joined) {
        // Ours is damaged: as below, the peer's state is kept aside.
        TANDEM_RETURN_IF_ERROR(hold(kDamagedReason, false));
        continue;
      }
      if (pos.code() == Code::kCorrupt || pos.code() == Code::kUnsupported) return DecodeWhole(d);
      if (!pos.ok() && pos.code() != Code::kNotFound) return pos;
      if (joined && at != d.pieces->joined_at) return stale();  // written since
      replaces = joined && at != 0;
      FieldState outline;
      TANDEM_ASSIGN_OR_RETURN(const VersionVector* gone, gone_in(d.key.collection));
      over.emplace(hash_, *gone);
      const StateItems hashes = over->Ours();
      const Status st = txn.ReadFieldOutline(d.key, replaces ? nullptr : &hashes, &outline);
      if (st.code() == Code::kCorrupt && from && !joined) {
        TANDEM_RETURN_IF_ERROR(hold(kDamagedReason, false));
        continue;
      }
      if (st.code() == Code::kCorrupt || st.code() == Code::kUnsupported) return DecodeWhole(d);
      if (st.ok()) s = std::move(outline);
      if (!st.ok() && st.code() != Code::kNotFound) return st;
      // Contexts or counters that rule out a join that is either state.
      join_first = s && !replaces && !over->Compare(*s, d.state);
    } else {
      TANDEM_RETURN_IF_ERROR(txn.GetFieldOrDamaged(d.key, &s, &damage));
    }
    if (!damage.ok()) {
      // Our state is damaged on disk (its bytes fail their checksum): nothing can be
      // joined into it, and taking the peer's in its place would drop what only ours
      // held while our watermark still claims it. A peer's state is kept aside (the
      // quarantine keeps the watermark below its events) and the others go on.
      if (!from) return damage;
      TANDEM_RETURN_IF_ERROR(Hold(txn, d, *from, kDamagedReason, false, quarantine));
      ++q;
      ++r;
      continue;
    }
    // Of a join made of a state in pieces (JoinPieces), what came is admitted and judged,
    // as it came, against ours as it was joined (the same still): ours, which the join
    // holds beside it, is not judged again. Where the verdict changed since the join was
    // chosen (the policy did), it is judged and made again.
    const FieldDelta& judged = joined ? *d.pieces->came : d;
    if (admit) {
      const Admission a = (*admit)(judged, s ? &*s : nullptr);
      if (a != Admission::kAccept && joined) return stale();
      // Left out, refused or held, a state in pieces needs no more than its outline: the
      // admission of a session that takes states in pieces judges outlines.
      if (a == Admission::kHold && d.pieces) {
        TANDEM_RETURN_IF_ERROR(hold(kHeldReason, true));
        continue;
      }
      if (a != Admission::kAccept) {
        ++r;
        if (a == Admission::kFilter) ++f;
        if (a == Admission::kRefuse)
          TANDEM_RETURN_IF_ERROR(NoteRefused(txn, d, s ? &*s : nullptr, *admit));
        if (a == Admission::kHold) {
          TANDEM_RETURN_IF_ERROR(
              Hold(txn, d, from ? *from : ReplicaId{}, kHeldReason, true, quarantine));
          ++q;
        }
        continue;
      }
    }
    if (from) {
      const FieldState* have = s ? &*s : nullptr;
      TANDEM_ASSIGN_OR_RETURN(std::string why, d.pieces ? JudgeInPieces(txn, judged, have, &rules)
                                                        : Judge(txn, d, have, &rules));
      if (!why.empty() && joined) return stale();
      if (!why.empty()) {
        TANDEM_RETURN_IF_ERROR(hold(std::move(why), false));
        continue;
      }
    }
    // What this replica collected, it had seen and removed: a peer offering it again
    // offers what was deleted. A field we hold nothing of may have been collected whole;
    // one we hold may have been written again after its tombstone was collected, and its
    // context then no longer shows the removal (DropCollectedNotIn).
    const FieldState* incoming = &d.state;
    FieldState kept;
    bool cut = false;  // of a state in pieces: cut as the join is made (JoinFirst)
    // What was removed in this collection alone holds here too: this replica held every
    // effect there of the events that vector covers.
    TANDEM_ASSIGN_OR_RETURN(const VersionVector* gone_here, gone_in(d.key.collection));
    const VersionVector& gone = *gone_here;
    if (!gone.empty()) {
      static const FieldState kNothing;
      const FieldState& held = s ? *s : kNothing;
      if (d.pieces) {
        cut = HoldsCollectedNotIn(d.state, gone, held);
      } else if (HoldsCollectedNotIn(d.state, gone, held)) {  // copied only then
        kept = d.state;
        DropCollectedNotIn(kept, gone, held);
        incoming = &kept;
      }
      if (!s && Collectable(*incoming, gone)) continue;
    }
    // In a rebase, what the peer collected and no longer holds goes from ours.
    const VersionVector* rebase_gone = rebase ? rebase->collected : nullptr;
    if (rebase && rebase->collected_in)
      if (auto it = rebase->collected_in->find(d.key.collection); it != rebase->collected_in->end())
        rebase_gone = &it->second;
    // A join that replaces ours was made so already; of a state in pieces, the outlines
    // say whether the rebase drops anything.
    const bool rebased =
        s && rebase && !replaces && (!rebase->may || rebase->may(d.key.collection));
    const bool rebase_cuts = rebased && d.pieces && HoldsCollectedNotIn(*s, *rebase_gone, d.state);
    if (joined && cut) return stale();  // collected since
    if (d.pieces && (cut || rebase_cuts))
      return JoinFirst(d, at, cut ? &gone : nullptr, rebase_cuts ? rebase_gone : nullptr);
    const bool dropped =
        replaces ? rebase && d.pieces->dropped_ours
                 : rebased && !d.pieces && DropCollectedNotIn(*s, *rebase_gone, d.state);
    if (dropped) ++rebase->dropped;
    // Joined into nothing, a normal state is itself (every decoded one is; a state built
    // in memory and handed to ApplyDeltas may not be), so it is written as it came rather
    // than copied: a large state is held once less.
    const bool as_it_came = !s && IsNormal(*incoming);
    if (!as_it_came && !s) s.emplace();
    bool changed = false;
    if (d.pieces && s) {
      if (join_first) return JoinFirst(d, at);
      std::optional<bool> takes = d.pieces->changes_ours;
      if (!replaces) {
        TANDEM_RETURN_IF_ERROR(ReadInPieces(txn, *d.pieces, over->Theirs()));
        takes = over->Result();
        if (!takes && !over->KeepsOurs()) return JoinFirst(d, at);
      }
      // An admission that took it for one ours has seen all of (JoinChanges, by dots
      // alone on outlines) judged nothing more of it.
      if (takes && *takes && admit && !JoinChanges(*s, judged.state)) return DecodeWhole(d);
      changed = takes && *takes;
    } else {
      changed = as_it_came ? !(*incoming == FieldState{}) : Join(*s, *incoming) || dropped;
    }
    const Hlc newest = d.state.MaxHlc();  // the state may be taken apart below
    if (changed) {
      Status noted;
      ForEachBlobRef(*incoming, [&](const BlobRef& ref) {
        if (noted.ok()) noted = NoteBlobRef(txn, d.key, ref, now_());
      });
      TANDEM_RETURN_IF_ERROR(noted);
      // Written, a state is needed no more: what was joined, or (the caller allowing)
      // the state as it came, is taken apart as it is encoded.
      if (d.pieces) {
        bool stored = false;
        TANDEM_RETURN_IF_ERROR(PutInPieces(txn, d, &stored));
        if (!stored) return DecodeWhole(d);
      } else if (!as_it_came) {
        TANDEM_RETURN_IF_ERROR(txn.PutField(d.key, std::move(*s)));
      } else if (consume && incoming == &d.state) {
        const Status st = txn.PutField(d.key, std::move((*consume->deltas)[i].state));
        consume->taken |= st.ok() || st.code() != Code::kBusy;  // a busy store took nothing
        TANDEM_RETURN_IF_ERROR(st);
      } else {
        TANDEM_RETURN_IF_ERROR(txn.PutField(d.key, *incoming));
      }
      ++n;
      // A schema (or the trust set) that changed in this batch applies to the rest of it.
      if (from && !rules.empty()) {
        if (auto policy = Policy(); policy && policy->Invalidates(d.key)) rules.clear();
      }
    }
    // Causality does not need the clock: an overwrite replaces what its context covers,
    // whatever the timestamps. So a remote clock far ahead of ours is observed only up to
    // the drift bound, and our next writes keep our own time.
    clock.Observe(std::min(newest, drift_bound));
  }
  meta.clock = clock.last();
  if (applied) *applied = n;
  if (refused) *refused = r;
  if (filtered_out) *filtered_out = f;
  if (quarantined) *quarantined = q;
  return Status::Ok();
}

Status Replica::ApplyDeltasOnce(const std::vector<FieldDelta>& deltas, size_t* changed) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
  ReplicaMeta meta;
  TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
  const ReplicaMeta before = meta;
  TANDEM_RETURN_IF_ERROR(JoinInto(*txn, meta, deltas, nullptr, changed, nullptr));
  if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
  return txn->Commit();
}

Status Replica::ApplyBatch(const ReplicaId& peer, const std::vector<FieldDelta>& deltas,
                           uint64_t cursor, const AdmitFn& admit, size_t* applied, size_t* refused,
                           const CollectionFilter* taken, size_t* filtered_out, bool* rekeyed,
                           size_t* quarantined, uint64_t mark, const Consumable* consume,
                           bool from_zero, RebaseOn* rebase) {
  for (const auto& d : deltas) TANDEM_RETURN_IF_ERROR(ValidateKey(d.key).With("delta"));
  assert(!consume || (consume->deltas == &deltas && consume->refill));
  Consume taking{consume ? consume->deltas : nullptr};
  const uint64_t dropped = rebase ? rebase->dropped : 0;
  Status result = Retrying([&]() -> Status {
    if (rebase) rebase->dropped = dropped;  // counted again by an attempt made again
    // A state an attempt that could not commit took apart is made whole again.
    if (taking.taken) {
      TANDEM_RETURN_IF_ERROR(consume->refill());
      taking.taken = false;
    }
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    if (peer == meta.id) return Status::Invalid("a replica cannot sync with itself");
    PeerState ps;
    TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
    // What the peer's own states show it issued, refused or not, is its word on itself,
    // as its CaughtUp's own entry is: kept as batches come (a live session may run long
    // between CaughtUps), so that what it wrote is known when a statement records it.
    for (const auto& d : deltas) ps.vv.Raise(peer, d.state.ctx.Get(peer));
    const ReplicaMeta before = meta;
    size_t n = 0, r = 0, f = 0, q = 0;
    bool rk = false;
    TANDEM_RETURN_IF_ERROR(JoinInto(*txn, meta, deltas, &admit, &n, &r, &f, &rk, &peer, &q,
                                    consume ? &taking : nullptr, rebase));
    if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
    // Recorded with the cursor: data before it was left out by a policy, so the watermark
    // must wait, and a wider policy re-reads the peer's log (what it takes more than the
    // sessions before). Refusals for good do not re-read; the session keeps the watermark
    // back for them.
    const bool past = from_zero && cursor >= ps.cursor;  // a pass from 0 reached it
    if (taken && !taken->Everything()) {
      ps.received = past || !ps.filtered ? *taken : CollectionFilter::Both(ps.received, *taken);
      ps.filtered = true;
    } else if (past) {
      ps.filtered = false;
      ps.received = CollectionFilter{};
    }
    ps.cursor = std::max(ps.cursor, cursor);
    ps.mark = std::max(ps.mark, mark);
    ps.fields_received += n;
    ps.fields_refused += r;
    TANDEM_RETURN_IF_ERROR(txn->PutPeer(peer, ps));
    TANDEM_RETURN_IF_ERROR(txn->Commit());
    if (applied) *applied = n;
    if (refused) *refused = r;
    if (filtered_out) *filtered_out = f;
    if (quarantined) *quarantined = q;
    if (rekeyed && rk) *rekeyed = true;
    return Status::Ok();
  });
  if (result.ok()) Committed();
  return result;
}

}  // namespace tandem::engine
