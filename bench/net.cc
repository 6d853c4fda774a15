// bench/net: sync between two `tandem serve` processes over encrypted loopback TCP.
//   1. A holds the local_writes data set (100,000 records x 10 fields = 1,000,000
//      fields); B, empty, starts with --peer A. Time until B holds everything.
//   2. Live latency: 1,000 single writes committed on A by this process (as an app
//      would); each is timed from commit until it is readable on B.
// Limits measured in the same run: raw LMDB write speed (same keys, batches of 1,000,
// durable) and libsodium secretstream throughput (1 MiB frames, seal + open).
//
//   net [--records N] [--writes N] [--dir DIR]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench_util.h"
#include "tandem/device/device.h"
#include "tandem/net/group.h"
#include "tandem/net/secure_frame.h"
#include "tandem/storage/replica.h"

extern char** environ;

using namespace tandem;
using namespace tandem::bench;

namespace {

pid_t Spawn(std::vector<std::string> args, const std::string& log) {
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

void Stop(pid_t pid) {
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The listen address from the daemon's status file (a tiny scan, no JSON library).
std::string WaitListen(const std::string& dir) {
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
  std::fprintf(stderr, "net: the daemon did not start; see %s/../*.log\n", dir.c_str());
  std::exit(1);
}

// Makes a replica in a fresh group of `members` (identity files, shared group key, each
// in every trust set), as `tandem init` + pairing would.
void MakeMember(const std::string& dir, const net::Key32& group, const net::Identity& id,
                const std::vector<net::Identity>& members) {
  auto r = storage::CreateReplica(dir);
  Must(r.status(), "create");
  const device::Layout layout(dir);
  Must(net::SaveIdentity(id, layout.identity_key()), "identity");
  Must(net::SaveGroupKey(layout.group(), group), "group key");
  for (const auto& m : members) Must(net::AddMember(**r, m.public_key, "bench", 1), "member");
}

double SecretstreamMbPerS() {
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
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const int total = ds.records * ds.fields;
  uint64_t raw_bytes = 0;
  const double raw_puts = RawLmdbPuts(base + "/raw", ds, 1000, &raw_bytes);
  const double ss_mb = SecretstreamMbPerS();

  net::InitCrypto();
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
  uint64_t fields_b = 0;
  Must((*b)->Scan("bench", "",
                  [&](const engine::Record& r) {
                    fields_b += r.fields.size();
                    return true;
                  }),
       "scan");
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
  std::printf(
      "{\"bench\": \"net\", \"fields\": %d, \"initial_sync_seconds\": %.3f, "
      "\"initial_sync_fields_per_s\": %.0f, \"raw_lmdb_puts_per_s\": %.0f, "
      "\"ratio_initial_sync_vs_lmdb\": %.3f, \"secretstream_mb_per_s\": %.0f, "
      "\"live_writes\": %d, \"live_latency_ms_p50\": %.3f, \"live_latency_ms_p99\": %.3f}\n",
      total, initial, rate, raw_puts, rate / raw_puts, ss_mb, writes, p50, p99);
  a->reset();
  b->reset();
  std::filesystem::remove_all(base);
  return 0;
}
