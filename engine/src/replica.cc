#include "tandem/engine/replica.h"

#include <algorithm>
#include <cassert>

#include "tandem/engine/codec.h"

namespace tandem::engine {

Status ValidateKey(const FieldKey& key) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(key.collection));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(key.record));
  return ValidateFieldName(key.field);
}

// ---- Replica ----------------------------------------------------------------------

// Runs a whole write transaction again when the store reports a transient condition
// (kBusy: an LMDB map that had to grow, or another writer in a memory store).
Status Replica::Retrying(const std::function<Status()>& attempt) {
  Status st;
  for (int i = 0; i < 32; ++i) {
    st = attempt();
    if (st.code() != Code::kBusy) return st;
  }
  return st;
}

void TakeNewReplicaId(ReplicaMeta& meta, const IdSource& source) {
  ReplicaId fresh;
  do fresh = source();
  while (fresh.IsZero() || fresh == meta.id || meta.vv.Get(fresh) != 0);
  meta.id = fresh;
}

Replica::Replica(std::unique_ptr<Store> store, PhysicalClock now, ContentHash hash, IdSource new_id)
    : store_(std::move(store)), now_(std::move(now)), hash_(hash), new_id_(std::move(new_id)) {
  assert(hash_ != nullptr);
}

void Replica::SetWritePolicy(std::shared_ptr<WritePolicy> policy) {
  std::lock_guard lock(policy_mu_);
  policy_ = std::move(policy);
}

uint64_t Replica::AddCommitObserver(std::function<void()> fn) {
  std::lock_guard lock(observers_mu_);
  const uint64_t token = next_observer_++;
  observers_.emplace(token, std::make_shared<std::function<void()>>(std::move(fn)));
  return token;
}

void Replica::RemoveCommitObserver(uint64_t token) {
  std::lock_guard lock(observers_mu_);
  observers_.erase(token);
}

void Replica::Committed() {
  std::vector<std::shared_ptr<std::function<void()>>> fns;
  {
    std::lock_guard lock(observers_mu_);
    if (observers_.empty()) return;
    for (const auto& [token, fn] : observers_) fns.push_back(fn);
  }
  for (const auto& fn : fns) (*fn)();
}

Status Replica::CheckClaim(ReplicaMeta& meta, uint64_t claimed, bool* rekeyed) {
  const uint64_t have = meta.vv.Get(meta.id);
  if (claimed <= have) return Status::Ok();
  // Accepting the claim as it is would let our next dot fall inside someone's context
  // and vanish; without a source of ids, refuse it.
  if (!new_id_)
    return Status::Corrupt("peer claims events of this replica that it never issued (" +
                           std::to_string(claimed) + " > " + std::to_string(have) + ")");
  TakeNewReplicaId(meta, new_id_);
  if (rekeyed) *rekeyed = true;
  return Status::Ok();
}

Status Replica::RekeyIfBehind(const ReplicaId& as, uint64_t claimed, bool* rekeyed,
                              uint64_t log_cursor, uint64_t log_mark) {
  *rekeyed = false;
  return Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    if (meta.id != as) {
      *rekeyed = true;  // someone else (another session, another process) already did
      return Status::Ok();
    }
    uint64_t last = 0;
    TANDEM_RETURN_IF_ERROR(txn->LastLogSeq(&last));
    // The log only grows: a cursor or mark past its end, or where it never had an entry,
    // was read from a log we no longer have.
    bool gone = log_cursor > last || log_mark > last;
    for (uint64_t seq : {log_cursor, log_mark})
      if (!gone && seq) TANDEM_RETURN_IF_ERROR(txn->InLogGap(seq, &gone));
    if (gone) claimed = std::max(claimed, meta.vv.Get(meta.id) + 1);
    bool changed = false;
    TANDEM_RETURN_IF_ERROR(CheckClaim(meta, claimed, &changed));
    if (!changed) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
    TANDEM_RETURN_IF_ERROR(txn->Commit());
    *rekeyed = true;
    return Status::Ok();
  });
}

Result<ReplicaMeta> Replica::Meta() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  ReplicaMeta m;
  TANDEM_RETURN_IF_ERROR(txn->GetMeta(&m));
  return m;
}

