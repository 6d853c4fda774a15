// A node's view of the group's authority: the trust set and write limits it judges
// sessions by, its own binding, the group key (taken when a rotation reaches it, rotated
// again when in doubt), and the changes held until they can be judged.
#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)

namespace tandem::net {

void Core::PublishBinding() {
  auto meta = replica_.Meta();
  if (!meta.ok() || meta->id == published_) return;
  if (auto st = PublishOwnBinding(replica_, opt_.files.bindings); !st.ok()) {
    Log("cannot publish this replica's binding: " + st.status().ToString(), LogLevel::kError);
    return;
  }
  published_ = meta->id;  // bound now, or an id from before bindings
}

void Core::RefreshTrust() {
  // The log as far as this judgement covers (read before it: what it reads is newer).
  uint64_t upto = 0;
  if (auto txn = replica_.store().BeginRead(); !txn.ok() || !(*txn)->LastLogSeq(&upto).ok()) {
    Log("cannot read the replica's log to judge the group's authority", LogLevel::kError);
    return;
  }
  auto a = ReadAuthority(replica_, opt_.files, &verified_);
  if (!a.ok()) {
    Log("cannot read the group's authority: " + a.status().ToString(), LogLevel::kError);
    return;
  }
  auto c = RevocationCutoffs(replica_, *a);
  auto w = WriteLimitsOf(replica_, *a);
  if (!c.ok() || !w.ok()) {
    Log("cannot read the revocation cutoffs: " + (c.ok() ? w.status() : c.status()).ToString(),
        LogLevel::kError);
    return;
  }
  RefreshGroupKey(*a);
  bool judge = false;
  {
    std::lock_guard lock(trust_mu_);
    // Unless the storage worker read newer ones meanwhile (ReadLimitsNow).
    if (upto >= limits_upto_) {
      cutoffs_ = std::move(*c);
      limits_ = std::move(*w);
      limits_upto_ = upto;
      limits_authority_ = *a;
    }
    root_ = a->legacy ? std::nullopt : std::optional<Key32>(a->root);
    authority_ = std::move(*a);
    trusted_upto_.store(upto, std::memory_order_release);
    // New bindings (or new members to bind to): held states may go now, and a founder
    // may now require bound replicas.
    judge = limits_.bound != judged_bound_;
    if (judge) judged_bound_ = limits_.bound;
  }
  if (!judge) return;
  if (authority_.bindings_required) {
    JudgeHeld();
  } else if (!authority_.legacy && authority_.root == self_.public_key) {
    // Also at start (nothing judged yet): the founder requires them as soon as it can,
    // judging also what the peers in session hold, not applied here yet (a device that
    // joined with --merge brings another group's writers).
    std::vector<engine::VersionVector> in_sessions;
    for (const auto& conn : conns_)
      if (conn->has_session()) in_sessions.push_back(conn->view().peer_vv);
    asio::post(*work_io_, [this, a = authority_, in_sessions = std::move(in_sessions)] {
      auto signed_now = RequireBindings(replica_, a, self_, WallMs(), in_sessions);
      asio::post(io_, [this, signed_now = std::move(signed_now)]() mutable {
        if (!signed_now.ok())
          Log("cannot require bound replicas: " + signed_now.status().ToString(), LogLevel::kError);
        else if (*signed_now)
          Log("every member's replicas are bound: this group requires bound replicas now");
      });
    });
  }
}

void Core::JudgeHeld() {
  asio::post(*work_io_, [this] { JudgeHeldNow(); });
}

void Core::JudgeHeldNow() {
  // Held states stay held if this fails (a full disk, say): the next batch or bindings
  // judge them again.
  if (Status st = TryJudgeHeld(); !st.ok())
    asio::post(io_, [this, st] {
      Log("cannot judge the held changes again: " + st.ToString(), LogLevel::kError);
    });
}

Status Core::TryJudgeHeld() {
  // As a session would judge them now (Session::Apply, SessionOptionsFor): by the
  // authority the limits were read under (a session's statements are read as soon as it
  // takes them: ReadLimitsNow), with the bindings read again, since the batch just
  // applied may have brought some.
  Authority a;
  {
    std::lock_guard lock(trust_mu_);
    if (!limits_authority_.bindings_required) return Status::Ok();  // nothing is held
    a = limits_authority_;
  }
  TANDEM_ASSIGN_OR_RETURN(auto cutoffs, RevocationCutoffs(replica_, a));
  TANDEM_ASSIGN_OR_RETURN(auto limits, WriteLimitsOf(replica_, a));
  TANDEM_ASSIGN_OR_RETURN(auto judged,
                          JudgeHeldChanges(replica_, cutoffs, limits, WithSystem(opt_.receive)));
  if (judged.applied + judged.refused)
    asio::post(io_, [this, judged] {
      Log("judged the held changes again: applied " + std::to_string(judged.applied) +
          ", refused " + std::to_string(judged.refused) + ", still held " +
          std::to_string(judged.held));
    });
  return Status::Ok();
}

Status Core::ReadLimitsNow() {
  uint64_t upto = 0;
  {
    TANDEM_ASSIGN_OR_RETURN(auto txn, replica_.store().BeginRead());
    TANDEM_RETURN_IF_ERROR(txn->LastLogSeq(&upto));
  }
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(replica_, opt_.files, &worker_verified_));
  TANDEM_ASSIGN_OR_RETURN(auto cutoffs, RevocationCutoffs(replica_, a));
  TANDEM_ASSIGN_OR_RETURN(auto limits, WriteLimitsOf(replica_, a));
  std::lock_guard lock(trust_mu_);
  if (upto >= limits_upto_) {  // else RefreshTrust read newer ones meanwhile
    cutoffs_ = std::move(cutoffs);
    limits_ = std::move(limits);
    limits_upto_ = upto;
    limits_authority_ = std::move(a);
  }
  return Status::Ok();
}

void Core::RefreshGroupKey(const Authority& a) {
  // A rotation that reached us: the new key from now on (the old one retired).
  auto adopted = AdoptGroupKey(a, opt_.files, self_, WallMs());
  if (!adopted.ok()) {
    Log("cannot take the new group key: " + adopted.status().ToString(), LogLevel::kError);
  } else if (*adopted) {
    RefreshKeys();
    Log("the group key was rotated: using the new one from now on");
  }
  // A key in force that a device revoked since may hold, or that of a rotation that does
  // not count: an admin or the owner rotates it again (several may at once; the last
  // rotation that counts is then sealed to members in good standing alone).
  if (std::string doubt = KeyInDoubt(a);
      !doubt.empty() && !rekeying_ &&
      a.Rank(DeviceId(self_.public_key)) >= static_cast<int>(Role::kAdmin)) {
    rekeying_ = true;
    asio::post(*work_io_, [this, doubt] {
      Status st = RotateGroupKey(replica_, opt_.files, self_, WallMs());
      asio::post(io_, [this, st, doubt] {
        rekeying_ = false;
        if (!st.ok()) {
          Log("cannot rotate the group key (" + doubt + "): " + st.ToString(), LogLevel::kError);
          return;
        }
        RefreshKeys();
        Log(doubt + ": rotated it; using the new one from now on");
      });
    });
  }
}

}  // namespace tandem::net
