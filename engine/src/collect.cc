// Collection of field states every member holds (docs/design.md#collection).
#include <algorithm>

#include "tandem/engine/codec.h"
#include "tandem/engine/memory_store.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {

// Where a sweep stands: the next collection (by name) and the record after which it
// goes on.
struct SweepPosition {
  std::string collection;
  std::string after;
  bool done = false;
};

}  // namespace

Status Replica::Sweep(const CollectionFilter& scope, size_t max_fields, const SweepFns& fns) {
  max_fields = std::max<size_t>(max_fields, 1);
  SweepPosition at;
  while (!at.done) {
    SweepPosition next;
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
      next = at;
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      TANDEM_RETURN_IF_ERROR(fns.begin(*txn));
      std::vector<std::string> collections;
      TANDEM_RETURN_IF_ERROR(txn->ListCollections(&collections));
      auto c = std::lower_bound(collections.begin(), collections.end(), next.collection);
      size_t examined = 0;
      for (; c != collections.end() && examined < max_fields; ++c) {
        if (*c != next.collection) next = SweepPosition{*c, "", false};
        if (!scope.Allows(*c)) {
          next.collection = *c + '\0';
          continue;
        }
        bool whole = true;
        Status bad;
        const ReadTxn::OutlineFn outlined = [](const FieldKey&) {};
        TANDEM_RETURN_IF_ERROR(txn->ScanRecords(
            *c, next.after,
            [&](const std::string& id, RecordState& r) {
              for (const auto& [name, state] : r.fields) {
                ++examined;
                bad = fns.visit(FieldKey{*c, id, name}, state);
                if (!bad.ok()) return false;
              }
              next.after = id;
              if (examined < max_fields) return true;
              whole = false;
              return false;
            },
            fns.damaged ? &fns.damaged : nullptr, fns.outlines ? &outlined : nullptr));
        TANDEM_RETURN_IF_ERROR(bad);
        if (!whole) break;
        next.after.clear();
        next.collection = *c + '\0';  // the next collection sorts at or after this
      }
      if (c == collections.end()) next.done = true;
      TANDEM_RETURN_IF_ERROR(fns.end(*txn));
      return txn->Commit();
    }));
    if (fns.committed) fns.committed();
    at = std::move(next);
  }
  return Status::Ok();
}

