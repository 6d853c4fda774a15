// The C API's cost: 1,000,000 field writes (the local_writes data set, 1,000 per
// transaction, durable) through tandem.h's write batches, against the same writes
// through the C++ API, in the same run; then Python's write rate through its batch call.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "bench_util.h"
#include "tandem.h"
#include "tandem/device/device.h"

using namespace tandem;
using namespace tandem::bench;

namespace {

constexpr int kBatch = 1000;

double CppSeconds(const std::string& dir, const DataSet& ds) {
  auto d = device::Device::Create(dir);
  Must(d.status(), "create");
  std::mt19937_64 rng(7);
  const double t0 = Now();
  LoadDataSet((*d)->replica(), ds, rng, kBatch);
  return Now() - t0;
}

void CMust(int rc, const tandem_error& err, const char* what) {
  if (rc != TANDEM_OK) {
    std::fprintf(stderr, "bench: %s: %s\n", what, err.message);
    std::exit(1);
  }
}

double CSeconds(const std::string& dir, const DataSet& ds) {
  tandem_error err;
  tandem_db* db;
  CMust(tandem_db_create(&db, dir.c_str(), nullptr, &err), err, "create");
  tandem_batch* b;
  CMust(tandem_batch_new(&b, &err), err, "batch");
  std::mt19937_64 rng(7);
  const int total = ds.records * ds.fields;
  std::vector<std::string> fields;
  for (int f = 0; f < ds.fields; ++f) fields.push_back(DataSet::FieldName(f));
  const double t0 = Now();
  for (int n = 0; n < total; n += kBatch) {
    for (int k = n; k < n + kBatch && k < total; ++k) {
      const int f = k % ds.fields;
      const std::string id = DataSet::RecordId(k / ds.fields);
      tandem_value v{};
      std::string s;
      if (f < 5) {
        s = RandomString16(rng);
        v = {TANDEM_STRING, 0, 0, s.data(), s.size()};
      } else {
        v = {TANDEM_INT, static_cast<int64_t>(rng() % 1000000), 0, nullptr, 0};
      }
      CMust(tandem_batch_put(b, "bench", id.c_str(), fields[f].c_str(), &v, &err), err, "put");
    }
    CMust(tandem_db_write(db, b, &err), err, "write");
    CMust(tandem_batch_clear(b, &err), err, "clear");
  }
  const double dt = Now() - t0;
  tandem_batch_free(b);
  tandem_db_close(db);
  return dt;
}

// Python's writes per second through Batch.put_field, 1,000 per commit.
double PythonRate(const std::string& dir, int writes) {
  const std::string script = dir + ".py";
  FILE* f = std::fopen(script.c_str(), "w");
  std::fprintf(f,
               "import time, tandem\n"
               "db = tandem.create(%s)\n"
               "t0 = time.monotonic()\n"
               "for n in range(0, %d, 1000):\n"
               "    with db.batch() as b:\n"
               "        for k in range(n, n + 1000):\n"
               "            b.put_field('bench', 'r%%06d' %% (k // 10), 'f%%d' %% (k %% 10), k)\n"
               "print(%d / (time.monotonic() - t0))\n",
               ("'" + dir + "'").c_str(), writes, writes);
  std::fclose(f);
  const std::string cmd = "PYTHONPATH=" TANDEM_SOURCE_DIR "/bindings/python TANDEM_LIBRARY=" +
                          std::string(TANDEM_LIBRARY) + " python3 " + script;
  FILE* p = popen(cmd.c_str(), "r");
  double rate = 0;
  if (!p || std::fscanf(p, "%lf", &rate) != 1) rate = 0;
  if (p) pclose(p);
  return rate;
}

}  // namespace

int main() {
  const std::string base =
      std::filesystem::temp_directory_path() / ("tandem-bench-capi-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  DataSet ds;  // 100,000 records x 10 fields
  const double writes = double(ds.records) * ds.fields;
  // Interleaved, best of two each, so that neither side gets the warmer disk.
  double cpp = 1e9, c = 1e9;
  for (int round = 0; round < 2; ++round) {
    cpp = std::min(cpp, CppSeconds(base + "/cpp" + std::to_string(round), ds));
    c = std::min(c, CSeconds(base + "/c" + std::to_string(round), ds));
  }
  const int py_writes = 100000;
  const double py = PythonRate(base + "/py", py_writes);
  std::filesystem::remove_all(base);
  const double ratio = cpp / c;
  std::printf("%-44s %14s\n", "1,000,000 field writes, 1,000 per commit", "writes/s");
  std::printf("%-44s %14.0f\n", "C++ API (engine::Replica::Write)", writes / cpp);
  std::printf("%-44s %14.0f\n", "C API (tandem_batch_put + tandem_db_write)", writes / c);
  std::printf("%-44s %14.0f\n", "Python (Batch.put_field, 100,000 writes)", py);
  std::printf("C API / C++ API: %.3f\n", ratio);
  std::printf(
      "{\"bench\": \"capi\", \"cpp_writes_per_s\": %.0f, \"capi_writes_per_s\": %.0f, "
      "\"python_writes_per_s\": %.0f, \"ratio_capi_vs_cpp\": %.3f}\n",
      writes / cpp, writes / c, py, ratio);
  return 0;
}
