// Shared by the `tandem` program's source files: how a command fails, prints and opens
// a replica, and the commands that live in files of their own.
#pragma once

#include <CLI/Error.hpp>
#include <CLI/Validators.hpp>
#include <charconv>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "tandem/bindings/json.h"
#include "tandem/device/device.h"
#include "tandem/net/collect.h"
#include "tandem/net/group.h"
#include "tandem/net/node.h"
#include "tandem/storage/replica.h"

namespace CLI {
class App;
}

namespace tandem::cli {

using tandem::Code;
using tandem::Status;
using tandem::bindings::Canonical;
using tandem::bindings::Json;
namespace engine = tandem::engine;
namespace storage = tandem::storage;
namespace net = tandem::net;
using tandem::device::Device;

// A failure that ends the program with a message and an exit code.
struct Exit {
  int code;
  std::string message;
};

inline int ExitCodeFor(const Status& st) { return st.code() == Code::kInvalidArgument ? 2 : 1; }

// Usage and not-found messages read best alone; others carry their kind ("corrupt: ...").
inline std::string Message(const Status& st) {
  if (st.code() == Code::kInvalidArgument || st.code() == Code::kNotFound) return st.message();
  return st.ToString();
}

inline void Check(const Status& st) {
  if (!st.ok()) throw Exit{ExitCodeFor(st), Message(st)};
}
template <typename T>
T Check(tandem::Result<T> r) {
  if (!r.ok()) throw Exit{ExitCodeFor(r.status()), Message(r.status())};
  return std::move(r).value();
}

// A whole number from lo to hi, with a message that says which of the two it is not
// (CLI11's own range check calls "abc" out of range), rewritten in decimal: CLI11 would
// read "010" as octal. For `transform`, since a `check` may not change the value.
inline CLI::Validator Whole(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) {
        int64_t n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec == std::errc::result_out_of_range ||
            (ec == std::errc{} && end == v.data() + v.size() && (n < lo || n > hi)))
          return v + " is out of range: " + std::to_string(lo) + " to " + std::to_string(hi);
        if (ec != std::errc{} || end != v.data() + v.size()) return "not a whole number: " + v;
        v = std::to_string(n);  // as read here: CLI11 would take "010" as octal
        return std::string();
      },
      "INT in [" + std::to_string(lo) + " - " + std::to_string(hi) + "]");
}

inline void Print(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
}

// With `inspect`, for commands that only read: a copy of a replica (a backup, say) is
// read as it is, without the replica id of its own it would take if opened to write.
inline std::shared_ptr<Device> OpenDevice(const std::string& dir, bool inspect = false) {
  tandem::device::OpenOptions o;
  o.inspect = inspect;
  return Check(Device::Open(dir, o));
}
inline std::shared_ptr<Device> InspectDevice(const std::string& dir) {
  return OpenDevice(dir, true);
}
// The replica of DIR, kept open by its device for the life of the program.
inline engine::Replica& Open(const std::string& dir, bool inspect = false) {
  static std::shared_ptr<Device> device;
  device.reset();  // one opened to be read first is closed before it opens to write
  device = OpenDevice(dir, inspect);
  return device->replica();
}
inline engine::Replica& Inspect(const std::string& dir) { return Open(dir, true); }

using tandem::bindings::Printable;
using tandem::bindings::Quote;

