// The quarantine: field states from peers kept aside instead of applied, for breaking
// their collection's rules or because their writer cannot be judged yet
// (Admission::kHold); released by hand, or judged again (docs/schema.md, docs/protocol.md).
#include <algorithm>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {

// Each entry decoded, its id set, until fn returns false.
template <typename Fn>
Status EachEntry(ReadTxn& txn, Fn fn) {
  Status st;
  TANDEM_RETURN_IF_ERROR(txn.ListQuarantine([&](uint64_t id, std::string_view bytes) {
    auto e = DecodeQuarantineEntry(bytes);
    if (!e.ok()) {
      st = e.status();
      return false;
    }
    e->id = id;
    return fn(std::move(e).value());
  }));
  return st;
}

// The blob entry that lists the chunks of quarantined state `qid`, held in pieces.
BlobHash HeldKey(ContentHash hash, uint64_t qid) {
  return HashOf(hash, "tandem held " + std::to_string(qid));
}

}  // namespace

Status Replica::ReadOurs(ReadTxn& txn, const QuarantineEntry& e, std::optional<FieldState>* ours,
                         Status* damage) {
  ours->reset();
  if (e.pieces) {  // a large state's field is likely large too: its outline is enough
    FieldState o;
    const Status st = txn.ReadFieldOutline(e.key, nullptr, &o);
    if (st.ok()) *ours = std::move(o);
    if (st.ok() || st.code() == Code::kNotFound) return Status::Ok();
    if (st.code() != Code::kUnsupported && st.code() != Code::kCorrupt) return st;
  }
  return txn.GetFieldOrDamaged(e.key, ours, damage);
}

Status Replica::ForgetHeld(WriteTxn& txn, const QuarantineEntry& e) {
  TANDEM_RETURN_IF_ERROR(txn.DeleteQuarantine(e.id));
  // Its chunks go with the next collection, unless the field's state now lists them.
  if (e.pieces) TANDEM_RETURN_IF_ERROR(txn.DeleteBlob(e.pieces->entry));
  return Status::Ok();
}

Status Replica::Hold(WriteTxn& txn, const FieldDelta& d, const ReplicaId& from, std::string why,
                     bool held, std::optional<std::set<BlobHash>>& known) {
  // Held once: the same state again (every other peer offers it while it is held, as
  // the watermark stops below it) is not a new entry.
  if (!known) {
    known.emplace();
    TANDEM_RETURN_IF_ERROR(EachEntry(txn, [&](const QuarantineEntry& e) {
      if (e.pieces) {
        known->insert(e.pieces->content);
      } else if (auto bytes = EncodeDelta(e.key, e.state); bytes.ok()) {
        known->insert(Hash(*bytes));
      }
      return true;
    }));
  }
  QuarantineEntry e{0, held, d.key, from, now_(), std::move(why), std::nullopt, FieldState{}};
  if (!d.pieces) {
    TANDEM_ASSIGN_OR_RETURN(std::string bytes, EncodeDelta(d.key, d.state));
    if (known->count(Hash(bytes))) return Status::Ok();
    known->insert(Hash(bytes));
    e.state = d.state;
    uint64_t qid = 0;
    TANDEM_RETURN_IF_ERROR(txn.TakeQuarantineId(&qid));
    TANDEM_ASSIGN_OR_RETURN(std::string entry, EncodeQuarantineEntry(e));
    return txn.PutQuarantine(qid, entry);
  }
  // A state in pieces is held as it came: its outline, and its chunks listed by an entry
  // of its own (Unsupported where the store cannot hold it so: decode it whole).
  const StateInPieces& p = *d.pieces;
  if (known->count(p.content)) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(std::optional<BlobInfo> info, StateEntry(txn, p));
  if (!info) return Status::Unsupported("the pieces of a state to hold are held no more");
  uint64_t qid = 0;
  TANDEM_RETURN_IF_ERROR(txn.TakeQuarantineId(&qid));
  e.pieces =
      QuarantineEntry::InPieces{HeldKey(hash_, qid), p.content, p.size, p.header, p.state_at};
  e.state = d.state;
  TANDEM_ASSIGN_OR_RETURN(std::string entry, EncodeQuarantineEntry(e));
  TANDEM_RETURN_IF_ERROR(txn.PutQuarantine(qid, entry));
  TANDEM_RETURN_IF_ERROR(txn.PutBlob(e.pieces->entry, *info));
  known->insert(p.content);
  return Status::Ok();
}

