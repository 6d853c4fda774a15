// Collection of field states every member holds (docs/design.md#collection).
#include <algorithm>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {

// Where a collection pass stands: the next collection (by name) and the record after which
// it goes on.
struct CollectPosition {
  std::string collection;
  std::string after;
  bool done = false;
};

}  // namespace

Status Replica::Collect(const VersionVector& absorbed, CollectStats* stats, size_t max_fields) {
  *stats = CollectStats{};
  max_fields = std::max<size_t>(max_fields, 1);
  CollectPosition at;
  while (!at.done) {
    CollectPosition next;
    CollectStats step;
    Status st = Retrying([&]() -> Status {
      next = at;
      step = CollectStats{};
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      ReplicaMeta meta;
      TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
      // What we hold ourselves bounds what we may say everyone holds.
      const VersionVector frontier = VersionVector::Meet(absorbed, meta.vv);
      VersionVector collected;
      TANDEM_RETURN_IF_ERROR(txn->GetCollected(&collected));
      if (!collected.Covers(frontier)) {
        collected.Merge(frontier);
        TANDEM_RETURN_IF_ERROR(txn->PutCollected(collected));
      }
      std::vector<std::string> collections;
      TANDEM_RETURN_IF_ERROR(txn->ListCollections(&collections));
      auto c = std::lower_bound(collections.begin(), collections.end(), next.collection);
      std::vector<std::pair<FieldKey, uint64_t>> gone;  // with its size
      for (; c != collections.end() && step.examined < max_fields; ++c) {
        if (*c != next.collection) next = CollectPosition{*c, "", false};
        bool whole = true;
        Status bad;
        TANDEM_RETURN_IF_ERROR(
            txn->ScanRecords(*c, next.after, [&](const std::string& id, RecordState& r) {
              for (const auto& [name, state] : r.fields) {
                ++step.examined;
                if (!Collectable(state, frontier)) continue;
                auto bytes = EncodeFieldState(state);
                if (!bytes.ok()) {
                  bad = bytes.status();
                  return false;
                }
                gone.emplace_back(FieldKey{*c, id, name},
                                  bytes->size() + c->size() + id.size() + name.size());
              }
              next.after = id;
              if (step.examined < max_fields) return true;
              whole = false;
              return false;
            }));
        TANDEM_RETURN_IF_ERROR(bad);
        if (!whole) break;
        next.after.clear();
        next.collection = *c + '\0';  // the next collection sorts at or after this
      }
      if (c == collections.end()) next.done = true;
      for (const auto& [key, size] : gone) {
        bool deleted = false;
        TANDEM_RETURN_IF_ERROR(txn->DeleteField(key, &deleted));
        if (deleted) {
          ++step.collected;
          step.bytes += size;
        } else {
          ++step.kept_newest;
        }
      }
      return txn->Commit();
    });
    TANDEM_RETURN_IF_ERROR(st.With("collect"));
    at = std::move(next);
    stats->examined += step.examined;
    stats->collected += step.collected;
    stats->bytes += step.bytes;
    stats->kept_newest += step.kept_newest;
    ++stats->transactions;
  }
  return Status::Ok();
}

Result<VersionVector> Replica::Collected() {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  VersionVector out;
  TANDEM_RETURN_IF_ERROR(txn->GetCollected(&out));
  return out;
}

}  // namespace tandem::engine
