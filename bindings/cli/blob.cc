// `attach`, `blob` and `blobs`: files kept as blobs, referenced from fields
// (docs/design.md#attachments).
#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "cli.h"

namespace tandem::cli {

namespace {

// A media type from a file name's extension, for the common kinds; empty otherwise.
std::string GuessType(const std::string& path) {
  static const std::map<std::string, std::string> kTypes = {
      {"png", "image/png"},       {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},       {"webp", "image/webp"},       {"svg", "image/svg+xml"},
      {"pdf", "application/pdf"}, {"json", "application/json"}, {"zip", "application/zip"},
      {"txt", "text/plain"},      {"csv", "text/csv"},          {"html", "text/html"},
      {"mp4", "video/mp4"},       {"mp3", "audio/mpeg"},        {"wav", "audio/wav"},
      {"xml", "application/xml"}, {"gz", "application/gzip"}};
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos || path.find('/', dot) != std::string::npos) return "";
  std::string ext = path.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto it = kTypes.find(ext);
  return it == kTypes.end() ? "" : it->second;
}

std::string StateName(const engine::BlobInfo& info) {
  return info.complete() ? "complete" : info.requested ? "requested" : "wanted";
}

}  // namespace

BlobCommands AddBlobCommands(CLI::App& app) {
  BlobCommands c;
  c.attach = app.add_subcommand(
      "attach", "Store FILE (or - for stdin) as a blob and put its reference in a field");
  c.attach->add_option("DIR", c.dir)->required();
  c.attach->add_option("COLL", c.coll)->required();
  c.attach->add_option("ID", c.id)->required();
  c.attach->add_option("FIELD", c.field)->required();
  c.attach->add_option("FILE", c.file)->required();
  c.attach->add_option("--type", c.type,
                       "Media type (default: from the file name's extension, if common)");
  c.blob = app.add_subcommand(
      "blob", "Write a blob's bytes to stdout (verified); fetch it first if it is wanted");
  c.blob->add_option("DIR", c.dir)->required();
  c.blob->add_option("HASH", c.hash, "The blob's address: 64 hex digits")->required();
  c.blob
      ->add_option("--wait", c.wait_s,
                   "Seconds to wait for a blob not here yet while a running serve (or a sync) "
                   "fetches it (default: 30 if a serve runs on DIR, else 0)")
      ->transform(Whole(0, 86400));
  c.blobs = app.add_subcommand("blobs", "List the blobs this replica holds or wants");
  c.blobs->add_option("DIR", c.dir)->required();
  c.blobs->add_flag("--json", c.as_json, "One JSON object per line");
  return c;
}

engine::CollectionFilter ParseBlobMode(const std::string& mode) {
  if (mode == "eager") return engine::CollectionFilter::None();
  if (mode == "lazy") return engine::CollectionFilter{};
  if (mode.rfind("lazy=", 0) == 0) {
    if (mode.size() == 5)
      throw Exit{2, "--blobs lazy= names no collection (lazy alone makes every one lazy)"};
    auto f = engine::CollectionFilter::Parse(mode.substr(5));
    if (!f.ok()) throw Exit{2, "--blobs: " + f.status().message()};
    return std::move(f).value();
  }
  throw Exit{2, "--blobs takes eager, lazy, or lazy=COLL,... (lazy for those collections), got " +
                    Quote(mode)};
}

bool BlobCommands::Parsed() const { return attach->parsed() || blob->parsed() || blobs->parsed(); }

int BlobCommands::Run() {
  if (attach->parsed()) {
    Check(engine::ValidateCollection(coll));
    if (net::IsSystemCollection(coll))
      throw Exit{2, "collection " + coll + " is reserved for tandem itself"};
    FILE* in = file == "-" ? stdin : std::fopen(file.c_str(), "rb");
    if (!in) throw Exit{2, "cannot read " + Quote(file) + ": " + std::strerror(errno)};
    engine::BlobSource src = [in](char* buf, size_t cap) -> tandem::Result<size_t> {
      const size_t n = std::fread(buf, 1, cap, in);
      if (n == 0 && std::ferror(in))
        return Status::Io(std::string("read: ") + std::strerror(errno));
      return n;
    };
    auto ref = Open(dir).Attach(coll, id, field, src, type.empty() ? GuessType(file) : type);
    if (in != stdin) std::fclose(in);
    Print(Canonical(tandem::bindings::ValueToJson(engine::Value{Check(std::move(ref))})));
    return 0;
  }
  if (blob->parsed()) {
    auto h = engine::BlobHashFromHex(hash);
    if (!h.ok()) throw Exit{2, "HASH: " + h.status().message()};
    // Read as it is (a backup too); only a blob not here whole is asked for, which writes.
    auto* r = &Inspect(dir);
    auto info = Check(r->Blob(*h));
    if (!info) throw Exit{1, "blob " + hash + " is not in this replica (no field references it)"};
    if (!info->complete()) {
      // Asked for: a running serve fetches it now, even where blobs are fetched lazily.
      r = &Open(dir);
      Check(r->RequestBlob(*h));
      // Not given: wait only if a daemon runs here to fetch it.
      int wait = wait_s;
      if (wait < 0) {
        const auto ds = DaemonStatus(dir);
        wait = ds && (*ds)["running"] == true ? 30 : 0;
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait);
      while (info && !info->complete() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        info = Check(r->Blob(*h));
      }
      if (!info) throw Exit{1, "blob " + hash + " was collected (no field references it now)"};
      if (!info->complete())
        throw Exit{1, "blob " + hash + " is not here yet (" + std::to_string(info->have) + " of " +
                          std::to_string(engine::ChunkCount(info->size)) +
                          " chunks): it is requested, and a running `tandem serve` or the next "
                          "`tandem sync` with a device that has it fetches it"};
    }
    Check(r->ReadBlob(*h, [](std::string_view bytes) -> Status {
      if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size())
        return Status::Io(std::string("write: ") + std::strerror(errno));
      return Status::Ok();
    }));
    if (std::fflush(stdout) != 0) throw Exit{1, std::string("write: ") + std::strerror(errno)};
    return 0;
  }
  auto& r = Inspect(dir);
  auto txn = Check(r.store().BeginRead());
  Check(txn->ScanBlobs(false, [&](const engine::BlobHash& h, const engine::BlobInfo& info) {
    if (info.state == engine::BlobInfo::State::kPending ||
        info.state == engine::BlobInfo::State::kState)
      return true;
    const uint64_t chunks = engine::ChunkCount(info.size);
    const uint64_t have = info.complete() ? chunks : info.have;
    if (as_json) {
      Json j{{"hash", engine::HexOf(h)}, {"size", info.size},
             {"state", StateName(info)}, {"chunks", chunks},
             {"chunks_held", have},      {"released", info.released.has_value()}};
      Json refs = Json::array();
      for (const auto& k : info.refs)
        refs.push_back(
            Json{{"collection", k.collection}, {"record", k.record}, {"field", k.field}});
      if (!refs.empty()) j["referenced_by"] = refs;
      Print(Canonical(j));
    } else {
      std::string line =
          engine::HexOf(h) + "  " + std::to_string(info.size) + " bytes  " + StateName(info);
      if (!info.complete())
        line += " (" + std::to_string(have) + " of " + std::to_string(chunks) + " chunks)";
      if (info.released) line += ", unreferenced: collected once every member caught up";
      Print(line);
    }
    return true;
  }));
  return 0;
}

}  // namespace tandem::cli
