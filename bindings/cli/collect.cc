// `tandem gc`: report what this replica holds, collect what every member holds, and say
// what was freed and which members hold collection back.
#include "tandem/net/collect.h"

#include <ctime>
#include <iostream>
#include <unordered_set>
#include <vector>

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
  // The horizon runs from when this replica first held the report: shown where the
  // reporter's clock tells another time.
  const uint64_t gap =
      h.heard_ms > h.reported_ms ? h.heard_ms - h.reported_ms : h.reported_ms - h.heard_ms;
  const std::string heard =
      h.heard_ms && gap > 3600 * 1000 ? " (first held here " + When(h.heard_ms) + ")" : "";
  return "reported " + When(h.reported_ms) + heard +
         (h.stale ? ", past the horizon: left out" : "");
}

std::string RebaseNote(const Json& peer) {
  const uint64_t ours = peer.value("rebases", uint64_t{0});
  const uint64_t served = peer.value("rebases_served", uint64_t{0});
  const uint64_t differed = peer.value("states_differed", uint64_t{0});
  std::string out;
  if (ours || served)
    out = "  rebased " + std::to_string(ours) + ", served " + std::to_string(served);
  if (differed) out += "  data differed " + std::to_string(differed) + "x";
  return out;
}

std::string BlobNote(const Json& peer) {
  const uint64_t in = peer.value("blobs_received", uint64_t{0});
  const uint64_t out = peer.value("blobs_sent", uint64_t{0});
  if (!in && !out) return "";
  return "  blobs in " + std::to_string(in) + ", out " + std::to_string(out);
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
                             {"heard_ms", h.heard_ms},
                             {"stale", h.stale},
                             {"holds_back", !h.self && !h.reported_ms && !h.stale}});
    Print(Canonical(Json{{"collected", s.collected},
                         {"bytes", s.bytes},
                         {"examined", s.examined},
                         {"kept_newest", s.kept_newest},
                         {"waiting", s.waiting},
                         {"damaged", s.damaged},
                         {"transactions", s.transactions},
                         {"data_bytes", data_bytes},
                         {"blobs_collected", s.blobs_collected},
                         {"blob_bytes", s.blob_bytes},
                         {"blobs_released", s.blobs_released},
                         {"chunks_freed", s.chunks_freed},
                         {"members", members}}));
    return 0;
  }
  Print("collected " + std::to_string(s.collected) + " deleted field states (" +
        std::to_string(s.bytes) + " bytes) of " + std::to_string(s.examined) + " examined, in " +
        std::to_string(s.transactions) + " transactions");
  if (s.kept_newest) Print("kept the newest change for the next run");
  if (s.waiting)
    Print(std::to_string(s.waiting) +
          " deleted field states wait until every member has reported holding them (each "
          "device reports what it holds as a sync ends; the reports reach this one with the "
          "next syncs)");
  if (s.damaged)
    Print("passed over " + std::to_string(s.damaged) +
          " field values damaged on disk, and collected no blob (`tandem check` names the "
          "damage)");
  if (s.blobs_collected || s.blobs_released || s.chunks_freed)
    Print("collected " + std::to_string(s.blobs_collected) + " blobs (" +
          std::to_string(s.blob_bytes) + " bytes, " + std::to_string(s.chunks_freed) +
          " chunks freed); " + std::to_string(s.blobs_released) +
          " unreferenced blobs wait until every member holds what replaced them");
  Print("the data now takes " + std::to_string(data_bytes) +
        " bytes (the file keeps its size: later writes reuse the space; backup compacts)");
  for (const auto& h : done.holding.members)
    Print("  " + h.device + "  " + ReportLine(h) + (h.self ? " (this device)" : ""));
  return 0;
}

// `del DIR COLL -`: deletes the records whose ids stdin lists, one per line (repeats
// count once), 1,000 per transaction. When every line ends in CR (a file saved with CRLF
// line ends), the CRs are dropped; otherwise a CR is part of its id, as record ids may
// end in one. Where the CRs are dropped, a line whose id lives here both with and
// without the CR could name either: it is refused. Every line is checked before anything is
// deleted. Ids this replica has no live record for are counted, not deleted, and make
// the exit status 1.
void DeleteFromStdin(engine::Replica& r, const std::string& coll) {
  Check(engine::ValidateCollection(coll));
  std::vector<std::string> lines;
  bool crlf = true;
  for (std::string line; std::getline(std::cin, line);) {
    crlf = crlf && !line.empty() && line.back() == '\r';
    lines.push_back(std::move(line));
  }
  if (std::cin.bad()) throw Exit{1, "reading stdin failed (nothing was deleted)"};
  std::vector<std::string> ids;
  std::unordered_set<std::string> seen;
  for (size_t n = 0; n < lines.size(); ++n) {
    std::string& line = lines[n];
    const std::string where = "stdin line " + std::to_string(n + 1) + ": ";
    if (crlf) {
      const std::string bare = line.substr(0, line.size() - 1);
      // The id with its CR first: it is the one that seldom lives.
      if (r.Get(coll, line).ok() && engine::ValidateRecordId(bare).ok() && r.Get(coll, bare).ok())
        throw Exit{2, where + "records " + bare + " and " + bare +
                          "<CR> both live here, and the line may name either (nothing was "
                          "deleted)"};
    }
    if (crlf) line.pop_back();
    if (Status st = engine::ValidateRecordId(line); !st.ok())
      throw Exit{2, where + st.message() + " (nothing was deleted)"};
    if (seen.insert(line).second) ids.push_back(std::move(line));
  }
  constexpr size_t kPerTransaction = 1000;
  size_t deleted = 0, missing = 0;
  std::string first_missing;
  for (size_t at = 0; at < ids.size(); at += kPerTransaction) {
    size_t d = 0, m = 0;
    std::string fm;
    Status st = r.Write([&](engine::Batch& b) {
      d = m = 0;  // a transaction run again starts over
      fm.clear();
      for (size_t k = at; k < std::min(ids.size(), at + kPerTransaction); ++k) {
        Status one = b.Delete(coll, ids[k]);
        if (one.code() == Code::kNotFound) {
          if (!m++) fm = ids[k];
          continue;
        }
        TANDEM_RETURN_IF_ERROR(one);
        ++d;
      }
      return Status::Ok();
    });
    if (!st.ok())
      throw Exit{ExitCodeFor(st), Message(st) + " (" + std::to_string(deleted) +
                                      " records deleted before it, in earlier transactions)"};
    deleted += d;
    missing += m;
    if (first_missing.empty()) first_missing = fm;
  }
  std::fprintf(stderr, "deleted %zu record%s from %s\n", deleted, deleted == 1 ? "" : "s",
               coll.c_str());
  if (missing)
    throw Exit{1, std::to_string(missing) + " id" + (missing == 1 ? "" : "s") +
                      " not found or already deleted (the first: " + Printable(first_missing) +
                      ")"};
}

}  // namespace tandem::cli
