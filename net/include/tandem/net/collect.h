// Collection across a group (docs/design.md#collection): each replica reports what it
// holds, reports spread with sync like any record, and a replica collects what every
// member of the group has reported holding.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/net/group.h"

namespace tandem::net {

// One record per replica, id = its replica id in hex: "vv" (bytes: its version vector,
// engine::EncodeVersionVector) and "ms" (its wall clock when it wrote the report). A
// replica writes only its own (AdmitReport).
inline constexpr char kReportsCollection[] = "_tandem_reports";

// A member silent for longer than this stops holding collection back.
inline constexpr uint64_t kDefaultHorizonMs = 30ull * 24 * 3600 * 1000;

// Writes this replica's report when its version vector moved since its last one. Its own
// entry aside: writing the report moves it, and a replica holds all of its own events
// anyway (HeldByMembers counts them so). True if it wrote one.
Result<bool> Report(engine::Replica& r, uint64_t now_ms);

// What a receiver does with a field state of kReportsCollection (kAccept for others): a
// report carries only operations of the replica it is for.
engine::Admission AdmitReport(const engine::FieldDelta& d);

struct MemberHolding {
  std::string device;
  bool self = false;
  std::optional<engine::ReplicaId> replica;  // of its newest report
  engine::VersionVector vv;                  // what it reported holding (ours: what we hold)
  uint64_t reported_ms = 0;                  // 0: no report yet
  uint64_t since_ms = 0;                     // a member since (for one without a report)
  // Silent past the horizon: left out. It may come back holding records deleted since;
  // what this replica collected never comes back through it.
  bool stale = false;
};
struct GroupHolding {
  engine::VersionVector absorbed;  // what every member that counts holds
  std::vector<MemberHolding> members;
};

// What the members of the group (`self`: this device's id) hold, by their newest reports.
// A member without a report, added within the horizon, holds everything back.
Result<GroupHolding> HeldByMembers(engine::Replica& r, const GroupPaths& files,
                                   const std::string& self, uint64_t now_ms,
                                   uint64_t horizon_ms = kDefaultHorizonMs);

// Reports, then collects what every member holds (engine::Replica::Collect).
struct GroupCollect {
  GroupHolding holding;
  engine::Replica::CollectStats stats;
};
Result<GroupCollect> CollectGroup(engine::Replica& r, const GroupPaths& files,
                                  const std::string& self, uint64_t now_ms,
                                  uint64_t horizon_ms = kDefaultHorizonMs);

}  // namespace tandem::net
