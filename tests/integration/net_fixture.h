// Real `tandem` processes on loopback for the networking tests (net_test.cc,
// net_authority_test.cc, net_attack_test.cc): a daemon in a log file, its status, CLI
// runs, and a fixture of replica directories.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "process.h"
#include "tandem/device/device.h"
#include "tandem/net/group.h"
#include "tandem/storage/replica.h"

namespace tandem::testing {

namespace fs = std::filesystem;
using nlohmann::json;

inline RunResult T(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_BIN);
  return Run(args);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool WaitFor(const std::function<bool()>& pred, int timeout_ms = 20000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// A `tandem serve` process whose output goes to a log file (never a full pipe).
class Serve {
 public:
  Serve(std::vector<std::string> args, std::string log) : args_(std::move(args)), log_(log) {
    Start();
  }
  ~Serve() { Kill(SIGKILL); }
  void Start() {
    std::vector<std::string> a{TANDEM_BIN, "serve"};
    a.insert(a.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) abort();
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) abort();
    if (pid_ == 0) {
      // The daemon dies with the test, even if the test crashes (no stray daemons).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      dup2(fd, 1);
      dup2(fd, 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fd);
  }
  // Kills and waits; returns the exit status (128+signal if killed by it).
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  pid_t pid() const { return pid_; }
  // Waits up to timeout_ms for it to end by itself; its exit status, or -1 if it runs on.
  int WaitExit(int timeout_ms) {
    for (int waited = 0; pid_ > 0; waited += 10) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      if (waited >= timeout_ms) return -1;
      usleep(10000);
    }
    return -1;
  }
  std::string log() const { return ReadFile(log_); }
  std::vector<std::string>& args() { return args_; }

 private:
  std::vector<std::string> args_;
  std::string log_;
  pid_t pid_ = -1;
};

// The daemon's status file once the given process has written it with a listen address.
inline json StatusOf(const std::string& dir) {
  json j = json::parse(ReadFile(dir + "/daemon.json"), nullptr, false);
  return j.is_discarded() ? json::object() : j;
}
inline std::string ListenAddress(const std::string& dir, const Serve& s) {
  std::string addr;
  WaitFor([&] {
    json j = StatusOf(dir);
    if (j.value("pid", 0) != s.pid()) return false;
    addr = j.value("listen", "");
    return !addr.empty();
  });
  EXPECT_FALSE(addr.empty()) << s.log();
  return addr;
}

inline std::string Dump(const std::string& dir) { return T({"dump", dir}).out; }

inline bool Has(const std::string& dir, const std::string& coll, const std::string& id) {
  return T({"get", dir, coll, id}).exit_code == 0;
}

// Writes n records of two fields each in one transaction, as an app would.
inline void WriteMany(const std::string& dir, const std::string& prefix, int n) {
  auto r = storage::OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int start = 0; start < n; start += 1000) {
    ASSERT_TRUE((*r)->Write([&](engine::Batch& b) -> Status {
                      for (int i = start; i < std::min(n, start + 1000); ++i) {
                        std::string id = prefix + std::to_string(i);
                        TANDEM_RETURN_IF_ERROR(b.Put("items", id, "n", engine::Value(int64_t{i})));
                        TANDEM_RETURN_IF_ERROR(
                            b.Put("items", id, "label", engine::Value(std::string(40, 'x'))));
                      }
                      return Status::Ok();
                    })
                    .ok());
  }
}

inline size_t CountItems(const std::string& dir) {
  auto r = storage::OpenReplica(dir);
  if (!r.ok()) return 0;
  size_t n = 0;
  (void)(*r)->Scan("items", "", [&](const engine::Record&) {
    ++n;
    return true;
  });
  return n;
}

// The port of a HOST:PORT address.
inline uint16_t PortOf(const std::string& address) {
  return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

// A TCP connection to 127.0.0.1:port, from the loopback address `from`; -1 on failure.
inline int ConnectLoopback(uint16_t port, const char* from = "127.0.0.1") {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{}, dst{};
  src.sin_family = dst.sin_family = AF_INET;
  inet_pton(AF_INET, from, &src.sin_addr);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  dst.sin_port = htons(port);
  if (bind(s, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      connect(s, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    close(s);
    return -1;
  }
  return s;
}

class Net : public ::testing::Test {
 protected:
  std::string Dir(const std::string& name) { return tmp_ / name; }
  std::string Log(const std::string& name) { return tmp_ / (name + ".log"); }
  std::string Init(const std::string& name) {
    auto r = T({"init", Dir(name)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Dir(name);
  }
  // Starts `serve DIR --listen 127.0.0.1:0 extra...`; returns its address.
  std::unique_ptr<Serve> Listen(const std::string& name, std::vector<std::string> extra = {},
                                std::string* address = nullptr) {
    std::vector<std::string> args{Dir(name), "--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto s = std::make_unique<Serve>(args, Log(name));
    std::string a = ListenAddress(Dir(name), *s);
    if (address) *address = a;
    return s;
  }
  // An invite of the device in `dir` expiring at `expires_ms`, with the address hint
  // `address`, stored there as `tandem invite` would.
  net::Invite StoredInvite(const std::string& dir, uint64_t expires_ms,
                           const std::string& address) {
    auto self = net::LoadIdentity(dir + "/identity.key");
    if (!self.ok()) {
      ADD_FAILURE() << self.status().ToString();
      return {};
    }
    net::Invite inv{self->public_key, net::NewGroupKey(), expires_ms, {address}};
    EXPECT_TRUE(net::StoreInvite(device::Layout(dir).group(), inv).ok());
    return inv;
  }
  // Pairs `joiner` with the daemon at `address` serving `inviter`, by a one-shot sync.
  void Pair(const std::string& inviter, const std::string& joiner, const std::string& address,
            const std::string& role = "member") {
    auto code = T({"invite", Dir(inviter), "--address", address, "--role", role});
    ASSERT_EQ(code.exit_code, 0) << code.err;
    auto j = T({"join", Dir(joiner), code.out});
    ASSERT_EQ(j.exit_code, 0) << j.err;
    auto s = T({"sync", Dir(joiner)});  // the invite's address hint
    ASSERT_EQ(s.exit_code, 0) << s.err;
  }
  // A group: replicas made for `names`, the first serving (its address in *address) and
  // the others paired with it as members.
  std::unique_ptr<Serve> Founded(const std::vector<std::string>& names, std::string* address) {
    for (const auto& n : names) Init(n);
    auto s = Listen(names.front(), {}, address);
    for (size_t i = 1; i < names.size(); ++i) Pair(names.front(), names[i], *address);
    return s;
  }
  // Two paired devices, "a" serving (its address in *address) and "b", each with a write
  // the other lacks (items/from-a, items/from-b).
  std::unique_ptr<Serve> PairedWithAWriteEach(std::string* address) {
    Init("a");
    Init("b");
    auto s = Listen("a", {}, address);
    Pair("a", "b", *address);
    EXPECT_EQ(T({"put", Dir("a"), "items", "from-a", "v=1"}).exit_code, 0);
    EXPECT_EQ(T({"put", Dir("b"), "items", "from-b", "v=1"}).exit_code, 0);
    return s;
  }
  // Syncs `dir` once with a daemon started for `name` for that alone (a link between two
  // devices, neither of them the one the others dial).
  void SyncWith(const std::string& dir, const std::string& name) {
    std::string address;
    auto s = Listen(name, {}, &address);
    auto r = T({"sync", dir, "--peer", address});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  TempDir tmp_;
};

}  // namespace tandem::testing
