// The writes that give a replica a new id, or stamp where it lives (its origin), each
// in a transaction of its own.
#include <functional>
#include <string>

#include "lmdb_internal.h"
#include "tandem/engine/replica.h"
#include "tandem/storage/lmdb_store.h"

namespace tandem::storage {

namespace {
// Runs `write` in a write transaction until it does not find the map grown under it
// (kBusy), a few dozen times at most.
Status WriteOnce(LmdbStore& store, const std::function<Status(engine::WriteTxn&)>& write) {
  Status st;
  for (int attempt = 0; attempt < 32; ++attempt) {
    st = [&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store.BeginWrite());
      return write(*txn);
    }();
    if (st.code() != Code::kBusy) break;
  }
  return st;
}
}  // namespace

Status TakeNewId(LmdbStore& store, const Options& opt, const engine::ReplicaId& only_if) {
  auto take = [&](engine::WriteTxn& w) -> Status {
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(w.GetMeta(&meta));
    // Another process replaced it first, or it issued something meanwhile: keep it.
    if (meta.id != only_if || meta.vv.Get(meta.id) != 0) return Status::Ok();
    engine::TakeNewReplicaId(meta, opt.new_ids ? opt.new_ids : RandomReplicaId);
    TANDEM_RETURN_IF_ERROR(w.PutMeta(meta));
    return w.Commit();
  };
  return WriteOnce(store, take).With("take a new replica id");
}

Status StampOrigin(LmdbStore& store, Stamp how, const Options& opt) {
  TANDEM_ASSIGN_OR_RETURN(std::string here,
                          Fingerprint(store.dir(), true, opt.without_birth_times));
  auto stamp = [&](engine::WriteTxn& w) -> Status {
    std::string origin;
    TANDEM_RETURN_IF_ERROR(GetOrigin(w, &origin));
    if (origin == here && how != Stamp::kForceRekey) return Status::Ok();
    // Another process made the origin file of a replica that adopts meanwhile.
    const bool adopt = how == Stamp::kAdopt || (how == Stamp::kRekey && AdoptsFrom(origin, here));
    if (!adopt) {
      ReplicaMeta meta;
      TANDEM_RETURN_IF_ERROR(w.GetMeta(&meta));
      engine::TakeNewReplicaId(meta, opt.new_ids ? opt.new_ids : RandomReplicaId);
      TANDEM_RETURN_IF_ERROR(w.PutMeta(meta));
    }
    TANDEM_RETURN_IF_ERROR(PutOrigin(w, here));
    return w.Commit();
  };
  return WriteOnce(store, stamp).With("record the replica's location");
}

}  // namespace tandem::storage