Status Replica::CapByQuarantine(ReadTxn& txn, VersionVector* vv) {
  Status st;
  TANDEM_RETURN_IF_ERROR(EachEntry(txn, [&](const QuarantineEntry& e) {
    // Below the first held event of each writer with a value or element in it: the
    // watermark must not claim it, nor the writer's later events the state shows only in
    // its context (removals, values it overwrote), nor, through it, make others skip
    // them. What the field here has seen of the writer is held, not only held aside: a
    // state that only repeats it (one crafted from a member's data, say) must not hold
    // back that member's entry for good.
    std::optional<FieldState> ours;
    bool read = false;
    auto cap = [&](const Dot& d) {
      if (!vv->Covers(d) || !st.ok()) return;
      if (!read) {
        read = true;
        Status damage;  // damaged here: seen nothing
        st = ReadOurs(txn, e, &ours, &damage);
      }
      // Below its first event not seen here: below this dot, or past what was seen.
      const uint64_t seen = ours ? ours->ctx.Get(d.replica) : 0;
      if (st.ok() && seen < std::max(d.seq, e.state.ctx.Get(d.replica)))
        vv->Cap(d.replica, seen >= d.seq ? seen : d.seq - 1);
    };
    for (const auto& [dot, m] : e.state.markers) cap(dot);
    for (const auto& [element, dots] : e.state.elements)
      for (const auto& dot : dots) cap(dot);
    return st.ok();
  }));
  return st;
}

Status Replica::DropSuperseded(WriteTxn& txn) {
  std::vector<QuarantineEntry> moot;
  Status st;
  TANDEM_RETURN_IF_ERROR(EachEntry(txn, [&](const QuarantineEntry& e) {
    std::optional<FieldState> ours;
    Status damage;
    st = ReadOurs(txn, e, &ours, &damage);
    if (!st.ok()) return false;
    if (!damage.ok() || !ours) return true;  // nothing here holds it
    // A state in pieces by the dots of the outlines, as admission judges it.
    if (e.pieces ? !JoinChanges(*ours, e.state) : !Join(*ours, e.state)) moot.push_back(e);
    return true;
  }));
  TANDEM_RETURN_IF_ERROR(st);
  for (const QuarantineEntry& e : moot) TANDEM_RETURN_IF_ERROR(ForgetHeld(txn, e));
  return Status::Ok();
}

Result<std::vector<QuarantineEntry>> Replica::Quarantined() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  std::vector<QuarantineEntry> out;
  TANDEM_RETURN_IF_ERROR(EachEntry(*txn, [&](QuarantineEntry e) {
    out.push_back(std::move(e));
    return true;
  }));
  return out;
}

Result<size_t> Replica::ReleaseSome(const std::function<bool(const QuarantineEntry&)>& pick,
                                    size_t max) {
  size_t n = 0;
  std::vector<QuarantineEntry> in_pieces;  // each applied on its own, after the others
  Status result = Retrying([&]() -> Status {
    n = 0;
    in_pieces.clear();
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    std::vector<QuarantineEntry> batch;
    TANDEM_RETURN_IF_ERROR(EachEntry(*txn, [&](QuarantineEntry e) {
      if (pick(e)) (e.pieces ? in_pieces : batch).push_back(std::move(e));
      return batch.size() + in_pieces.size() < max;
    }));
    if (batch.empty()) return Status::Ok();
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    const ReplicaMeta before = meta;
    for (auto& e : batch) {
      TANDEM_RETURN_IF_ERROR(
          JoinInto(*txn, meta, {FieldDelta{e.key, std::move(e.state)}}, nullptr, nullptr, nullptr));
      TANDEM_RETURN_IF_ERROR(txn->DeleteQuarantine(e.id));
    }
    if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
    n = batch.size();
    return txn->Commit();
  });
  if (!result.ok()) return result;
  if (n) Committed();
  for (const QuarantineEntry& e : in_pieces) {
    const Status st = ReleaseInPieces(e, false);
    if (st.code() == Code::kNotFound) continue;  // released meanwhile
    TANDEM_RETURN_IF_ERROR(st.With("quarantined change " + std::to_string(e.id)));
    ++n;
  }
  return n;
}

