#include "tandem/net/collect.h"

#include <algorithm>

#include "tandem/engine/codec.h"

namespace tandem::net {

namespace {

using engine::Value;
using engine::VersionVector;

// A version vector without one replica's entry.
VersionVector Without(VersionVector vv, const engine::ReplicaId& id) {
  vv.Cap(id, 0);
  return vv;
}

struct StoredReport {
  engine::ReplicaId replica;
  VersionVector vv;
  uint64_t ms = 0;
};

// A report record, if well formed.
std::optional<StoredReport> ParseReport(const engine::Record& rec) {
  auto id = engine::ReplicaId::FromHex(rec.id);
  auto vv = rec.fields.find("vv");
  auto ms = rec.fields.find("ms");
  if (!id.ok() || vv == rec.fields.end() || ms == rec.fields.end()) return std::nullopt;
  const auto* bytes = std::get_if<engine::Bytes>(&vv->second.scalar);
  const auto* when = std::get_if<int64_t>(&ms->second.scalar);
  if (!bytes || !when || *when < 0) return std::nullopt;
  engine::Reader in(bytes->data);
  StoredReport s{*id, engine::DecodeVersionVector(in), static_cast<uint64_t>(*when)};
  if (!in.ok() || in.remaining()) return std::nullopt;
  return s;
}

// The well-formed reports held, by replica.
Result<std::map<engine::ReplicaId, StoredReport>> ReadReports(engine::Replica& r) {
  std::map<engine::ReplicaId, StoredReport> out;
  TANDEM_RETURN_IF_ERROR(r.Scan(kReportsCollection, "", [&](const engine::Record& rec) {
    if (auto s = ParseReport(rec)) out[s->replica] = std::move(*s);
    return true;
  }));
  return out;
}

}  // namespace

Result<bool> Report(engine::Replica& r, uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  // Our own report only: one record, not every member's.
  std::optional<StoredReport> last;
  if (auto rec = r.Get(kReportsCollection, meta.id.Hex()); rec.ok())
    last = ParseReport(*rec);
  else if (rec.status().code() != Code::kNotFound)
    return rec.status();
  if (last && Without(last->vv, meta.id) == Without(meta.vv, meta.id)) return false;
  std::string bytes;
  engine::Writer w(&bytes);
  engine::EncodeVersionVector(meta.vv, w);
  TANDEM_RETURN_IF_ERROR(r.Put(kReportsCollection, meta.id.Hex(),
                               {{"vv", Value(engine::Bytes{std::move(bytes)})},
                                {"ms", Value(static_cast<int64_t>(now_ms))}}));
  return true;
}

engine::Admission AdmitReport(const engine::FieldDelta& d) {
  if (d.key.collection != kReportsCollection) return engine::Admission::kAccept;
  auto id = engine::ReplicaId::FromHex(d.key.record);
  if (!id.ok()) return engine::Admission::kRefuse;
  for (const auto& [dot, marker] : d.state.markers)
    if (dot.replica != *id) return engine::Admission::kRefuse;
  for (const auto& [element, dots] : d.state.elements)
    for (const auto& dot : dots)
      if (dot.replica != *id) return engine::Admission::kRefuse;
  return engine::Admission::kAccept;
}

Result<GroupHolding> HeldByMembers(engine::Replica& r, const GroupPaths& files,
                                   const std::string& self, uint64_t now_ms, uint64_t horizon_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  TANDEM_ASSIGN_OR_RETURN(auto members, Members(r, files));
  TANDEM_ASSIGN_OR_RETURN(auto reports, ReadReports(r));
  GroupHolding out;
  bool first = true;
  bool held_back = false;
  // A replica holds every event of its own, whatever its report says of them.
  auto meet = [&](VersionVector vv, const engine::ReplicaId& own) {
    vv.Raise(own, UINT64_MAX);
    if (first) {
      out.absorbed = vv;
      first = false;
      return;
    }
    out.absorbed = VersionVector::Meet(out.absorbed, vv);
  };
  bool self_listed = false;
  for (const auto& m : members) {
    if (m.revoked) continue;
    MemberHolding h;
    h.device = m.device;
    h.since_ms = m.added_ms;
    h.self = m.device == self;
    // Its newest report, over every replica it synced as.
    for (const auto& id : m.replicas) {
      auto rep = reports.find(id);
      if (rep == reports.end() || rep->second.ms < h.reported_ms) continue;
      h.replica = id;
      h.vv = rep->second.vv;
      h.reported_ms = rep->second.ms;
    }
    if (h.self) {
      self_listed = true;
      h.replica = meta.id;
      h.vv = meta.vv;
      meet(h.vv, meta.id);
    } else if (h.reported_ms) {
      h.stale = now_ms > h.reported_ms && now_ms - h.reported_ms > horizon_ms;
      if (!h.stale) meet(h.vv, *h.replica);
    } else {
      h.stale = now_ms > h.since_ms && now_ms - h.since_ms > horizon_ms;
      if (!h.stale) held_back = true;
    }
    out.members.push_back(std::move(h));
  }
  if (!self_listed) {
    MemberHolding h;
    h.device = self;
    h.self = true;
    h.replica = meta.id;
    h.vv = meta.vv;
    meet(h.vv, meta.id);
    out.members.insert(out.members.begin(), std::move(h));
  }
  if (held_back) out.absorbed = VersionVector();
  // Only what we hold ourselves (Collect caps it so too): no entry stays unbounded.
  out.absorbed = VersionVector::Meet(out.absorbed, meta.vv);
  return out;
}

Result<GroupCollect> CollectGroup(engine::Replica& r, const GroupPaths& files,
                                  const std::string& self, uint64_t now_ms, uint64_t horizon_ms) {
  TANDEM_RETURN_IF_ERROR(Report(r, now_ms).status());
  GroupCollect out;
  TANDEM_ASSIGN_OR_RETURN(out.holding, HeldByMembers(r, files, self, now_ms, horizon_ms));
  TANDEM_RETURN_IF_ERROR(r.Collect(out.holding.absorbed, &out.stats));
  return out;
}

}  // namespace tandem::net
