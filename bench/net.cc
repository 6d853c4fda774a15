// bench/net: sync between two `tandem serve` processes over encrypted loopback TCP.
//   1. A holds the local_writes data set (100,000 records x 10 fields = 1,000,000
//      fields); B, empty, starts with --peer A. Time until B holds everything.
//   2. Live latency: 1,000 single writes committed on A by this process (as an app
//      would); each is timed from commit until it is readable on B.
//   3. A slow link: C holds 100,000 records x 2 fields; D, empty and already paired,
//      runs `tandem sync` through a proxy in this process that gives each direction
//      100 ms of delay and 2 MB/s. ratio_slow_link = the sync's time / (the bytes of
//      its busier direction / 2 MB/s + 3 round trips): 1 would be a sync bound only by
//      bytes and the three round trips a session needs.
// Limits measured in the same run: raw LMDB write speed (same keys, batches of 1,000,
// durable) and libsodium secretstream throughput (1 MiB frames, seal + open).
//
//   net [--records N] [--writes N] [--dir DIR] [--slow-only]
// --slow-only runs the slow link alone; BENCH_TRACE=1 prints each piece the proxy
// forwards (seconds since it started, direction, bytes) on stderr.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "bench_proc.h"
#include "tandem/device/device.h"
#include "tandem/net/group.h"
#include "tandem/net/secure_frame.h"
#include "tandem/storage/replica.h"

using namespace tandem;
using namespace tandem::bench;