Status Replica::ReleaseQuarantined(uint64_t id) {
  TANDEM_ASSIGN_OR_RETURN(const size_t n,
                          ReleaseSome([id](const QuarantineEntry& e) { return e.id == id; }, 1));
  if (n == 0) return Status::NotFound("no quarantined change " + std::to_string(id));
  return Status::Ok();
}

Result<uint64_t> Replica::ReleaseAllQuarantined(size_t per_txn) {
  uint64_t released = 0;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(const size_t n,
                            ReleaseSome([](const QuarantineEntry&) { return true; }, per_txn));
    if (n == 0) return released;
    released += n;
  }
}

Result<Replica::Judged> Replica::JudgeHeld(const AdmitFn& admit) {
  Judged out;
  // States in pieces, with their chunks as admission was given them.
  std::vector<std::pair<QuarantineEntry, std::shared_ptr<StateInPieces>>> accepted;
  Status result = Retrying([&]() -> Status {
    out = Judged{};
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    std::vector<QuarantineEntry> held;
    accepted.clear();
    TANDEM_RETURN_IF_ERROR(EachEntry(*txn, [&](QuarantineEntry e) {
      if (e.held) held.push_back(std::move(e));
      return true;
    }));
    if (held.empty()) return Status::Ok();
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    const ReplicaMeta before = meta;
    for (auto& e : held) {
      std::optional<FieldState> ours;
      Status damage;
      TANDEM_RETURN_IF_ERROR(ReadOurs(*txn, e, &ours, &damage));
      if (!damage.ok()) {
        ++out.held;  // nothing can be joined into it (JoinInto)
        continue;
      }
      // A state in pieces is judged by its outline, as a session that takes them judges.
      FieldDelta d{e.key, e.pieces ? e.state : std::move(e.state)};
      if (e.pieces) {
        auto p = QuarantinedPieces(*txn, e);
        if (!p.ok() && p.status().code() == Code::kCorrupt) {
          ++out.held;  // its chunks are damaged: `tandem check` names it
          continue;
        }
        TANDEM_RETURN_IF_ERROR(p.status());
        d.pieces = std::move(p).value();
      }
      const Admission a = admit(d, ours ? &*ours : nullptr);
      if (a != Admission::kAccept && a != Admission::kRefuse) {
        ++out.held;
        continue;
      }
      if (a == Admission::kAccept && e.pieces) {  // applied on its own, below
        accepted.emplace_back(std::move(e), std::move(d.pieces));
        continue;
      }
      TANDEM_RETURN_IF_ERROR(ForgetHeld(*txn, e));
      if (a == Admission::kRefuse) {
        TANDEM_RETURN_IF_ERROR(NoteRefused(*txn, d, ours ? &*ours : nullptr, admit));
        ++out.refused;
        continue;
      }
      // As from its peer: a state that breaks its collection's rules moves to the
      // quarantine for that.
      TANDEM_RETURN_IF_ERROR(JoinInto(*txn, meta, {std::move(d)}, nullptr, nullptr, nullptr,
                                      nullptr, nullptr, &e.from, nullptr));
      ++out.applied;
    }
    if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
    if (out.applied + out.refused == 0) return Status::Ok();  // nothing to write
    return txn->Commit();
  });
  if (!result.ok()) return result;
  if (out.applied + out.refused) Committed();
  // One that cannot be applied now (its chunks damaged, too large to be decoded whole
  // where it must be) stays held; the others go on.
  for (const auto& [e, p] : accepted) {
    const Status st = ReleaseInPieces(e, true, p);
    if (st.code() == Code::kNotFound) continue;  // released meanwhile
    if (st.code() == Code::kCorrupt || st.code() == Code::kUnsupported) {
      ++out.held;
      continue;
    }
    TANDEM_RETURN_IF_ERROR(st.With("quarantined change " + std::to_string(e.id)));
    ++out.applied;
  }
  return out;
}

