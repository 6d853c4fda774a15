// `tandem gc`: report what this replica holds, collect what every member holds, and say
// what was freed and which members hold collection back.
#include "tandem/net/collect.h"

#include <ctime>

#include "cli.h"
#include "tandem/storage/lmdb_store.h"

namespace tandem::cli {

namespace {

std::string When(uint64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::string ReportLine(const net::MemberHolding& h) {
  if (h.self) return "holds what this replica holds";
  if (!h.reported_ms)
    return h.stale ? "never reported, a member past the horizon: left out"
                   : "no report yet: holds collection back";
  return "reported " + When(h.reported_ms) + (h.stale ? ", past the horizon: left out" : "");
}

std::string RebaseNote(const Json& peer) {
  const uint64_t ours = peer.value("rebases", uint64_t{0});
  const uint64_t served = peer.value("rebases_served", uint64_t{0});
  if (!ours && !served) return "";
  return "  rebased " + std::to_string(ours) + ", served " + std::to_string(served);
}

int RunGc(const std::string& dir, int horizon_days, bool as_json) {
  auto d = OpenDevice(dir);
  const uint64_t horizon_ms = static_cast<uint64_t>(horizon_days) * 24 * 3600 * 1000;
  auto done = Check(net::CollectGroup(d->replica(), d->layout().group(), d->device_id(),
                                      storage::SystemClockMs(), horizon_ms));
  const auto& s = done.stats;
  auto* lmdb = dynamic_cast<storage::LmdbStore*>(&d->replica().store());
  const uint64_t data_bytes = lmdb ? Check(lmdb->DataBytes()) : 0;
  if (as_json) {
    Json members = Json::array();
    for (const auto& h : done.holding.members)
      members.push_back(Json{{"device", h.device},
                             {"self", h.self},
                             {"reported_ms", h.reported_ms},
                             {"stale", h.stale},
                             {"holds_back", !h.self && !h.reported_ms && !h.stale}});
    Print(Canonical(Json{{"collected", s.collected},
                         {"bytes", s.bytes},
                         {"examined", s.examined},
                         {"kept_newest", s.kept_newest},
                         {"transactions", s.transactions},
                         {"data_bytes", data_bytes},
                         {"members", members}}));
    return 0;
  }
  Print("collected " + std::to_string(s.collected) + " deleted field states (" +
        std::to_string(s.bytes) + " bytes) of " + std::to_string(s.examined) + " examined, in " +
        std::to_string(s.transactions) + " transactions");
  if (s.kept_newest) Print("kept the newest change for the next run");
  Print("the data now takes " + std::to_string(data_bytes) +
        " bytes (the file keeps its size: later writes reuse the space; backup compacts)");
  for (const auto& h : done.holding.members)
    Print("  " + h.device + "  " + ReportLine(h) + (h.self ? " (this device)" : ""));
  return 0;
}

}  // namespace tandem::cli