Status Replica::Write(const std::function<Status(Batch&)>& fn) {
  Status st = Retrying([&] { return WriteOnce(fn); });
  if (st.ok()) Committed();
  return st;
}

Status Replica::WriteOnce(const std::function<Status(Batch&)>& fn) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
  ReplicaMeta meta;
  TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
  const ReplicaMeta before = meta;
  std::shared_ptr<WritePolicy> policy = Policy();
  Batch batch(*txn, meta, now_, policy.get());
  TANDEM_RETURN_IF_ERROR(fn(batch));
  TANDEM_RETURN_IF_ERROR(batch.Finish());
  if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
  return txn->Commit();
}

Status Replica::Put(std::string_view c, std::string_view id,
                    const std::vector<std::pair<std::string, Value>>& fields) {
  if (fields.empty()) return Status::Invalid("put needs at least one field");
  // A field named twice: which value is meant is not for the engine to guess.
  for (size_t i = 1; i < fields.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (fields[i].first == fields[j].first)
        return Status::Invalid("field \"" + fields[i].first + "\" is given twice");
  return Write([&](Batch& b) {
    for (const auto& [f, v] : fields) TANDEM_RETURN_IF_ERROR(b.Put(c, id, f, v));
    return Status::Ok();
  });
}

Status Replica::Incr(std::string_view c, std::string_view id, std::string_view f, int64_t by) {
  return Write([&](Batch& b) { return b.Incr(c, id, f, by); });
}
Status Replica::Add(std::string_view c, std::string_view id, std::string_view f, Value e) {
  return Write([&](Batch& b) { return b.Add(c, id, f, e); });
}
Status Replica::Remove(std::string_view c, std::string_view id, std::string_view f,
                       const Value& e) {
  return Write([&](Batch& b) { return b.Remove(c, id, f, e); });
}
Status Replica::Delete(std::string_view c, std::string_view id) {
  return Write([&](Batch& b) { return b.Delete(c, id); });
}

Result<RecordState> Replica::GetState(std::string_view c, std::string_view id) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  RecordState r;
  TANDEM_RETURN_IF_ERROR(txn->GetRecord(c, id, &r, nullptr));
  return r;
}

std::shared_ptr<WritePolicy> Replica::Policy() {
  std::lock_guard lock(policy_mu_);
  return policy_;
}

Result<std::shared_ptr<const CollectionRules>> Replica::ReadRules(ReadTxn& txn,
                                                                  std::string_view c) {
  auto policy = Policy();
  if (!policy) return std::shared_ptr<const CollectionRules>();
  auto rules = policy->RulesFor(txn, c);
  // Reads go on without rules that cannot be had (a schema this version cannot parse):
  // writes report it.
  if (!rules.ok()) return std::shared_ptr<const CollectionRules>();
  return rules;
}

namespace {
// The rules' winner among a register field's siblings: its index, or -1 for the latest.
int RuledWinner(const CollectionRules* rules, const std::string& field,
                const std::vector<Sibling>& sibs) {
  if (!rules || sibs.size() < 2) return -1;
  for (const auto& s : sibs)
    if (s.kind != Kind::kRegister) return -1;  // type conflicts keep the default
  const int i = rules->PickWinner(field, sibs);
  return i > 0 && static_cast<size_t>(i) < sibs.size() ? i : -1;
}
}  // namespace

std::optional<Record> Replica::ReadWithRules(const std::string& id, const RecordState& r,
                                             const CollectionRules* rules) {
  auto rec = Read(id, r);
  if (!rec || !rules) return rec;
  for (const auto& [name, f] : r.fields) {
    if (f.markers.size() < 2) continue;
    const auto sibs = Siblings(f);
    const int i = RuledWinner(rules, name, sibs);
    if (i > 0) {
      auto& v = rec->fields[name];
      v.kind = Kind::kRegister;
      v.scalar = sibs[static_cast<size_t>(i)].value;
    }
  }
  return rec;
}

Result<Record> Replica::Get(std::string_view c, std::string_view id) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  RecordState r;
  TANDEM_RETURN_IF_ERROR(txn->GetRecord(c, id, &r, nullptr));
  TANDEM_ASSIGN_OR_RETURN(auto rules, ReadRules(*txn, c));
  auto rec = ReadWithRules(std::string(id), r, rules.get());
  if (!rec) return Status::NotFound("not found: " + std::string(c) + "/" + std::string(id));
  return std::move(*rec);
}