Result<std::shared_ptr<StateInPieces>> Replica::QuarantinedPieces(ReadTxn& txn,
                                                                  const QuarantineEntry& e) {
  const QuarantineEntry::InPieces& held = *e.pieces;
  std::optional<BlobInfo> info;
  TANDEM_RETURN_IF_ERROR(txn.GetBlob(held.entry, &info));
  const uint64_t n = info ? info->chunks.size() : 0;
  if (!info || n == 0 || info->size != held.size || (n - 1) * kBlobChunkBytes >= held.size ||
      n * kBlobChunkBytes < held.size)
    return Status::Corrupt("the chunks of quarantined change " + std::to_string(e.id) +
                           " are not listed");
  auto p = std::make_shared<StateInPieces>();
  p->peer = e.from;
  p->entry = held.entry;
  p->chunks.assign(info->chunks.begin(), info->chunks.end() - 1);
  // The last, as a piece not stored yet: it may be short.
  bool found = false;
  TANDEM_RETURN_IF_ERROR(txn.GetChunk(info->chunks.back(), &p->last, &found));
  if (!found || p->last.size() != held.size - (n - 1) * kBlobChunkBytes ||
      Hash(p->last) != info->chunks.back())
    return Status::Corrupt("a chunk of quarantined change " + std::to_string(e.id) +
                           " is missing or damaged");
  p->content = held.content;
  p->size = held.size;
  p->header = held.header;
  p->state_at = held.state_at;
  return p;
}

Status Replica::ReleaseInPieces(const QuarantineEntry& e, bool judged,
                                std::shared_ptr<StateInPieces> p) {
  if (!p) {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
    TANDEM_ASSIGN_OR_RETURN(p, QuarantinedPieces(*txn, e));
  }
  const ReplicaId* from = judged ? &e.from : nullptr;   // under the collection's rules
  const BlobHash joined_entry = JoinedEntry(p->entry);  // JoinPieces makes it there
  // Each attempt applies and forgets it in one transaction, if it is still there.
  auto apply = [&](const std::vector<FieldDelta>& one) -> Status {
    Status st = Retrying([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      bool there = false;
      TANDEM_RETURN_IF_ERROR(txn->ListQuarantine([&](uint64_t id, std::string_view) {
        there = id == e.id;
        return id < e.id;
      }));
      if (!there)
        return Status::NotFound("quarantined change " + std::to_string(e.id) +
                                " was released or dropped meanwhile");
      ReplicaMeta meta;
      TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
      const ReplicaMeta before = meta;
      // The entry goes first, so that a state the rules hold again is a new entry (Hold
      // finds none of the same state); its chunks' entry last, once Hold has listed them.
      TANDEM_RETURN_IF_ERROR(txn->DeleteQuarantine(e.id));
      size_t q = 0;
      TANDEM_RETURN_IF_ERROR(JoinInto(*txn, meta, one, nullptr, nullptr, nullptr, nullptr, nullptr,
                                      from, from ? &q : nullptr));
      TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(p->entry));
      // A join made of it is stored now, listed by the field's own entry.
      TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(joined_entry));
      if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
      return txn->Commit();
    });
    if (st.ok()) Committed();
    return st;
  };
  bool joined = false;
  Status st = ApplyJoining(FieldDelta{e.key, e.state, p}, apply, &joined);
  if (!st.ok()) {  // a join made and not stored goes now
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(joined_entry));
      return txn->Commit();
    }));
  }
  if (st.ok() || !p->whole || st.code() == Code::kNotFound) return st;
  if (p->size > max_whole_state())
    return Status::Unsupported(e.key.Name() + " is " + std::to_string(p->size) +
                               " bytes, more than the " + std::to_string(max_whole_state()) +
                               " a state is decoded whole for here, and its join with the "
                               "field's state here cannot be made a part at a time");
  std::vector<FieldDelta> whole(1);
  whole[0].key = e.key;
  TANDEM_ASSIGN_OR_RETURN(whole[0].state, DecodeInPieces(e.key, *p));
  return apply(whole);
}

}  // namespace tandem::engine