// How the daemon's log lines look: "tandem: message", or one JSON object per line.
struct LogFormat {
  bool json = false;
  void Line(const std::string& message, const char* level = "info") const {
    if (json) {
      Json j{{"time_ms", storage::SystemClockMs()}, {"level", level}, {"message", message}};
      std::fprintf(stderr, "%s\n", j.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
    } else {
      std::fprintf(stderr, "tandem: %s\n", Printable(message).c_str());
    }
    std::fflush(stderr);
  }
};

// `serve` and `sync` (daemon.cc): the node, its status file, its signals.
int RunNode(Device& d, net::NodeOptions o, const std::string& metrics_address, LogFormat logf);
// The running daemon's status file, if a daemon is running on this replica (daemon.cc).
// A daemon that runs without one gives {"running": true, "status_file": "missing" (or
// not a file) or "unreadable" (not its own, or damaged)}.
std::optional<Json> DaemonStatus(const std::string& dir);
// The daemon's part of `status`: what its status file says, or why it says nothing.
void PrintDaemon(std::optional<Json> status, const std::string& status_file);
// How long ago a time (ms since the epoch) was: "42s ago", "3m ago", "never" for 0.
std::string Ago(uint64_t ms);
// Pairing, `devices`, `permissions` and the commands that change the trust set
// (trust.cc). RunInvite takes the running daemon's listen address as the hint when
// options give none.
void RunInvite(const std::string& dir, device::InviteOptions options);
void RunJoin(const std::string& dir, const std::string& code, bool merge);
void PrintDevices(Device& d, bool as_json);
// The device each of the group's replicas syncs as: replica id (hex) -> device id.
std::map<std::string, std::string> DeviceOfReplica(Device& d);
void PrintPermissions(Device& d, bool as_json);
enum class TrustChange { kRevoke, kRole, kPermit };
// kRevoke: `who` is the device; kRole: the device and `what` the role; kPermit: `who` a
// device or role, `collection`, `what` the level.
void ChangeTrust(const std::string& dir, TrustChange change, const std::string& who,
                 const std::string& collection, const std::string& what);
// `del DIR COLL -` (collect.cc): deletes the ids stdin lists, in batches.
void DeleteFromStdin(engine::Replica& r, const std::string& coll);
// `gc` (collect.cc), and how `devices` shows a member's last report.
int RunGc(const std::string& dir, int horizon_days, bool as_json);
// held.cc: `quarantine` (listing, or releasing the ids given, or all) and `where`.
int RunQuarantine(const std::string& dir, std::vector<uint64_t> release_ids, bool release_all);
void PrintWhere(const std::string& dir, const std::string& coll, const std::string& id,
                bool as_json);
std::string ReportLine(const net::MemberHolding& h);
// What `status` says of a peer's rebases (empty when none).
std::string RebaseNote(const Json& peer);
// ... and of the blobs it fetched from the peer and sent to it (empty when none).
std::string BlobNote(const Json& peer);
// `attach`, `blob`, `blobs` (blob.cc): added to the program by AddBlobCommands; Run
// runs the one parsed.
struct BlobCommands {
  CLI::App *attach = nullptr, *blob = nullptr, *blobs = nullptr;
  std::string dir, coll, id, field, file, type, hash;
  int wait_s = -1;  // not given
  bool as_json = false;
  bool Parsed() const;
  int Run();
};
BlobCommands AddBlobCommands(CLI::App& app);
// `--blobs eager|lazy|lazy=COLL,...` of serve and sync: the collections whose blobs
// wait for a reader (blob.cc).
engine::CollectionFilter ParseBlobMode(const std::string& mode);
// Arguments (args.cc). Each throws Exit{2, why} on bad input.
inline bool IsSystem(const std::string& coll) { return net::IsSystemCollection(coll); }
// Apps write their own collections; the trust set is changed only by invite/revoke.
void CheckWritable(const std::string& coll);
// COLL,... or `none` (a one-way device: nothing that way but the trust set).
engine::CollectionFilter ParseFilter(const std::string& list, const char* flag);
// HOST:PORT, as the daemon will parse it.
bool IsAddress(const std::string& a);
void CheckAddress(const std::string& a);
// A decimal int64, as counters take: no octal, no hex, no clamping.
int64_t ParseDecimal(const std::string& text, const char* what);
// A field's JSON value: the text, or @PATH (a file's contents), or @- (stdin).
std::string ValueText(const std::string& text);
engine::Value ParseValue(const std::string& text);
// The process (process.cc): its signals and allocator, set once at start.
void SetUpProcess();
// Runs `body` and returns its exit status; an Exit or exception becomes one line on
// stderr ("tandem: ...") and its status.
int Reported(const std::function<int()>& body);
// Everything printed reached standard output, or Exit{1} saying why not (a full disk, a
// closed pipe): a short output never ends with status 0.
void CheckOutput();
// After this, a crash says which replica it worked on and to run `tandem check` there.
void NoteCrashesOn(const std::string& dir);
// Runs `body` in a child process and returns its exit status; a crash there (reading a
// damaged `file`) becomes an Exit naming the damage and what to do (`remedy`), after
// `on_crash`. The child dies with this process: a killed command leaves no work going on.
int Isolated(const std::string& file, const std::function<void()>& body,
             const std::function<void()>& on_crash = nullptr,
             const char* remedy = "restore it from a backup");
// `import` (import.cc).
int RunImport(const std::string& dir, const std::string& coll, const std::string& file,
              const std::string& format_name, const std::string& id_field, bool strict);

}  // namespace tandem::cli
