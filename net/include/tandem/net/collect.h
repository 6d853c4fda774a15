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
  uint64_t reported_ms = 0;                  // 0: no report yet (on the reporter's clock)
  uint64_t since_ms = 0;                     // a member since (for one without a report)
  // When this replica first held that report (or, without one, first knew of the
  // member), on its own clock: what the horizon is judged from.
  uint64_t heard_ms = 0;
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
//
// A member is silent past the horizon when this replica first held its newest report
// (or, without one, first knew of it) longer ago than the horizon, by this replica's
// clock: a reporter's clock days behind would otherwise make it look silent at once, and
// one years ahead would hold collection back for years. The times are kept in
// `files.heard` (a report not in it is heard now); `note` writes those heard now into it
// (a replica opened only to be read passes false). A report relayed late only looks
// newer, which holds collection back longer, never less.
Result<GroupHolding> HeldByMembers(engine::Replica& r, const GroupPaths& files,
                                   const std::string& self, uint64_t now_ms,
                                   uint64_t horizon_ms = kDefaultHorizonMs, bool note = false);

// Notes when this replica first held the members' reports (HeldByMembers with `note`).
Status NoteReportsHeard(engine::Replica& r, const GroupPaths& files, const std::string& self,
                        uint64_t now_ms);
// Reports, then notes the reports heard, as a node does between collections and a
// one-shot sync at its end.
Status ReportAndNote(engine::Replica& r, const GroupPaths& files, const std::string& self,
                     uint64_t now_ms);

// Reports, then collects what every member holds (engine::Replica::Collect).
struct GroupCollect {
  GroupHolding holding;
  engine::Replica::CollectStats stats;
};
Result<GroupCollect> CollectGroup(engine::Replica& r, const GroupPaths& files,
                                  const std::string& self, uint64_t now_ms,
                                  uint64_t horizon_ms = kDefaultHorizonMs);

}  // namespace tandem::net