Status Replica::Collect(const VersionVector& absorbed, CollectStats* stats, size_t max_fields) {
  *stats = CollectStats{};
  // Blobs: which ones the field states (and quarantined ones) reference, gathered by the
  // same sweep, when there are any.
  bool blobs = false;
  std::map<BlobHash, FieldKey> referenced;
  const uint64_t started = now_();
  {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
    TANDEM_RETURN_IF_ERROR(txn->ScanBlobs(false, [&](const BlobHash&, const BlobInfo&) {
      blobs = true;
      return false;
    }));
    if (!blobs)  // chunks that no entry lists any more (pieces dropped, say)
      TANDEM_RETURN_IF_ERROR(txn->ScanChunks(nullptr, [&](const BlobHash&) {
        blobs = true;
        return false;
      }));
    Status bad;
    if (blobs)
      TANDEM_RETURN_IF_ERROR(txn->ListQuarantine([&](uint64_t, std::string_view bytes) {
        auto e = DecodeQuarantineEntry(bytes);
        if (!e.ok()) {
          bad = e.status();
          return false;
        }
        ForEachBlobRef(e->state, [&](const BlobRef& r) { referenced.emplace(r.hash, e->key); });
        return true;
      }));
    TANDEM_RETURN_IF_ERROR(bad);
  }
  CollectStats step;
  VersionVector frontier;
  // In the collections `scope` allows, what this replica holds there bounds it instead
  // (a replica that leaves collections out: ReplicaMeta::absorbed). What that removes
  // beyond `frontier` is remembered per collection (ReadTxn::GetCollectedIn).
  std::optional<VersionVector> scoped;
  CollectionFilter scope;
  struct Gone {
    FieldKey key;
    uint64_t size;
    bool scoped;  // collectable by `scoped` only
  };
  std::vector<Gone> gone;
  SweepFns fns;
  fns.outlines = true;
  fns.begin = [&](WriteTxn& txn) -> Status {
    step = CollectStats{};
    gone.clear();
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn.GetMeta(&meta));
    // What we hold ourselves bounds what we may say everyone holds.
    frontier = VersionVector::Meet(absorbed, meta.vv);
    scoped.reset();
    scope = meta.scope;
    if (!meta.vv.Covers(meta.absorbed)) {
      VersionVector s = VersionVector::Meet(absorbed, meta.Holding());
      if (!frontier.Covers(s)) scoped = std::move(s);
    }
    return Status::Ok();
  };
  fns.visit = [&](const FieldKey& key, const FieldState& state) -> Status {
    ++step.examined;
    if (blobs) ForEachBlobRef(state, [&](const BlobRef& r) { referenced.emplace(r.hash, key); });
    bool by_scope = false;
    if (!Collectable(state, frontier)) {
      if (!scoped || !scope.Allows(key.collection) || !Collectable(state, *scoped)) {
        if (IsTombstone(state) && state.counter.empty() && state.counter_base.empty())
          ++step.waiting;
        return Status::Ok();
      }
      by_scope = true;
    }
    TANDEM_ASSIGN_OR_RETURN(auto bytes, EncodeFieldState(state));
    gone.push_back(Gone{key,
                        bytes.size() + key.collection.size() + key.record.size() + key.field.size(),
                        by_scope});
    return Status::Ok();
  };
  fns.end = [&](WriteTxn& txn) -> Status {
    // Remembered with what it removes (a peer behind it is rebased: not for nothing).
    // A store that may not remember it per collection yet (an older build has the
    // replica open) keeps those states for a later run.
    std::map<std::string, bool> stored;
    bool everywhere = false;
    for (const Gone& g : gone) {
      if (!g.scoped) {
        everywhere = true;
        continue;
      }
      auto [it, fresh] = stored.try_emplace(g.key.collection, false);
      if (fresh)
        TANDEM_RETURN_IF_ERROR(txn.RaiseCollectedIn(g.key.collection, *scoped, &it->second));
    }
    if (everywhere) TANDEM_RETURN_IF_ERROR(RaiseCollected(txn, frontier));
    for (const auto& [key, size, by_scope] : gone) {
      if (by_scope && !stored[key.collection]) continue;
      bool deleted = false;
      TANDEM_RETURN_IF_ERROR(txn.DeleteField(key, &deleted));
      if (deleted) {
        ++step.collected;
        step.bytes += size;
      } else {
        ++step.kept_newest;
      }
    }
    return Status::Ok();
  };
  fns.committed = [&] {
    stats->examined += step.examined;
    stats->collected += step.collected;
    stats->bytes += step.bytes;
    stats->kept_newest += step.kept_newest;
    stats->waiting += step.waiting;
    stats->damaged += step.damaged;
    ++stats->transactions;
  };
  // Damage on disk stops only what reads that field: the rest is collected.
  fns.damaged = [&](const FieldKey&, const Status&) { ++step.damaged; };
  TANDEM_RETURN_IF_ERROR(Sweep(CollectionFilter{}, max_fields, fns).With("collect"));
  // What is left lies sparse in its pages when much went: rewrite it densely.
  if (stats->collected && stats->collected * 4 >= stats->examined) {
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
                             TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
                             TANDEM_RETURN_IF_ERROR(txn->Repack());
                             return txn->Commit();
                           }).With("repack"));
    stats->repacked = true;
  }
  if (blobs && !stats->damaged)
    TANDEM_RETURN_IF_ERROR(
        CollectBlobs(absorbed, referenced, started, stats).With("collect blobs"));
  return Status::Ok();
}