Status Replica::Scan(std::string_view c, std::string_view after,
                     const std::function<bool(const Record&)>& fn) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  TANDEM_ASSIGN_OR_RETURN(auto rules, ReadRules(*txn, c));
  return txn->ScanRecords(c, after, [&](const std::string& id, RecordState& r) {
    auto rec = ReadWithRules(id, r, rules.get());
    return rec ? fn(*rec) : true;
  });
}

Status Replica::ScanPasses(std::string_view c,
                           const std::vector<std::function<bool(const Record&)>>& passes) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  TANDEM_ASSIGN_OR_RETURN(auto rules, ReadRules(*txn, c));
  for (const auto& fn : passes)
    TANDEM_RETURN_IF_ERROR(txn->ScanRecords(c, "", [&](const std::string& id, RecordState& r) {
      auto rec = ReadWithRules(id, r, rules.get());
      return rec ? fn(*rec) : true;
    }));
  return Status::Ok();
}

Result<std::vector<std::string>> Replica::Collections() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  std::vector<std::string> out;
  TANDEM_RETURN_IF_ERROR(txn->ListCollections(&out));
  return out;
}

Result<std::vector<std::pair<std::string, std::vector<Sibling>>>> Replica::Conflicts(
    std::string_view c, std::string_view id) {
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  RecordState r;
  TANDEM_RETURN_IF_ERROR(txn->GetRecord(c, id, &r, nullptr));
  if (!r.Live()) return Status::NotFound("not found: " + std::string(c) + "/" + std::string(id));
  TANDEM_ASSIGN_OR_RETURN(auto rules, ReadRules(*txn, c));
  std::vector<std::pair<std::string, std::vector<Sibling>>> out;
  for (const auto& [name, f] : r.fields) {
    auto sibs = Siblings(f);
    if (!IsConflict(sibs)) continue;
    const int i = RuledWinner(rules.get(), name, sibs);
    if (i > 0) {
      // The rules' winner first; the others stay in their order.
      for (auto& s : sibs) s.winner = false;
      std::rotate(sibs.begin(), sibs.begin() + i, sibs.begin() + i + 1);
      sibs.front().winner = true;
    }
    out.emplace_back(name, std::move(sibs));
  }
  return out;
}

Result<ChangePage> Replica::Changes(uint64_t since, size_t limit) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  // Each record once, at the position of its latest change: lines come out in cursor
  // order and resuming after any cursor misses nothing. A record that changes again
  // past the range read is left for the page that reaches that change.
  std::map<std::pair<std::string, std::string>, uint64_t> latest;
  ChangePage page;
  page.next_cursor = since;
  size_t n = 0;
  if (limit > 0) {
    TANDEM_RETURN_IF_ERROR(txn->ScanLog(since, [&](uint64_t seq, const FieldKey& k) {
      latest[{k.collection, k.record}] = seq;
      page.next_cursor = seq;
      return ++n < limit;
    }));
  }
  std::vector<std::pair<uint64_t, const std::pair<std::string, std::string>*>> order;
  for (const auto& [rk, seq] : latest) order.emplace_back(seq, &rk);
  std::sort(order.begin(), order.end());
  std::map<std::string, std::shared_ptr<const CollectionRules>> rules;
  for (const auto& [seq, rk] : order) {
    uint64_t newest = 0;
    TANDEM_RETURN_IF_ERROR(txn->GetRecord(rk->first, rk->second, nullptr, &newest));
    if (newest > page.next_cursor) continue;
    RecordState r;
    TANDEM_RETURN_IF_ERROR(txn->GetRecord(rk->first, rk->second, &r, nullptr));
    auto it = rules.find(rk->first);
    if (it == rules.end()) {
      TANDEM_ASSIGN_OR_RETURN(auto found, ReadRules(*txn, rk->first));
      it = rules.emplace(rk->first, std::move(found)).first;
    }
    page.changes.push_back(
        Change{seq, rk->first, rk->second, ReadWithRules(rk->second, r, it->second.get())});
  }
  return page;
}