namespace {

// A TCP proxy on loopback that shapes both directions like a long, thin link: every
// byte is delayed by `delay_s`, and each direction carries at most `bytes_per_s` (a FIFO
// that serialises what it holds, as a router's queue does). One connection.
class ShapingProxy {
 public:
  ShapingProxy(uint16_t target, double delay_s, double bytes_per_s)
      : target_(target), delay_(delay_s), rate_(bytes_per_s) {
    listen_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || listen(listen_, 4))
      std::abort();
    socklen_t len = sizeof sa;
    getsockname(listen_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ShapingProxy() {
    stop_ = true;
    shutdown(listen_, SHUT_RDWR);
    for (int fd : {client_.load(), server_.load()})
      if (fd >= 0) shutdown(fd, SHUT_RDWR);
    close(listen_);
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  uint64_t bytes_up() const { return bytes_[0]; }    // client to server
  uint64_t bytes_down() const { return bytes_[1]; }  // server to client

 private:
  struct Direction {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<double, std::string>> q;  // (time it may leave, bytes)
    double link_free = 0;
    bool eof = false;
  };
  // Reads from `from`, stamping each piece with when it may leave; WriteSide sends it.
  void ReadSide(int from, Direction& d, std::atomic<uint64_t>& count) {
    std::string buf(16384, '\0');
    for (;;) {
      ssize_t n = read(from, buf.data(), buf.size());
      std::lock_guard lock(d.mu);
      if (n <= 0) {
        d.eof = true;
        d.cv.notify_all();
        return;
      }
      count += static_cast<uint64_t>(n);
      if (trace_)
        std::fprintf(stderr, "trace %.3f %s %zd\n", Now() - t0_, &d == &up_ ? "up" : "down", n);
      const double start = std::max(Now(), d.link_free);
      d.link_free = start + static_cast<double>(n) / rate_;
      d.q.emplace_back(d.link_free + delay_, buf.substr(0, static_cast<size_t>(n)));
      d.cv.notify_all();
    }
  }
  void WriteSide(int to, Direction& d) {
    for (;;) {
      std::pair<double, std::string> piece;
      {
        std::unique_lock lock(d.mu);
        d.cv.wait(lock, [&] { return !d.q.empty() || d.eof; });
        if (d.q.empty()) break;
        piece = std::move(d.q.front());
        d.q.pop_front();
      }
      const double wait = piece.first - Now();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      std::string_view s = piece.second;
      while (!s.empty()) {
        ssize_t w = send(to, s.data(), s.size(), MSG_NOSIGNAL);
        if (w <= 0) return;
        s.remove_prefix(static_cast<size_t>(w));
      }
    }
    shutdown(to, SHUT_WR);
  }
  void Serve() {
    int client = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(target_);
    if (connect(server, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) std::abort();
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client_ = client;
    server_ = server;
    Direction& up = up_;
    Direction& down = down_;
    std::thread t1([&] { ReadSide(client, up, bytes_[0]); });
    std::thread t2([&] { WriteSide(server, up); });
    std::thread t3([&] { ReadSide(server, down, bytes_[1]); });
    WriteSide(client, down);
    t1.join();
    t2.join();
    t3.join();
    close(client);
    close(server);
  }
  uint16_t target_;
  double delay_, rate_;
  double t0_ = Now();
  bool trace_ = getenv("BENCH_TRACE") != nullptr;
  Direction up_, down_;
  int listen_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> client_{-1}, server_{-1};
  std::atomic<uint64_t> bytes_[2] = {0, 0};
  std::thread thread_;
};

int RunWait(std::vector<std::string> args, const std::string& log) {
  pid_t pid = Spawn(std::move(args), log);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

struct SlowLink {
  bool ok = false;
  double seconds = 0, ideal = 0;
  uint64_t bytes = 0;
};

// C holds `records` x 2 fields; D, empty and paired, syncs from it through the proxy.
SlowLink RunSlowLink(const std::string& base, const net::Key32& group, int records,
                     std::mt19937_64& rng) {
  const double kDelay = 0.1, kRate = 2e6;  // per direction: a 200 ms round trip, 2 MB/s
  DataSet small;
  small.records = records;
  small.fields = 2;
  net::Identity ic = net::GenerateIdentity(), id = net::GenerateIdentity();
  const std::string dc = base + "/c", dd = base + "/d";
  MakeMember(dc, group, ic, {ic, id});
  MakeMember(dd, group, id, {ic, id});
  {
    auto c = storage::OpenReplica(dc);
    Must(c.status(), "open c");
    LoadDataSet(**c, small, rng);
  }
  pid_t pc = Spawn({TANDEM_BIN, "serve", dc, "--listen", "127.0.0.1:0"}, base + "/c.log");
  const std::string caddr = WaitListen(dc);
  double slow = 0, ideal = 0;
  uint64_t slow_bytes = 0;
  {
    ShapingProxy proxy(static_cast<uint16_t>(std::stoi(caddr.substr(caddr.rfind(':') + 1))), kDelay,
                       kRate);
    const double s0 = Now();
    const int rc = RunWait({TANDEM_BIN, "sync", dd, "--peer", proxy.address()}, base + "/d.log");
    slow = Now() - s0;
    if (rc != 0) {
      std::fprintf(stderr, "net: the sync over the slow link failed; see %s/d.log\n", base.c_str());
      kill(pc, SIGKILL);
      return {};
    }
    slow_bytes = std::max(proxy.bytes_up(), proxy.bytes_down());
    ideal = static_cast<double>(slow_bytes) / kRate + 3 * 2 * kDelay;
  }
  Stop(pc);
  {
    auto d = storage::OpenReplica(dd);
    Must(d.status(), "open d");
    const uint64_t n = CountFields(**d);
    if (n != static_cast<uint64_t>(small.records) * 2) {
      std::fprintf(stderr, "net: D holds %llu fields after the slow sync\n",
                   static_cast<unsigned long long>(n));
      return {};
    }
  }

  return {true, slow, ideal, slow_bytes};
}

}  // namespace

int main(int argc, char** argv) {
  DataSet ds;
  int writes = 1000;
  std::string base = "bench-net-data";
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--records")) ds.records = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--writes")) writes = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) base = argv[i + 1];
  }
  bool slow_only = false;
  for (int i = 1; i < argc; ++i) slow_only |= !std::strcmp(argv[i], "--slow-only");
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  net::InitCrypto();
  if (slow_only) {
    std::mt19937_64 rng(42);
    const SlowLink slow = RunSlowLink(base, net::NewGroupKey(), ds.records, rng);
    if (!slow.ok) return 1;
    std::printf("slow link: %.2f s for %.2f MB; bytes/2 MB/s + 3 RTT = %.2f s; ratio %.3f\n",
                slow.seconds, slow.bytes / 1e6, slow.ideal, slow.seconds / slow.ideal);
    return 0;
  }
  const int total = ds.records * ds.fields;
  uint64_t raw_bytes = 0;
  const double raw_puts = RawLmdbPuts(base + "/raw", ds, 1000, &raw_bytes);
  const double ss_mb = SecretstreamMbPerS();

  net::Key32 group = net::NewGroupKey();
  net::Identity ia = net::GenerateIdentity(), ib = net::GenerateIdentity();
  const std::string da = base + "/a", db = base + "/b";
  MakeMember(da, group, ia, {ia, ib});
  MakeMember(db, group, ib, {ia, ib});
  auto a = storage::OpenReplica(da);
  Must(a.status(), "open a");
  std::mt19937_64 rng(42);
  LoadDataSet(**a, ds, rng);
  auto b = storage::OpenReplica(db);
  Must(b.status(), "open b");
  const engine::ReplicaId aid = (*a)->Meta()->id;
  const uint64_t a_events = (*a)->Meta()->vv.Get(aid);

