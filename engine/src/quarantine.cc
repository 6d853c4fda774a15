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

}  // namespace

Status Replica::Hold(WriteTxn& txn, const FieldDelta& d, const ReplicaId& from, std::string why,
                     bool held, std::optional<std::set<BlobHash>>& known) {
  // Held once: the same state again (every other peer offers it while it is held, as
  // the watermark stops below it) is not a new entry.
  if (!known) {
    known.emplace();
    TANDEM_RETURN_IF_ERROR(EachEntry(txn, [&](const QuarantineEntry& e) {
      if (auto bytes = EncodeDelta(e.key, e.state); bytes.ok()) known->insert(Hash(*bytes));
      return true;
    }));
  }
  TANDEM_ASSIGN_OR_RETURN(std::string bytes, EncodeDelta(d.key, d.state));
  if (!known->insert(Hash(bytes)).second) return Status::Ok();
  uint64_t qid = 0;
  TANDEM_RETURN_IF_ERROR(txn.TakeQuarantineId(&qid));
  QuarantineEntry e{0, held, d.key, from, now_(), std::move(why), d.state};
  TANDEM_ASSIGN_OR_RETURN(std::string entry, EncodeQuarantineEntry(e));
  return txn.PutQuarantine(qid, entry);
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
        st = txn.GetFieldOrDamaged(e.key, &ours, nullptr);  // damaged here: seen nothing
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
  std::vector<uint64_t> moot;
  Status st;
  TANDEM_RETURN_IF_ERROR(EachEntry(txn, [&](const QuarantineEntry& e) {
    std::optional<FieldState> ours;
    Status damage;
    st = txn.GetFieldOrDamaged(e.key, &ours, &damage);
    if (!st.ok()) return false;
    if (!damage.ok() || !ours) return true;  // nothing here holds it
    FieldState joined = *ours;
    if (!Join(joined, e.state)) moot.push_back(e.id);
    return true;
  }));
  TANDEM_RETURN_IF_ERROR(st);
  for (uint64_t id : moot) TANDEM_RETURN_IF_ERROR(txn.DeleteQuarantine(id));
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
  Status result = Retrying([&]() -> Status {
    n = 0;
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    std::vector<QuarantineEntry> batch;
    TANDEM_RETURN_IF_ERROR(EachEntry(*txn, [&](QuarantineEntry e) {
      if (pick(e)) batch.push_back(std::move(e));
      return batch.size() < max;
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
  Status result = Retrying([&]() -> Status {
    out = Judged{};
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    std::vector<QuarantineEntry> held;
    TANDEM_RETURN_IF_ERROR(EachEntry(*txn, [&](QuarantineEntry e) {
      if (e.held) held.push_back(std::move(e));
      return true;
    }));
    if (held.empty()) return Status::Ok();
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    const ReplicaMeta before = meta;
    for (auto& e : held) {
      FieldDelta d{e.key, std::move(e.state)};
      std::optional<FieldState> ours;
      Status damage;
      TANDEM_RETURN_IF_ERROR(txn->GetFieldOrDamaged(d.key, &ours, &damage));
      if (!damage.ok()) {
        ++out.held;  // nothing can be joined into it (JoinInto)
        continue;
      }
      const Admission a = admit(d, ours ? &*ours : nullptr);
      if (a != Admission::kAccept && a != Admission::kRefuse) {
        ++out.held;
        continue;
      }
      TANDEM_RETURN_IF_ERROR(txn->DeleteQuarantine(e.id));
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
  return out;
}

}  // namespace tandem::engine
