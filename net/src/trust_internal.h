// What trust.cc and founder.cc share: the trust records as members wrote them, and the
// signing of a statement. Not part of the net/ interface.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "tandem/net/group.h"

namespace tandem::net {

// The unsigned trust records (kDevicesCollection) that are valid, each with the
// replicas its device syncs as: those bound to it (binding.h), and those its hints name
// that no binding gives to another device. `bound` (optional) receives the bindings.
Result<std::vector<Member>> Records(engine::Replica& r,
                                    std::map<engine::ReplicaId, std::string>* bound = nullptr);
// The replicas of every device with a record or a bound replica, as Records says;
// *bindings (if given) gets the verified bindings read on the way (replica -> device).
Result<std::map<std::string, std::vector<engine::ReplicaId>>> ReplicasByDevice(
    engine::Replica& r, std::map<engine::ReplicaId, std::string>* bindings = nullptr);
// The replicas bound to a device the statements name (a revoked one too): the only
// bindings that say whose events a replica's are, since anyone can make a key and bind
// a replica to it.
std::set<engine::ReplicaId> BoundToMembers(const std::map<engine::ReplicaId, std::string>& bindings,
                                           const Authority& a);
// The statement made by `self` now: its parents are the current heads.
Status Sign(engine::Replica& r, const Identity& self, const Authority& a, Statement s,
            uint64_t now_ms);

}  // namespace tandem::net
