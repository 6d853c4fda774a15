// The founder's upkeep of the trust set (signing a group from before statements,
// requiring bound replicas once every writer is bound) and the rotation of the group
// key. See group.h, "The trust set".
#include <algorithm>
#include <set>

#include "tandem/net/group.h"
#include "trust_internal.h"

namespace tandem::net {

Result<bool> AdoptGroupKey(const Authority& a, const GroupPaths& files, const Identity& self,
                           uint64_t now_ms) {
  if (!a.rekey) return false;
  std::optional<Key32> key;
  for (const auto& copy : a.rekey_copies)
    if (copy.device == self.public_key) key = OpenGroupKey(copy, self);
  if (!key) return false;  // not ours to open: this device was left out of the rotation
  TANDEM_ASSIGN_OR_RETURN(auto keys, LoadGroupKeys(files));
  if (keys.current == *key) return false;
  keys.previous.erase(std::remove_if(keys.previous.begin(), keys.previous.end(),
                                     [&](const GroupKeys::Retired& r) { return r.key == *key; }),
                      keys.previous.end());
  keys.previous.insert(keys.previous.begin(), {keys.current, now_ms});
  if (keys.previous.size() > kMaxRetiredKeys) keys.previous.resize(kMaxRetiredKeys);
  keys.current = *key;
  TANDEM_RETURN_IF_ERROR(SaveGroupKeys(files, keys));
  return true;
}

std::string KeyInDoubt(const Authority& a) {
  if (a.legacy) return {};
  if (!a.rekey) return a.void_rekey ? "a group key from a statement that does not count" : "";
  for (const auto& copy : a.rekey_copies)
    if (const Standing* d = a.Find(DeviceId(copy.device)); d && d->revoked)
      return "the group key was sealed to " + d->device + ", revoked since";
  return {};
}

Status RotateGroupKey(engine::Replica& r, const GroupPaths& files, const Identity& self,
                      uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  if (a.legacy) return Status::Ok();  // unsigned groups keep their key
  const std::string me = DeviceId(self.public_key);
  if (a.Rank(me) < static_cast<int>(Role::kAdmin))
    return Status::Unauthorized("only admins and owners change the group key");
  Statement st;
  st.kind = StatementKind::kRekey;
  const Key32 key = NewGroupKey();
  for (const auto& [device, d] : a.devices)
    if (!d.revoked) st.sealed.push_back(SealGroupKey(key, d.key));
  std::sort(st.sealed.begin(), st.sealed.end(),
            [](const SealedKey& x, const SealedKey& y) { return x.device < y.device; });
  if (st.sealed.size() > kMaxSealedKeys)
    return Status::Unsupported("too many devices for one group key rotation");
  TANDEM_RETURN_IF_ERROR(Sign(r, self, a, st, now_ms));
  TANDEM_ASSIGN_OR_RETURN(a, ReadAuthority(r, files));
  return AdoptGroupKey(a, files, self, now_ms).status();
}

Status SignLegacyTrust(engine::Replica& r, const GroupPaths& files, const Identity& self,
                       uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  if (!a.legacy || a.root != self.public_key) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(auto records, Records(r));
  TANDEM_ASSIGN_OR_RETURN(auto held, ReadStatements(r));
  // One chain, each statement on the one before, in one transaction; the root file
  // last (if it is lost, ReadAuthority finds the founder's statements and saves it).
  std::vector<StatementId> parents = Evaluate(self.public_key, held).heads;
  std::map<std::string, std::map<engine::ReplicaId, uint64_t>> before;
  for (const auto& m : records) {
    if (m.revoked) continue;
    TANDEM_RETURN_IF_ERROR(ComputeCutoff(r, m.replicas, &before[m.device]));
    auto& c = before[m.device];
    while (c.size() > kMaxStatementCutoffs) c.erase(std::prev(c.end()));
  }
  TANDEM_RETURN_IF_ERROR(r.Write([&](engine::Batch& b) -> Status {
    for (const auto& m : records) {
      if (m.key == self.public_key) continue;
      Statement st;
      st.subject = m.key;
      st.time_ms = now_ms;
      st.parents = parents;
      if (st.parents.size() > kMaxStatementParents) st.parents.resize(kMaxStatementParents);
      if (m.revoked) {
        st.kind = StatementKind::kRevoke;
        st.cutoff = m.cutoff;
        while (st.cutoff.size() > kMaxStatementCutoffs) st.cutoff.erase(std::prev(st.cutoff.end()));
      } else {
        st.kind = StatementKind::kAdd;
        st.role = Role::kMember;
        // What it wrote before (a schema, say) keeps counting where members may not write.
        st.cutoff = before[m.device];
      }
      SignStatement(&st, self, self.public_key);
      const std::string e = EncodeStatement(st);
      const StatementId id = IdOf(e);
      TANDEM_RETURN_IF_ERROR(b.Put(kStatementsCollection, HexId(id), kStatementField,
                                   engine::Value(engine::Bytes{e})));
      parents = {id};
    }
    return Status::Ok();
  }));
  return SaveRoot(files, self.public_key);
}

Result<bool> RequireBindings(engine::Replica& r, const GroupPaths& files, const Identity& self,
                             uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  return RequireBindings(r, a, self, now_ms);
}

Result<bool> RequireBindings(engine::Replica& r, const Authority& a, const Identity& self,
                             uint64_t now_ms,
                             const std::vector<engine::VersionVector>& in_sessions) {
  if (a.legacy || a.root != self.public_key || a.bindings_required) return false;
  // Alone, it signs nothing: a new device's group of one, which a join will leave (its
  // statements would count nowhere else).
  if (a.devices.size() < 2) return false;
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  // Bound as receivers will judge it (WriteLimitsOf).
  std::map<engine::ReplicaId, std::string> bindings;
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasByDevice(r, &bindings));
  const std::set<engine::ReplicaId> bound = BoundToMembers(bindings, a);
  // Not while a writer is unbound (an id from before bindings, taken on a full disk, or
  // of a device of another group a `join --merge` brought): every device would hold its
  // events. Writers as the vector and the peers' last vectors name them (ours may lag
  // what a session applied).
  if (!bound.count(meta.id)) return false;
  // Nor while a member has no bound replica yet (its binding has not arrived, or it
  // runs a version from before bindings), or syncs as an unbound one.
  for (const auto& [device, d] : a.devices) {
    if (d.revoked) continue;
    const auto& ids = replicas[device];
    if (ids.empty()) return false;
    for (const auto& id : ids)
      if (!bound.count(id)) return false;
  }
  TANDEM_ASSIGN_OR_RETURN(auto peers, r.Peers());
  std::vector<const engine::VersionVector*> vectors{&meta.vv};
  for (const auto& p : peers) vectors.push_back(&p.second.vv);
  for (const auto& vv : in_sessions) vectors.push_back(&vv);
  for (const auto* vv : vectors)
    for (const auto& [id, n] : vv->entries())
      if (n && !bound.count(id)) return false;
  Statement st;
  st.kind = StatementKind::kRequireBindings;
  TANDEM_RETURN_IF_ERROR(Sign(r, self, a, st, now_ms));
  return true;
}

Status FounderUpkeep(engine::Replica& r, const GroupPaths& files, const Identity& self,
                     uint64_t now_ms) {
  TANDEM_RETURN_IF_ERROR(SignLegacyTrust(r, files, self, now_ms));
  return RequireBindings(r, files, self, now_ms).status();
}

}  // namespace tandem::net
