// Benchmarks that run `tandem` processes: spawning and stopping them, a group made
// without the CLI, libsodium's secretstream as a limit, and the memory a process maps.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench_util.h"
#include "tandem/device/device.h"
#include "tandem/net/group.h"
#include "tandem/net/secure_frame.h"
#include "tandem/storage/replica.h"

extern char** environ;

namespace tandem::bench {

inline pid_t Spawn(std::vector<std::string> args, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) std::abort();
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

inline void Stop(pid_t pid) {
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The listen address from the daemon's status file (a tiny scan, no JSON library).
inline std::string WaitListen(const std::string& dir) {
  for (int i = 0; i < 1000; ++i) {
    std::string s = ReadFile(dir + "/daemon.json");
    size_t at = s.find("\"listen\":\"");
    if (at != std::string::npos) {
      size_t end = s.find('"', at + 10);
      std::string a = s.substr(at + 10, end - at - 10);
      if (!a.empty()) return a;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "bench: the daemon did not start; see %s/../*.log\n", dir.c_str());
  std::exit(1);
}

// Makes a replica in a fresh group of `members` (identity files, shared group key, each
// in every trust set), as `tandem init` + pairing would.
inline void MakeMember(const std::string& dir, const net::Key32& group, const net::Identity& id,
                       const std::vector<net::Identity>& members) {
  auto r = storage::CreateReplica(dir);
  Must(r.status(), "create");
  const device::Layout layout(dir);
  Must(net::SaveIdentity(id, layout.identity_key()), "identity");
  Must(net::SaveGroupKey(layout.group(), group), "group key");
  for (const auto& m : members) Must(net::AddMember(**r, m.public_key, "bench", 1), "member");
}

inline double SecretstreamMbPerS() {
  net::InitCrypto();
  net::Key32 key = net::NewGroupKey();
  std::string plain(1 << 20, 'x'), wire, out;
  const int frames = 512;
  double t0 = Now();
  net::FrameSealer sealer(key);
  net::FrameOpener opener(key, sealer.header());
  for (int i = 0; i < frames; ++i) {
    wire.clear();
    Must(sealer.Seal(plain, false, &wire), "seal");
    bool final = false;
    Must(opener.Open(std::string_view(wire).substr(0, 4), std::string_view(wire).substr(4), &out,
                     &final),
         "open");
  }
  double dt = Now() - t0;
  return frames * 1.0 / dt;  // MiB of plaintext sealed and opened per second
}

// The largest anonymous resident memory (RssAnon: the heap, not the pages a process maps
// from files, which belong to the page cache) of some processes, sampled every 5 ms on a
// thread of its own until Stop.
class PeakRssAnon {
 public:
  explicit PeakRssAnon(std::vector<pid_t> pids) : pids_(std::move(pids)) {
    peak_.resize(pids_.size());
    thread_ = std::thread([this] {
      while (!stop_) {
        for (size_t i = 0; i < pids_.size(); ++i) peak_[i] = std::max(peak_[i], Sample(pids_[i]));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  ~PeakRssAnon() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  double PeakMb(size_t i) const { return static_cast<double>(peak_[i]) / 1024; }  // after Stop

 private:
  static uint64_t Sample(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8));  // kB
    return 0;
  }
  std::vector<pid_t> pids_;
  std::vector<uint64_t> peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tandem::bench