Result<uint64_t> Replica::Rebase(const VersionVector& collected, bool take,
                                 const std::unordered_set<uint64_t>& sent,
                                 const CollectionFilter& scope,
                                 const std::function<bool(const std::string&)>& may,
                                 const ReadTxn::CollectedIn* in, bool take_in, size_t max_fields) {
  uint64_t changed = 0;
  std::vector<std::pair<FieldKey, FieldState>> rewrite;
  SweepFns fns;
  fns.begin = [&](WriteTxn& txn) -> Status {
    rewrite.clear();
    return take ? RaiseCollected(txn, collected) : Status::Ok();
  };
  fns.visit = [&](const FieldKey& key, const FieldState& state) -> Status {
    if (sent.count(KeyHash(key))) return Status::Ok();  // joined with the peer's already
    if (may && !may(key.collection)) return Status::Ok();
    FieldState kept = state;
    auto it = in ? in->find(key.collection) : ReadTxn::CollectedIn::const_iterator{};
    DropCollected(kept, in && it != in->end() ? it->second : collected);
    if (!(kept == state)) rewrite.emplace_back(key, std::move(kept));
    return Status::Ok();
  };
  // Written, never deleted, even where nothing is left but a tombstone: the change feed
  // reads the log, and a reader that saw the record live must see it go. Collection
  // removes the tombstone later, as any other.
  fns.end = [&](WriteTxn& txn) -> Status {
    for (const auto& [key, state] : rewrite) TANDEM_RETURN_IF_ERROR(txn.PutField(key, state));
    return Status::Ok();
  };
  fns.committed = [&] { changed += rewrite.size(); };
  // A field damaged here is withheld from peers and holds theirs aside: left as it is.
  fns.damaged = [](const FieldKey&, const Status&) {};
  TANDEM_RETURN_IF_ERROR(Sweep(scope, max_fields, fns).With("rebase"));
  // Once the whole sweep has committed, this replica holds every effect in those
  // collections of what the peer's vectors cover there, and what the peer removed is
  // gone: recorded as its own collection there would be (not before: a sweep cut short
  // must be done again; a store that may not keep it rebases again).
  if (take_in && in && !in->empty())
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
                             TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
                             std::vector<std::string> held;
                             TANDEM_RETURN_IF_ERROR(txn->ListCollections(&held));
                             for (const auto& [collection, vv] : *in) {
                               if (!scope.Allows(collection) || (may && !may(collection)) ||
                                   !std::binary_search(held.begin(), held.end(), collection))
                                 continue;
                               bool stored = false;
                               TANDEM_RETURN_IF_ERROR(
                                   txn->RaiseCollectedIn(collection, vv, &stored));
                             }
                             return txn->Commit();
                           }).With("rebase"));
  if (changed) Committed();
  return changed;
}

Status Replica::RaiseCollected(WriteTxn& txn, const VersionVector& with) {
  VersionVector collected;
  TANDEM_RETURN_IF_ERROR(txn.GetCollected(&collected));
  if (collected.Covers(with)) return Status::Ok();
  collected.Merge(with);
  return txn.PutCollected(collected);
}

uint64_t Replica::KeyHash(const FieldKey& key) {
  return std::hash<std::string>{}(EncodeFieldKey(key));
}

Result<VersionVector> Replica::Collected(ReadTxn::CollectedIn* in) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  ReplicaMeta meta;
  TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
  VersionVector out;
  TANDEM_RETURN_IF_ERROR(txn->GetCollected(&out));
  ReadTxn::CollectedIn own;
  if (!in) in = &own;
  TANDEM_RETURN_IF_ERROR(txn->GetCollectedIn(in));
  JoinCollectedIn(*in, meta.vv, &out);
  return out;
}

void Replica::JoinCollectedIn(const ReadTxn::CollectedIn& in, const VersionVector& vv,
                              VersionVector* out) {
  for (const auto& [collection, collected] : in) out->Merge(VersionVector::Meet(collected, vv));
}

}  // namespace tandem::engine
