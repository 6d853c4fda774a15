#include "tandem/net/collect.h"

#include <algorithm>
#include <sstream>

#include "tandem/engine/codec.h"
#include "tandem/files/files.h"

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

// What `GroupPaths::heard` holds, one line each: a key (a replica id in hex for a
// report, a device id for a member without one), what identifies the report (its
// clock and the sum of its vector's entries, which grows with every new report; the
// admission time and 0 for a member), and when this replica first held it. A cache: a
// line lost or unreadable is heard again now, which only holds collection back longer.
struct Heard {
  uint64_t stamp = 0, sum = 0, heard_ms = 0;
};
constexpr size_t kMaxHeardFile = 4 << 20;

std::map<std::string, Heard> ReadHeard(const std::string& path) {
  std::map<std::string, Heard> out;
  if (path.empty()) return out;
  auto text = files::ReadSmall(path, kMaxHeardFile);
  if (!text.ok()) return out;
  std::istringstream in(*text);
  std::string key;
  Heard h;
  while (in >> key >> h.stamp >> h.sum >> h.heard_ms) out[key] = h;
  return out;
}

uint64_t Sum(const VersionVector& vv) {
  uint64_t sum = 0;
  for (const auto& [id, seq] : vv.entries()) sum += seq;
  return sum;
}

// When this replica first held what `key` names, recording it as heard now if it is new
// (or was heard at a time this replica's clock has not reached: a clock set back).
uint64_t HeardAt(std::map<std::string, Heard>& heard, std::map<std::string, Heard>& seen,
                 bool& changed, const std::string& key, uint64_t stamp, uint64_t sum,
                 uint64_t now_ms) {
  constexpr uint64_t kDayMs = 24 * 3600 * 1000;
  auto it = heard.find(key);
  Heard h{stamp, sum, now_ms};
  if (it != heard.end() && it->second.stamp == stamp && it->second.sum == sum &&
      it->second.heard_ms <= now_ms + kDayMs)
    h.heard_ms = it->second.heard_ms;
  else
    changed = true;
  seen[key] = h;
  return h.heard_ms;
}

void WriteHeard(const std::string& path, const std::map<std::string, Heard>& seen) {
  std::string text;
  for (const auto& [key, h] : seen)
    text += key + " " + std::to_string(h.stamp) + " " + std::to_string(h.sum) + " " +
            std::to_string(h.heard_ms) + "\n";
  // Best effort: lost, the reports are heard again later. Written only when a report is
  // new, so rarely; durable, which also sweeps what a killed writer left.
  (void)files::WriteAtomic(path, text, files::Sync::kDurable, 0644);
}

}  // namespace

Result<bool> Report(engine::Replica& r, uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  // What it holds, with what filtered sessions bore out (ReplicaMeta::Holding): a
  // collection it does not take holds no one's collection back; should it take one later,
  // its session rebases unless its vector alone covers what the peer collected.
  // Our own report only: one record, not every member's.
  std::optional<StoredReport> last;
  if (auto rec = r.Get(kReportsCollection, meta.id.Hex()); rec.ok())
    last = ParseReport(*rec);
  else if (rec.status().code() != Code::kNotFound)
    return rec.status();
  const VersionVector holding = meta.Holding();
  if (last && Without(last->vv, meta.id) == Without(holding, meta.id)) return false;
  std::string bytes;
  engine::Writer w(&bytes);
  engine::EncodeVersionVector(holding, w);
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
                                   const std::string& self, uint64_t now_ms, uint64_t horizon_ms,
                                   bool note) {
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  TANDEM_ASSIGN_OR_RETURN(auto members, Members(r, files));
  TANDEM_ASSIGN_OR_RETURN(auto reports, ReadReports(r));
  auto heard = ReadHeard(files.heard);
  std::map<std::string, Heard> seen;
  bool changed = false;
  // Without a file of its own, a replica takes the reporters' clocks.
  auto heard_at = [&](const std::string& key, uint64_t stamp, uint64_t sum) {
    return files.heard.empty() ? stamp : HeardAt(heard, seen, changed, key, stamp, sum, now_ms);
  };
  const auto past_horizon = [&](uint64_t at) { return now_ms > at && now_ms - at > horizon_ms; };
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
    // Its newest report, over every replica it synced as: the one this replica heard
    // last (a report from a clock years ahead, of a replica the device no longer syncs
    // as, must not stand for the one it sends now), then by its own clock.
    for (const auto& id : m.replicas) {
      auto rep = reports.find(id);
      if (rep == reports.end() || h.self) continue;
      const uint64_t at = heard_at(id.Hex(), rep->second.ms, Sum(rep->second.vv));
      if (h.replica && (at < h.heard_ms || (at == h.heard_ms && rep->second.ms < h.reported_ms)))
        continue;
      h.replica = id;
      h.vv = rep->second.vv;
      h.reported_ms = rep->second.ms;
      h.heard_ms = at;
    }
    if (h.self) {
      self_listed = true;
      h.replica = meta.id;
      h.vv = meta.Holding();
      meet(h.vv, meta.id);
    } else if (h.replica) {
      h.stale = past_horizon(h.heard_ms);
      if (!h.stale) meet(h.vv, *h.replica);
    } else {
      h.heard_ms = heard_at(h.device, h.since_ms, 0);
      h.stale = past_horizon(h.heard_ms);
      if (!h.stale) held_back = true;
    }
    out.members.push_back(std::move(h));
  }
  if (!self_listed) {
    MemberHolding h;
    h.device = self;
    h.self = true;
    h.replica = meta.id;
    h.vv = meta.Holding();
    meet(h.vv, meta.id);
    out.members.insert(out.members.begin(), std::move(h));
  }
  // Lines for members gone from the trust set (or revoked) go with the rewrite.
  if (note && !files.heard.empty() && (changed || seen.size() != heard.size()))
    WriteHeard(files.heard, seen);
  if (held_back) out.absorbed = VersionVector();
  // Only what we hold ourselves (Collect caps it so too, collection by collection): no
  // entry stays unbounded.
  out.absorbed = VersionVector::Meet(out.absorbed, meta.Holding());
  return out;
}

Status NoteReportsHeard(engine::Replica& r, const GroupPaths& files, const std::string& self,
                        uint64_t now_ms) {
  return HeldByMembers(r, files, self, now_ms, kDefaultHorizonMs, true).status();
}

Status ReportAndNote(engine::Replica& r, const GroupPaths& files, const std::string& self,
                     uint64_t now_ms) {
  TANDEM_RETURN_IF_ERROR(Report(r, now_ms).status());
  return NoteReportsHeard(r, files, self, now_ms);
}

Result<GroupCollect> CollectGroup(engine::Replica& r, const GroupPaths& files,
                                  const std::string& self, uint64_t now_ms, uint64_t horizon_ms) {
  TANDEM_RETURN_IF_ERROR(Report(r, now_ms).status());
  GroupCollect out;
  TANDEM_ASSIGN_OR_RETURN(out.holding, HeldByMembers(r, files, self, now_ms, horizon_ms, true));
  TANDEM_RETURN_IF_ERROR(r.Collect(out.holding.absorbed, &out.stats));
  return out;
}

}  // namespace tandem::net
