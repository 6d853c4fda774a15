// The CLI's commands on where changes are: quarantine (changes from peers held here)
// and where (which devices hold a record).
#include <algorithm>
#include <set>

#include "cli.h"

namespace tandem::cli {

int RunQuarantine(const std::string& dir, std::vector<uint64_t> release_ids, bool release_all) {
  auto d = release_all || !release_ids.empty() ? OpenDevice(dir) : InspectDevice(dir);
  auto& r = d->replica();
  if (release_all) {
    const uint64_t n = Check(r.ReleaseAllQuarantined());
    std::fprintf(stderr, "released %llu held changes: applied\n",
                 static_cast<unsigned long long>(n));
    return 0;
  }
  std::sort(release_ids.begin(), release_ids.end());
  release_ids.erase(std::unique(release_ids.begin(), release_ids.end()), release_ids.end());
  for (uint64_t qid : release_ids) {
    Check(r.ReleaseQuarantined(qid));
    std::fprintf(stderr, "released %llu: applied\n", static_cast<unsigned long long>(qid));
  }
  if (!release_ids.empty()) return 0;
  auto device_of = DeviceOfReplica(*d);
  const auto entries = Check(r.Quarantined());
  // The replicas a held change waits for: those no binding to a member names.
  std::set<engine::ReplicaId> bound;
  if (std::any_of(entries.begin(), entries.end(), [](const auto& e) { return e.held; }))
    bound = Check(net::WriteLimitsOf(r, Check(d->Authority()))).bound;
  for (const auto& e : entries) {
    Json waits = Json::array();
    if (e.held)
      for (const auto& [rid, n] : e.state.ctx.entries())
        if (!bound.count(rid)) waits.push_back(rid.Hex());
    // A state held in its pieces is listed by its outline: its values are not read.
    Json values = Json::array();
    if (!e.pieces)
      for (const auto& sib : engine::Siblings(e.state))
        if (sib.kind == engine::Kind::kRegister)
          values.push_back(tandem::bindings::ValueToJson(sib.value));
    if (!e.pieces)
      for (const auto& [element, dots] : e.state.elements)
        values.push_back(tandem::bindings::ValueToJson(element));
    Json j{{"id", e.id},
           {"collection", e.key.collection},
           {"record", e.key.record},
           {"field", e.key.field},
           {"from_replica", e.from.Hex()},
           {"from_device", device_of.count(e.from.Hex()) ? device_of[e.from.Hex()] : ""},
           {"received_ms", e.received_ms},
           {"reason", e.reason},
           {"awaiting_binding", e.held},
           {"unbound_writers", waits},
           {"values", values}};
    if (e.pieces) j["in_pieces_bytes"] = e.pieces->size;
    Print(Canonical(j));
  }
  return 0;
}

void PrintWhere(const std::string& dir, const std::string& coll, const std::string& id,
                bool as_json) {
  auto d = InspectDevice(dir);
  for (const auto& h : Check(d->Where(coll, id))) {
    const char* state = h.state == tandem::device::Holding::State::kHolds   ? "holds"
                        : h.state == tandem::device::Holding::State::kLacks ? "lacks"
                                                                            : "unknown";
    if (as_json) {
      Json j{{"device", h.device},  {"this_device", h.this_device}, {"revoked", h.revoked},
             {"state", state},      {"receives", h.receives},       {"reported_ms", h.reported_ms},
             {"relayed", h.relayed}};
      Print(Canonical(j));
      continue;
    }
    std::string line = (h.device.empty() ? std::string("(this replica)") : h.device) + "  ";
    if (h.this_device) {
      line += "holds it       (this device)";
    } else if (h.state == tandem::device::Holding::State::kUnknown) {
      line += "unknown        (never synced with this device, and no report of it here)";
    } else {
      line += std::string(h.state == tandem::device::Holding::State::kHolds ? "holds it     "
                          : h.receives                                      ? "not yet      "
                                                                            : "never        ") +
              "  (as of its report " + Ago(h.reported_ms) + (h.relayed ? ", relayed" : "") +
              (h.receives ? ")" : "; it does not receive " + Printable(coll) + " from here)");
    }
    if (h.revoked) line += "  revoked";
    Print(line);
  }
}

}  // namespace tandem::cli