size_t WireSizeBound(const FieldDelta& d) {
  auto value = [](const Value& v) -> size_t {
    if (auto* s = std::get_if<std::string>(&v)) return 11 + s->size();
    if (auto* b = std::get_if<Bytes>(&v)) return 11 + b->data.size();
    if (auto* ref = std::get_if<BlobRef>(&v)) return 11 + 32 + 10 + 11 + ref->type.size();
    return 11;
  };
  size_t n = 30 + d.key.record.size() + 11;  // key varints, header and counts
  n += d.state.ctx.size() * (16 + 20);       // replica table share + context entry
  for (const auto& [dot, m] : d.state.markers) n += 40 + value(m.value);
  for (const auto& [v, dots] : d.state.elements) n += value(v) + 10 + 20 * dots.size();
  n += 30 * (d.state.counter.size() + d.state.counter_base.size());
  return n;
}

Result<DeltaPage> Replica::CollectDeltas(uint64_t since, size_t limit, const VersionVector* skip,
                                         size_t max_bytes, uint64_t large, uint64_t upto) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  DeltaPage page;
  page.next_cursor = since;
  size_t n = 0, bytes = 0;
  uint64_t previous = since;
  TANDEM_RETURN_IF_ERROR(txn->ScanLogDeltas(
      since, large,
      [&](uint64_t seq, const FieldKey& k, FieldState* s, const ReadTxn::LargeState* l) {
        if (n >= limit) return false;
        if (seq > upto) {
          page.capped = true;
          return false;
        }
        ++n;
        ++page.scanned;
        previous = page.next_cursor;
        page.next_cursor = seq;
        if (!s && !l) return true;  // stale: the field's later entry carries it
        // (Damaged: its context is unknown, so never taken as held.)
        if (skip && !(l && l->damaged) && skip->Covers(s ? s->ctx : l->ctx)) return true;
        std::optional<FieldDelta> d;
        if (s) d.emplace(FieldDelta{k, std::move(*s)});
        const uint64_t size = d ? WireSizeBound(*d) : UINT64_MAX;
        if ((!d || size > large || bytes + size > max_bytes) && !page.deltas.empty()) {
          page.next_cursor = previous;  // this one starts the next page
          return false;
        }
        if (!d || size > large) {
          page.large =
              DeltaPage::Large{k, d ? std::move(d->state.ctx) : l->ctx, seq, !d && l->damaged};
          return false;
        }
        bytes += size;
        page.deltas.push_back(std::move(*d));
        return true;
      }));
  uint64_t last = 0;
  TANDEM_RETURN_IF_ERROR(txn->LastLogSeq(&last));
  page.done = !page.capped && page.next_cursor >= last;
  page.log_end = last;
  if (page.done) {
    TANDEM_RETURN_IF_ERROR(txn->GetCollected(&page.collected));
    TANDEM_RETURN_IF_ERROR(txn->GetCollectedIn(&page.collected_in));
  }
  return page;
}

Result<LogHull> Replica::ReadLogHull() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  LogHull hull;
  TANDEM_RETURN_IF_ERROR(txn->GetLogHull(&hull));
  return hull;
}

Result<uint64_t> Replica::Held(const ReplicaId& r) {
  TANDEM_ASSIGN_OR_RETURN(LogHull hull, ReadLogHull());
  return hull.hull.Get(r);
}

Result<VersionVector> Replica::HeldAll() {
  TANDEM_ASSIGN_OR_RETURN(LogHull hull, ReadLogHull());
  return std::move(hull.hull);
}

Result<std::optional<VersionVector>> Replica::HeldAfter(uint64_t seq) {
  TANDEM_ASSIGN_OR_RETURN(LogHull hull, ReadLogHull());
  if (seq < hull.base) return std::optional<VersionVector>();  // (the hull: after base)
  return std::optional<VersionVector>(std::move(hull.hull));
}

Result<uint64_t> Replica::SkipHeld(const VersionVector& vv, uint64_t cursor) {
  TANDEM_ASSIGN_OR_RETURN(LogHull hull, ReadLogHull());
  return hull.SkipFor(vv, cursor);
}

