// Import's cost: a 1,000,000-field JSON lines file (the local_writes data set: 100,000
// records x 10 fields) loaded by `tandem import` (a real process: parsing, typing, the
// schema policy, 1,000 rows per durable transaction), against the same writes through the
// C++ API with the same transactions, in the same run. Also the import's peak memory.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "bench_util.h"
#include "tandem/device/device.h"

using namespace tandem;
using namespace tandem::bench;

namespace {

constexpr int kRowsPerBatch = 1000;  // import's batch

// The data set as JSON lines, with the values LoadDataSet would write (same seed).
uint64_t WriteJsonl(const std::string& path, const DataSet& ds) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) std::exit(1);
  std::mt19937_64 rng(7);
  for (int r = 0; r < ds.records; ++r) {
    // Appended piece by piece: g++ 12 warns (-Wrestrict) falsely on "literal" + string.
    std::string line = "{\"id\":\"";
    line += DataSet::RecordId(r);
    line += '"';
    for (int k = 0; k < ds.fields; ++k) {
      engine::Value v = DataSetValue(k, rng);
      line += ",\"";
      line += DataSet::FieldName(k);
      line += "\":";
      if (auto* s = std::get_if<std::string>(&v)) {
        line += '"';
        line += *s;
        line += '"';
      } else {
        line += std::to_string(std::get<int64_t>(v));
      }
    }
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), f);
  }
  std::fclose(f);
  return DiskBytes(path);
}

double CppSeconds(const std::string& dir, const DataSet& ds) {
  auto d = device::Device::Create(dir);
  Must(d.status(), "create");
  std::mt19937_64 rng(7);
  const double t0 = Now();
  LoadDataSet((*d)->replica(), ds, rng, kRowsPerBatch * ds.fields);
  return Now() - t0;
}

// Runs `tandem import`; returns its wall time and sets its peak RSS (MB).
double ImportSeconds(const std::string& dir, const std::string& file, double* rss_mb) {
  auto d = device::Device::Create(dir);
  Must(d.status(), "create");
  d->reset();
  const double t0 = Now();
  pid_t pid = fork();
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);  // its summary line is not ours
    if (null_fd >= 0) ::dup2(null_fd, 2);
    execl(TANDEM_BIN, TANDEM_BIN, "import", dir.c_str(), "bench", file.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  const double dt = Now() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "bench: tandem import failed\n");
    std::exit(1);
  }
  *rss_mb = ru.ru_maxrss / 1024.0;
  return dt;
}

}  // namespace

int main() {
  const std::string base = std::filesystem::temp_directory_path() /
                           ("tandem-bench-import-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  DataSet ds;
  const double fields = double(ds.records) * ds.fields;
  const std::string file = base + "/data.jsonl";
  const uint64_t bytes = WriteJsonl(file, ds);
  // Interleaved, best of two each, so that neither side gets the warmer disk.
  double cpp = 1e9, imp = 1e9, rss = 0;
  for (int round = 0; round < 2; ++round) {
    cpp = std::min(cpp, CppSeconds(base + "/cpp" + std::to_string(round), ds));
    double r = 0;
    imp = std::min(imp, ImportSeconds(base + "/imp" + std::to_string(round), file, &r));
    rss = std::max(rss, r);
  }
  std::filesystem::remove_all(base);
  const double ratio = cpp / imp;
  std::printf("%-52s %14s\n", "1,000,000 fields, 10,000 per commit", "fields/s");
  std::printf("%-52s %14.0f\n", "C++ API (engine::Replica::Write)", fields / cpp);
  std::printf("%-52s %14.0f\n", "tandem import (JSON lines file, a process)", fields / imp);
  std::printf("input %.1f MB; import peak RSS %.1f MB\n", bytes / 1e6, rss);
  std::printf("import / C++ API: %.3f\n", ratio);
  std::printf(
      "{\"bench\": \"import\", \"cpp_fields_per_s\": %.0f, \"import_fields_per_s\": %.0f, "
      "\"input_bytes\": %llu, \"import_peak_rss_mb\": %.1f, "
      "\"ratio_import_vs_local_writes\": %.3f}\n",
      fields / cpp, fields / imp, static_cast<unsigned long long>(bytes), rss, ratio);
  return 0;
}