  pid_t pa = Spawn({TANDEM_BIN, "serve", da, "--listen", "127.0.0.1:0"}, base + "/a.log");
  const std::string addr = WaitListen(da);
  // 1. Initial sync: B starts and dials A; done when B's version vector covers A's
  // events (merged at CaughtUp, after every batch is applied).
  const double t0 = Now();
  pid_t pb = Spawn({TANDEM_BIN, "serve", db, "--peer", addr}, base + "/b.log");
  for (;;) {
    auto m = (*b)->Meta();
    Must(m.status(), "meta");
    if (m->vv.Get(aid) >= a_events) break;
    if (Now() - t0 > 600) {
      std::fprintf(stderr, "net: the initial sync did not finish in 10 minutes; see %s/*.log\n",
                   base.c_str());
      kill(pb, SIGKILL);
      kill(pa, SIGKILL);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double initial = Now() - t0;
  const uint64_t fields_b = CountFields(**b);
  if (fields_b != static_cast<uint64_t>(total)) {
    std::fprintf(stderr, "net: B holds %llu of %d fields\n", (unsigned long long)fields_b, total);
    return 1;
  }

  // 2. Live latency.
  std::vector<double> lat;
  lat.reserve(writes);
  for (int i = 0; i < writes; ++i) {
    std::string id = "k";  // not "k" + ...: g++ 12 warns (-Wrestrict) on that falsely
    id += std::to_string(i);
    const double w0 = Now();
    Must((*a)->Put("live", id, {{"v", engine::Value(int64_t{i})}}), "put");
    for (;;) {
      auto r = (*b)->Get("live", id);
      if (r.ok()) break;
      if (r.status().code() != Code::kNotFound) Must(r.status(), "get");
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      if (Now() - w0 > 10) {
        std::fprintf(stderr, "net: write %d did not arrive in 10 s\n", i);
        kill(pb, SIGKILL);
        kill(pa, SIGKILL);
        return 1;
      }
    }
    lat.push_back((Now() - w0) * 1000);
  }
  std::sort(lat.begin(), lat.end());
  const double p50 = lat[lat.size() / 2], p99 = lat[lat.size() * 99 / 100];
  std::string status_b = ReadFile(db + "/daemon.json");
  Stop(pb);
  Stop(pa);

  // 3. The slow link.
  const SlowLink slow = RunSlowLink(base, group, ds.records, rng);
  if (!slow.ok) return 1;

  const double rate = total / initial;
  std::printf("net: two `tandem serve` processes, encrypted loopback TCP\n");
  std::printf("  %-40s %14s\n", "measure", "value");
  std::printf("  %-40s %14.2f\n", "initial sync of 1,000,000 fields (s)", initial);
  std::printf("  %-40s %14.0f\n", "initial sync fields/s", rate);
  std::printf("  %-40s %14.0f\n", "raw LMDB puts/s (same run)", raw_puts);
  std::printf("  %-40s %14.2f\n", "ratio initial sync / raw LMDB", rate / raw_puts);
  std::printf("  %-40s %14.0f\n", "secretstream MiB/s (seal + open)", ss_mb);
  std::printf("  %-40s %14.3f\n", "live latency p50 (ms)", p50);
  std::printf("  %-40s %14.3f\n", "live latency p99 (ms)", p99);
  std::printf("  %-40s %14.2f\n", "slow link: sync of 200,000 fields (s)", slow.seconds);
  std::printf("  %-40s %14.2f\n", "slow link: wire MB (busier direction)", slow.bytes / 1e6);
  std::printf("  %-40s %14.2f\n", "slow link: bytes/2 MB/s + 3 RTT (s)", slow.ideal);
  std::printf("  %-40s %14.2f\n", "ratio_slow_link (goal <= 1.5)", slow.seconds / slow.ideal);
  std::printf(
      "{\"bench\": \"net\", \"fields\": %d, \"initial_sync_seconds\": %.3f, "
      "\"initial_sync_fields_per_s\": %.0f, \"raw_lmdb_puts_per_s\": %.0f, "
      "\"ratio_initial_sync_vs_lmdb\": %.3f, \"secretstream_mb_per_s\": %.0f, "
      "\"live_writes\": %d, \"live_latency_ms_p50\": %.3f, \"live_latency_ms_p99\": %.3f, "
      "\"slow_link_seconds\": %.3f, \"slow_link_wire_bytes\": %llu, \"ratio_slow_link\": %.3f}\n",
      total, initial, rate, raw_puts, rate / raw_puts, ss_mb, writes, p50, p99, slow.seconds,
      static_cast<unsigned long long>(slow.bytes), slow.seconds / slow.ideal);
  a->reset();
  b->reset();
  std::filesystem::remove_all(base);
  return 0;
}