Status Replica::CompletePeerSync(
    const ReplicaId& peer, const VersionVector& peer_vv, bool merge, bool filtered, bool* rekeyed,
    const std::optional<std::pair<uint64_t, CollectionFilter>>& delivered,
    std::optional<uint64_t> cursor, const VersionVector* hold_back, const Absorb* absorb) {
  Status result = Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    bool rk = false;
    TANDEM_RETURN_IF_ERROR(CheckClaim(meta, peer_vv.Get(meta.id), &rk));
    if (rk) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
    PeerState ps;
    TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
    const uint64_t issued = ps.vv.Get(peer);  // shown by its states since (ApplyBatch)
    ps.vv = peer_vv;
    ps.vv.Raise(peer, issued);
    if (cursor) ps.cursor = *cursor;
    ps.last_sync_ms = now_();
    if (delivered) {
      ps.delivered = delivered->first;
      ps.delivery = delivered->second;
    }
    // (A session that moved no cursor: what it is behind was taken as before.)
    if (filtered) ps.filtered = true;
    if (merge) {
      ps.filtered = false;
      ps.received = CollectionFilter{};
    }
    TANDEM_RETURN_IF_ERROR(txn->PutPeer(peer, ps));
    // What this round brought in, peers need not read again (SkipHeld).
    TANDEM_RETURN_IF_ERROR(txn->CheckpointLog());
    VersionVector claim = peer_vv;
    if (merge || absorb) TANDEM_RETURN_IF_ERROR(DropSuperseded(*txn));
    if (merge) {
      TANDEM_RETURN_IF_ERROR(CapByQuarantine(*txn, &claim));
      TANDEM_RETURN_IF_ERROR(CapByRefused(*txn, &claim, filtered ? nullptr : &peer));
      if (hold_back)
        for (const auto& [r, n] : hold_back->entries())
          if (r != meta.id && n > meta.vv.Get(r)) claim.Cap(r, meta.vv.Get(r));
    }
    const ReplicaMeta before = meta;
    if (merge) meta.vv.Merge(claim);
    // Not when the peer's vector just showed this replica was rolled back: its claim of
    // our old id covers events lost here.
    if (!merge && absorb && !rk) {
      VersionVector bore = absorb->claim;
      bore.Cap(meta.id, meta.vv.Get(meta.id));
      TANDEM_RETURN_IF_ERROR(CapByQuarantine(*txn, &bore));
      TANDEM_RETURN_IF_ERROR(CapByRefused(*txn, &bore, nullptr));
      if (absorb->hold_back)
        for (const auto& [r, n] : absorb->hold_back->entries())
          if (r != meta.id && n > meta.vv.Get(r)) bore.Cap(r, meta.vv.Get(r));
      if (absorb->from_zero && !absorb->taken.Within(meta.scope)) {
        meta.absorbed = std::move(bore);  // what held for the old scope may not here
        meta.scope = absorb->taken;
      } else {
        meta.absorbed.Merge(bore);
        meta.scope = CollectionFilter::Both(meta.scope, absorb->taken);
      }
    }
    // Nothing beyond what it holds in every collection: nothing to say apart.
    if (meta.vv.Covers(meta.absorbed)) {
      meta.absorbed = VersionVector{};
      meta.scope = CollectionFilter{};
    }
    if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
    TANDEM_RETURN_IF_ERROR(txn->Commit());
    if (rekeyed && rk) *rekeyed = true;
    return Status::Ok();
  });
  if (result.ok()) Committed();
  return result;
}

Status Replica::MergeVersionVector(const VersionVector& vv) {
  Status st = Retrying([&] { return MergeVersionVectorOnce(vv); });
  if (st.ok()) Committed();
  return st;
}

Status Replica::MergeVersionVectorOnce(const VersionVector& vv) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
  ReplicaMeta meta;
  TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
  if (meta.vv.Covers(vv)) return Status::Ok();
  // Our own entry is ours alone to advance: a vector claiming more of our events than we
  // issued means we were rolled back, and adopting it would make us reissue dots.
  TANDEM_RETURN_IF_ERROR(CheckClaim(meta, vv.Get(meta.id), nullptr));
  VersionVector claim = vv;
  TANDEM_RETURN_IF_ERROR(CapByQuarantine(*txn, &claim));
  TANDEM_RETURN_IF_ERROR(CapByRefused(*txn, &claim, nullptr));
  meta.vv.Merge(claim);
  TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
  return txn->Commit();
}

}  // namespace tandem::engine
