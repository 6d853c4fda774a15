// `serve` and `sync`: the process around a sync node.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cli.h"
#include "tandem/files/files.h"
#include "tandem/metrics/metrics.h"

namespace tandem::cli {

// DIR/daemon.json, replaced atomically (written to a temporary file, renamed).
// Returns the error, empty on success.
std::string WriteStatusFile(const std::string& path, const net::NodeSnapshot& s,
                            const std::string& metrics) {
  Json j = tandem::bindings::NodeSnapshotToJson(s);
  j["pid"] = static_cast<int64_t>(::getpid());
  if (!metrics.empty()) j["metrics"] = metrics;
  // Atomic, not fsynced: it is rewritten every few seconds and describes this process.
  Status st = files::WriteAtomic(path, tandem::bindings::Reported(j), files::Sync::kNone, 0644);
  if (!st.ok()) return st.message();
  return {};
}

// Whether some `tandem serve` or `sync` holds DIR/daemon.lock (they hold it shared).
bool DaemonHoldsLock(const std::string& dir) {
  int fd = ::open(tandem::device::Layout(dir).daemon_lock().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases the lock if we got it
  return held;
}

std::string Ago(uint64_t ms) {
  if (ms == 0) return "never";
  uint64_t now = storage::SystemClockMs();
  uint64_t s = now > ms ? (now - ms) / 1000 : 0;
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 7200) return std::to_string(s / 60) + "m ago";
  return std::to_string(s / 3600) + "h ago";
}

namespace {
// The name a process runs under ("self": this one).
std::string CommOf(const std::string& pid) {
  std::ifstream comm("/proc/" + pid + "/comm");
  std::string name;
  return comm && std::getline(comm, name) ? name : std::string();
}
}  // namespace

std::optional<Json> DaemonStatus(const std::string& dir) {
  // The lock says whether a daemon runs (a crash releases it); daemon.json what it does.
  const bool locked = DaemonHoldsLock(dir);
  // Anything unreadable (missing, a directory, a FIFO that would never end, damaged) is
  // "no status file".
  const std::string path = tandem::device::Layout(dir).status_file();
  struct stat st;
  const bool present = ::lstat(path.c_str(), &st) == 0;
  auto text = files::ReadSmall(path, 64 << 20);  // a regular file only, never waited on
  Json j = text.ok() ? Json::parse(*text, nullptr, false) : Json(nullptr);
  const bool readable = !j.is_discarded() && j.is_object();
  bool fresh = false;
  const auto running = readable ? j.find("running") : j.end();
  const auto pid = readable ? j.find("pid") : j.end();
  if (readable && running != j.end() && *running == true && pid != j.end() &&
      pid->is_number_integer() && pid->get<int64_t>() > 0) {
    // The pid must be alive and this program (a pid may have been reused since).
    const int64_t n = pid->get<int64_t>();
    const std::string name = CommOf(std::to_string(n));
    fresh = ::kill(static_cast<pid_t>(n), 0) == 0 && !name.empty() &&
            (name == "tandem" || name == CommOf("self"));
  }
  if (locked && !fresh)  // a daemon runs, but this is not its status (a full disk...)
    return Json{{"running", true},
                {"status_file", present && S_ISREG(st.st_mode) ? "unreadable" : "missing"},
                {"peers", Json::array()}};
  if (!readable) return std::nullopt;
  const bool was_running = running != j.end() && *running == true;
  j["running"] = fresh && locked;
  if (was_running && !(fresh && locked)) {
    // It stopped without saying so (killed, or the machine went down): what it said of
    // its peers no longer holds.
    j["ended_unexpectedly"] = true;
    if (auto peers = j.find("peers"); peers != j.end() && peers->is_array())
      for (auto& p : *peers)
        if (p.is_object()) {
          p["connected"] = false;
          p["pending_changes"] = nullptr;
        }
  }
  return j;
}

void PrintDaemon(std::optional<Json> ds, const std::string& status_file) {
  // Not const: operator[] on a key the file lacks gives null (const, it asserts).
  const std::string unknown = "): peers unknown; see its log";
  if (!ds || (*ds)["running"] != true) {
    Print(ds && ds->value("ended_unexpectedly", false)
              ? "daemon: not running (it ended without stopping: killed, or the machine went down)"
              : "daemon: not running");
    return;
  }
  if (ds->contains("status_file")) {
    Print((*ds)["status_file"] == "missing"
              ? "daemon: running, but it could not write its status file (" + status_file + unknown
              : "daemon: running, but its status file is not its own or cannot be read (" +
                    status_file + unknown);
    return;
  }
  std::vector<std::string> lines;  // printed once all are read (a file edited by hand)
  try {
    auto filter = [&](const char* key) -> std::string {
      const Json& f = (*ds)[key];
      if (!f.is_array()) return "all";
      if (f.empty()) return "none";
      std::string out;
      for (const auto& c : f) {
        if (!out.empty()) out += ',';
        out += c.get<std::string>();
      }
      return out;
    };
    lines.push_back(
        "daemon: running, pid " + std::to_string(ds->value("pid", 0)) + ", " +
        ds->value("mode", "") + " mode" +
        (ds->value("listen", "").empty() ? "" : ", listening on " + ds->value("listen", "")) +
        ", sends " + filter("send") + ", receives " + filter("receive") + ", " +
        std::to_string(ds->value("refused_connections", 0)) + " connections refused");
    for (const auto& p : (*ds)["peers"]) {
      std::string pending = p.contains("pending_changes") && p["pending_changes"].is_number()
                                ? std::to_string(p["pending_changes"].get<uint64_t>())
                                : "?";
      lines.push_back(
          "  " +
          (p.value("device", "").empty() ? std::string("(unknown device)")
                                         : p.value("device", "")) +
          "  " + p.value("address", "") + "  " + p.value("direction", "") + "  " +
          (p.value("connected", false) ? "connected" : "disconnected") + "  last sync " +
          Ago(p.value("last_sync_ms", uint64_t{0})) + "  pending " + pending + "  in " +
          std::to_string(p.value("bytes_in", uint64_t{0})) + " B  out " +
          std::to_string(p.value("bytes_out", uint64_t{0})) + " B  errors " +
          std::to_string(p.value("errors", uint64_t{0})) + "  refused fields " +
          std::to_string(p.value("fields_refused", uint64_t{0})) + RebaseNote(p) + BlobNote(p) +
          (p.value("last_error", "").empty() ? "" : "  last error: " + p.value("last_error", "")));
    }
  } catch (const Json::exception&) {
    Print("daemon: running, but its status file is not its own or cannot be read (" + status_file +
          unknown);
    return;
  }
  for (const auto& l : lines) Print(l);
}

namespace {
// Why a node that keeps syncing could not start on a replica another already holds
// (Device::NewNode): the other, by its pid when it is a `tandem serve`.
std::string AlreadyServed(const device::Layout& layout) {
  if (auto st = DaemonStatus(layout.dir); st && st->value("running", false) && st->contains("pid"))
    return "another tandem serve (pid " + st->at("pid").dump() + ") already serves " + layout.dir +
           "; stop it first (tandem status " + layout.dir + " shows it)";
  return "another node (an app's, or a tandem serve starting or stopping) already serves " +
         layout.dir + "; stop it first";
}
}  // namespace

// `serve` and `sync`: the process around a sync node. The node runs on its own thread;
// this one waits for SIGINT/SIGTERM (blocked, read from a signalfd) and for the node's
// events, and publishes the node's snapshot as DIR/daemon.json for `tandem status`
// (at each event and every second). Exit status: 0, or 1 if a `sync` peer failed.

int RunNode(Device& d, net::NodeOptions o, const std::string& metrics_address, LogFormat logf) {
  const bool once = o.mode == net::NodeMode::kOnce;
  o.log = [logf](const std::string& line, net::LogLevel level) {
    logf.Line(line, net::LogLevelName(level));
  };
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  // Blocked before the node thread starts, so that it inherits the mask and only this
  // thread's signalfd sees them.
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) throw Exit{1, std::string("signalfd: ") + std::strerror(errno)};
  // One `serve` per replica (the node holds serve.lock): a second would dial and accept
  // the same peers under the same replica id, and the two would overwrite each other's
  // daemon.json. A one-shot `sync` beside a daemon is fine.
  auto made = d.NewNode(std::move(o));
  if (!made.ok() && made.status().code() == Code::kBusy && !once)
    throw Exit{1, AlreadyServed(d.layout())};
  auto node = Check(std::move(made));
  // Held until exit (or a crash): `status` knows a daemon runs even without daemon.json.
  const int lock_fd = ::open(d.layout().daemon_lock().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd >= 0 && ::flock(lock_fd, LOCK_SH | LOCK_NB) != 0) {
    // Only an exclusive holder (a `status` probing right now) can be in the way: wait.
    if (::flock(lock_fd, LOCK_SH) != 0) std::fprintf(stderr, "tandem: cannot lock daemon.lock\n");
  }
  const std::string status_path = d.layout().status_file();
  std::string status_error, metrics_bound;
  // daemon.json is the daemon's: a one-shot sync beside a running serve (which holds
  // serve.lock) leaves it alone, or `status` and `invite` would take the sync for the
  // daemon (its pid, no listen address, then "running": false).
  bool owns_status = true;
  if (once)
    if (auto l = files::TryLockFile(d.layout().serve_lock()); l.ok()) {
      if (*l >= 0)
        ::close(*l);
      else
        owns_status = false;
    }
  auto publish = [&](const net::NodeSnapshot& s) {
    if (!owns_status) return;
    std::string e = WriteStatusFile(status_path, s, metrics_bound);
    // An earlier status would pass for the current one: `status` shows none instead.
    if (!e.empty()) ::unlink(status_path.c_str());
    if (e.empty() != status_error.empty()) {  // said when it starts and stops failing
      logf.Line(e.empty()
                    ? "the status file is written again"
                    : "cannot update the status file: " + e + " (tandem status will show no peers)",
                e.empty() ? "info" : "error");
      status_error = e;
    }
  };
  Status started = node->Start();
  if (!started.ok()) {
    ::close(sfd);
    throw Exit{started.code() == Code::kInvalidArgument ? 2 : 1, Message(started)};
  }
  std::unique_ptr<tandem::metrics::Server> metrics;
  if (!metrics_address.empty()) {
    auto m = tandem::metrics::Server::Start(metrics_address, d, *node);
    if (!m.ok()) {
      node->Stop();
      ::close(sfd);
      throw Exit{1, Message(m.status())};
    }
    metrics = std::move(m).value();
    metrics_bound = metrics->address();
    logf.Line("metrics at http://" + metrics_bound + "/metrics");
  }
  publish(node->Snapshot());
  bool stopped = false, signalled = false, gone = false;
  bool ok = true;
  while (!stopped) {
    pollfd fds[2] = {{sfd, POLLIN, 0}, {node->event_fd(), POLLIN, 0}};
    int rc = ::poll(fds, 2, 1000);
    if (rc < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) > 0) {
      }
      if (!signalled) {
        signalled = true;
        logf.Line("stopping");
        node->Stop();
      }
    }
    for (const auto& e : node->DrainEvents()) {
      if (e.kind == net::NodeEventKind::kDone) {
        ok = e.ok;
        if (!e.ok) logf.Line(e.message, "error");
      }
      if (e.kind == net::NodeEventKind::kStopped) stopped = true;
    }
    // The node stops by itself once DIR/data.mdb is moved, removed or replaced (it said
    // why in the log): DIR is no longer this replica's, so nothing more is written there.
    const net::NodeSnapshot snap = node->Snapshot();
    gone = gone || snap.replica_gone;
    if (!gone) publish(snap);
  }
  metrics.reset();  // before the node it reads
  node->Stop();
  if (gone) {
    ::close(sfd);
    if (lock_fd >= 0) ::close(lock_fd);
    return 1;
  }
  auto last = node->Snapshot();
  last.running = false;
  // The node let serve.lock go as it stopped: a serve started since owns daemon.json.
  int serve_fd = -1;
  if (!once)
    if (auto l = files::TryLockFile(d.layout().serve_lock()); l.ok()) serve_fd = *l;
  if ((once && owns_status) || serve_fd >= 0) publish(last);
  if (serve_fd >= 0) ::close(serve_fd);
  ::close(sfd);
  if (lock_fd >= 0) ::close(lock_fd);
  if (once && last.failures > 0) ok = false;
  // What this replica now holds, for the next sync to carry: members collect by it; and
  // when it first held the members' reports it received.
  if (once) {
    const uint64_t now = storage::SystemClockMs();
    Status st = ok ? net::ReportAndNote(d.replica(), d.layout().group(), d.device_id(), now)
                   : net::NoteReportsHeard(d.replica(), d.layout().group(), d.device_id(), now);
    if (!st.ok()) logf.Line("cannot write this replica's report: " + st.ToString(), "warn");
  }
  return once && !ok ? 1 : 0;
}

}  // namespace tandem::cli
