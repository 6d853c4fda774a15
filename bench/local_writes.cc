// bench/local_writes: 100,000 records x 10 fields written durably in batches of 1,000
// field writes, then a full scan, 100,000 random gets, and a cold open in a new
// process; against raw LMDB with the same keys and batches, measured in the same run.
//
//   local_writes [--records N] [--dir DIR]
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "bench_util.h"
#include "tandem/storage/replica.h"

using namespace tandem;
using namespace tandem::bench;

namespace {

// Child mode: open the replica, read one record, print the elapsed milliseconds.
int ColdOpen(const std::string& dir) {
  double t0 = Now();
  auto r = storage::OpenReplica(dir);
  Must(r.status(), "open");
  auto rec = (*r)->Get("bench", DataSet::RecordId(12345));
  Must(rec.status(), "get");
  std::printf("%.3f\n", (Now() - t0) * 1000);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  DataSet ds;
  std::string base = "bench-data";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cold") && i + 1 < argc) return ColdOpen(argv[i + 1]);
    if (!std::strcmp(argv[i], "--records") && i + 1 < argc) ds.records = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) base = argv[++i];
  }
  const int kBatch = 1000;
  const int total = ds.records * ds.fields;

  // The raw LMDB baseline runs in a child, so its pages do not count in our RSS.
  uint64_t raw_bytes = 0;
  double raw_puts = 0;
  {
    int fds[2];
    if (pipe(fds)) return 1;
    pid_t pid = fork();
    if (pid == 0) {
      uint64_t b;
      double p = RawLmdbPuts(base + "/raw", ds, kBatch, &b);
      char buf[64];
      int n = std::snprintf(buf, sizeof buf, "%f %llu\n", p, static_cast<unsigned long long>(b));
      if (write(fds[1], buf, n) != n) _exit(1);
      _exit(0);
    }
    close(fds[1]);
    char buf[64] = {};
    if (read(fds[0], buf, sizeof buf - 1) <= 0) return 1;
    unsigned long long b;
    std::sscanf(buf, "%lf %llu", &raw_puts, &b);
    raw_bytes = b;
    waitpid(pid, nullptr, 0);
  }

  const std::string dir = base + "/tandem";
  std::filesystem::remove_all(dir);
  auto created = storage::CreateReplica(dir);
  Must(created.status(), "create");
  auto& rep = **created;
  std::mt19937_64 rng(42);
  double t0 = Now();
  LoadDataSet(rep, ds, rng, kBatch);
  const double write_s = Now() - t0;
  const double writes_per_s = total / write_s;

  t0 = Now();
  const uint64_t scanned = CountFields(rep);
  const double scan_per_s = scanned / (Now() - t0);

  std::mt19937_64 pick(7);
  const int kGets = 100000;
  t0 = Now();
  for (int i = 0; i < kGets; ++i) {
    auto r = rep.Get("bench", DataSet::RecordId(static_cast<int>(pick() % ds.records)));
    Must(r.status(), "get");
  }
  const double gets_per_s = kGets / (Now() - t0);
  created->reset();

  // Cold open: a new process opens the replica and reads one record.
  double cold_ms = 0;
  {
    std::string cmd = std::string("'") + argv[0] + "' --cold '" + dir + "'";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p || std::fscanf(p, "%lf", &cold_ms) != 1) return 1;
    pclose(p);
  }

  const uint64_t bytes = DiskBytes(dir + "/data.mdb");
  const double bytes_per_field = static_cast<double>(bytes) / total;
  const double raw_bytes_per_field = static_cast<double>(raw_bytes) / total;
  const double rss = PeakRssMb();

  std::printf("local_writes: %d records x %d fields, batches of %d, durable\n", ds.records,
              ds.fields, kBatch);
  std::printf("  %-28s %14.0f /s\n", "tandem field writes", writes_per_s);
  std::printf("  %-28s %14.0f /s\n", "raw LMDB puts (same keys)", raw_puts);
  std::printf("  %-28s %14.2f\n", "ratio writes vs LMDB", writes_per_s / raw_puts);
  std::printf("  %-28s %14.0f fields/s\n", "full scan", scan_per_s);
  std::printf("  %-28s %14.0f records/s\n", "random gets", gets_per_s);
  std::printf("  %-28s %14.1f (raw LMDB %.1f)\n", "bytes on disk per field", bytes_per_field,
              raw_bytes_per_field);
  std::printf("  %-28s %14.1f MB\n", "peak RSS", rss);
  std::printf("  %-28s %14.2f ms\n", "cold open + one read", cold_ms);
  std::printf(
      "{\"bench\": \"local_writes\", \"field_writes\": %d, \"writes_per_s\": %.0f, "
      "\"raw_lmdb_puts_per_s\": %.0f, \"ratio_writes_vs_lmdb\": %.3f, \"scan_fields_per_s\": "
      "%.0f, \"gets_per_s\": %.0f, \"reads_per_s\": %.0f, \"bytes_per_field\": %.1f, "
      "\"raw_lmdb_bytes_per_field\": %.1f, \"ratio_size_vs_lmdb\": %.3f, \"peak_rss_mb\": %.1f, "
      "\"cold_open_ms\": %.2f}\n",
      total, writes_per_s, raw_puts, writes_per_s / raw_puts, scan_per_s, gets_per_s, gets_per_s,
      bytes_per_field, raw_bytes_per_field, bytes_per_field / raw_bytes_per_field, rss, cold_ms);
  std::filesystem::remove_all(base);
  return 0;
}
